"""Parser, report, cache and CLI of helpers.mindbigdata, on small files built here with known answers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import mindbigdata as mbd
from helpers import textparser

EP = mbd.DEVICES["EP"].channels
REPO = Path(__file__).resolve().parents[1]


def event_lines(ev: int, code: int, size: int = 6, channels=EP, seed: int | None = None, device: str = "EP"):
    """The 14 text lines of one well-formed event; values are k/7.8 printed like the real file."""
    rng = np.random.default_rng(ev if seed is None else seed)
    out = []
    for ch in channels:
        k = rng.integers(31000, 35000, size)
        vals = ",".join(f"{x / 7.8:.6f}" for x in k)
        out.append(f"{ev}\t{ev}\t{device}\t{ch}\t{code}\t{size}\t{vals}")
    return out


def write(tmp_path: Path, lines: list[str], name: str = "f.txt", newline: str = "\n") -> Path:
    p = tmp_path / name
    p.write_bytes((newline.join(lines) + newline).encode())
    return p


def good_file(tmp_path, n=5, name="good.txt"):
    lines = []
    for i in range(n):
        lines += event_lines(100 + i, i % 10 if i % 4 else -1, size=6 + i % 3)
    return write(tmp_path, lines, name)


# Each fault: (name, function that damages the lines of event 200, expected reason, index of the bad line
# within the event's 14 lines or None when the first line of the event is named).
def _replace_field(lines, i, field, value):
    f = lines[i].split("\t")
    f[field] = value
    lines[i] = "\t".join(f)


def _set_value(lines, i, j, text):
    f = lines[i].split("\t")
    vals = f[6].split(",")
    vals[j] = text
    f[6] = ",".join(vals)
    lines[i] = "\t".join(f)


FAULTS = {
    "wrong channel name": (lambda L: _replace_field(L, 3, 3, "XX9"), "unknown_channel", 3),
    "duplicate channel": (lambda L: _replace_field(L, 5, 3, EP[2]), "duplicate_channel", 5),
    "missing channel": (lambda L: L.pop(7), "missing_channel", 0),
    "size mismatch": (lambda L: _replace_field(L, 4, 5, "7"), "size_mismatch", 4),
    "non-numeric value": (lambda L: _set_value(L, 6, 2, "43x5.1"), "non_numeric_value", 6),
    "empty value": (lambda L: _set_value(L, 6, 2, ""), "non_numeric_value", 6),
    "extra field in values": (lambda L: _set_value(L, 7, 3, "4395.1\t12"), "non_numeric_value", 7),
    "NaN value": (lambda L: _set_value(L, 2, 0, "nan"), "non_finite_value", 2),
    "inf value": (lambda L: _set_value(L, 9, 5, "-inf"), "non_finite_value", 9),
    "float32 overflow": (lambda L: _set_value(L, 9, 1, "1e300"), "non_finite_value", 9),
    "code out of range": (lambda L: [_replace_field(L, i, 4, "12") for i in range(14)], "code_out_of_range", 0),
    "code not a number": (lambda L: _replace_field(L, 8, 4, "six"), "bad_code", 8),
    "inconsistent code": (lambda L: _replace_field(L, 10, 4, "4"), "inconsistent_code", 10),
    "size not a number": (lambda L: _replace_field(L, 1, 5, "2x"), "bad_size", 1),
    "too few fields": (lambda L: L.__setitem__(11, "\t".join(L[11].split("\t")[:6])), "too_few_fields", 11),
    "id not a number": (lambda L: _replace_field(L, 12, 0, "abc"), "bad_id", 12),
}


def corpus_with(fault: str, tmp_path: Path) -> tuple[Path, int]:
    """Three events; the middle one (id 200) carries the fault. Returns the file and the bad line number."""
    damage, _, bad_index = FAULTS[fault]
    before, bad, after = event_lines(100, 3), event_lines(200, 5), event_lines(300, 7)
    damage(bad)
    lines = before + bad + after
    return write(tmp_path, lines), len(before) + bad_index + 1


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_costs_exactly_its_event(fault, tmp_path):
    path, _ = corpus_with(fault, tmp_path)
    events, rep = mbd.parse_file(path)
    reason = FAULTS[fault][1]
    assert rep.events_skipped == {reason: 1}
    assert rep.events_total == 3 and rep.events_valid == 2
    assert events.event_ids.tolist() == [100, 300]
    assert events.codes.tolist() == [3, 7]
    assert rep.skipped_examples[0]["event"] == 200 and rep.skipped_examples[0]["reason"] == reason


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_strict_mode_names_the_line(fault, tmp_path):
    path, line = corpus_with(fault, tmp_path)
    with pytest.raises(mbd.MindBigDataError) as e:
        mbd.parse_file(path, strict=True)
    assert e.value.reason == FAULTS[fault][1]
    assert e.value.line_number == line
    assert f":{line}:" in str(e.value)


def test_values_exact_and_padding(tmp_path):
    lines = event_lines(7, 2, size=5) + event_lines(8, -1, size=9)
    path = write(tmp_path, lines)
    events, rep = mbd.parse_file(path)
    assert events.signals.dtype == np.float32 and events.signals.shape == (2, 14, 9)
    assert events.sizes.tolist() == [5, 9] and events.codes.tolist() == [2, -1]
    for e in range(2):
        for c in range(14):
            text = lines[e * 14 + c].split("\t")[6].split(",")
            expected = np.array([float(t) for t in text], np.float32)
            np.testing.assert_array_equal(events.signals[e, c, :len(text)], expected)
    assert not events.signals[0, :, 5:].any()  # zeros after sizes[i]
    assert rep.codes == {"-1": 1, "2": 1}
    assert rep.size_min == 5 and rep.size_max == 9


def test_tolerated_layout_and_every_line_accounted(tmp_path):
    """Blank lines, trailing spaces, CRLF, other devices and interleaved / out-of-order lines."""
    a, b, c = event_lines(11, 1), event_lines(12, 2), event_lines(10, 3)
    mw = "5\t5\tMW\tFP1\t3\t3\t1.0,2.0,3.0"
    mu = event_lines(6, 4, channels=mbd.DEVICES["MU"].channels, device="MU")
    # Interleave events 11 and 12 channel by channel, reverse event 10's channel order.
    lines = [x for pair in zip(a, b) for x in pair] + ["", mw, "   "] + c[::-1] + mu
    lines = [ln + "  " if i % 3 == 0 else ln for i, ln in enumerate(lines)]
    path = write(tmp_path, lines, newline="\r\n")
    events, rep = mbd.parse_file(path, device="EP")  # a mixed file: the device is named
    assert events.event_ids.tolist() == [11, 12, 10]  # file order of first appearance
    assert events.codes.tolist() == [1, 2, 3]
    assert rep.events_valid == rep.events_total == 3 and rep.events_skipped == {}
    assert rep.lines_blank == 2 and rep.lines_other_device == 5 and rep.other_devices == {"MU": 4, "MW": 1}
    assert rep.lines_total == len(lines) == (rep.lines_blank + rep.lines_other_device
                                              + rep.lines_unreadable + rep.lines_device)
    # Event 10 was written in reverse channel order but is stored in EP order.
    first_val = float(c[0].split("\t")[6].split(",")[0])
    assert events.signals[2, 0, 0] == np.float32(first_val)


def test_unreadable_lines_are_counted_not_events(tmp_path):
    lines = event_lines(1, 1) + ["garbage without tabs", "1\tnot-an-id\tEP\tAF3\t1\t1\t1.0"] + event_lines(2, 2)
    events, rep = mbd.parse_file(write(tmp_path, lines))
    assert rep.lines_unreadable == 2 and rep.events_valid == 2 and rep.events_total == 2
    with pytest.raises(mbd.MindBigDataError) as e:
        mbd.parse_file(write(tmp_path, lines, "g.txt"), strict=True)
    assert e.value.line_number == 15


def test_invariant_on_mixed_faults_and_other_devices(tmp_path):
    rng = np.random.default_rng(3)
    lines, expected_bad = [], {}
    for i, fault in enumerate(sorted(FAULTS)):
        ok = event_lines(1000 + 2 * i, 1)
        bad = event_lines(1001 + 2 * i, 2)
        FAULTS[fault][0](bad)
        lines += ok + bad
        expected_bad[FAULTS[fault][1]] = expected_bad.get(FAULTS[fault][1], 0) + 1
    rng.shuffle(lines)  # every event's lines scattered through the file
    events, rep = mbd.parse_file(write(tmp_path, lines))
    assert rep.events_valid + sum(rep.events_skipped.values()) == rep.events_total == 2 * len(FAULTS)
    assert rep.events_valid == len(FAULTS)
    assert rep.events_skipped == expected_bad
    assert sorted(events.event_ids.tolist()) == [1000 + 2 * i for i in range(len(FAULTS))]


def test_other_devices(tmp_path):
    mu = mbd.DEVICES["MU"]
    lines = event_lines(4, 9, channels=mu.channels, device="MU") + event_lines(5, 1)
    events, rep = mbd.parse_file(write(tmp_path, lines), device="MU")
    assert events.signals.shape[:2] == (1, 4) and events.channels == mu.channels and events.sfreq == 220.0
    assert rep.lines_other_device == 14
    with pytest.raises(ValueError, match="unknown device"):
        mbd.parse_file(write(tmp_path, lines), device="XX")


def test_many_blocks_match_single_block(tmp_path, monkeypatch):
    """Values that straddle the parser's block boundaries come out the same as with one block."""
    lines = []
    for i in range(40):
        lines += event_lines(i, i % 10, size=20 + i % 5)
    path = write(tmp_path, lines)
    ref, _ = mbd.parse_file(path)
    monkeypatch.setattr(textparser, "BLOCK_BYTES", 997)
    small, rep = mbd.parse_file(path)
    assert rep.events_valid == 40
    np.testing.assert_array_equal(small.signals, ref.signals)
    np.testing.assert_array_equal(small.sizes, ref.sizes)


def test_subset(tmp_path):
    events, _ = mbd.parse_file(good_file(tmp_path))
    sub = events.subset([4, 1])
    assert len(sub) == 2 and sub.event_ids.tolist() == [104, 101]
    np.testing.assert_array_equal(sub.signals[0], events.signals[4])


# --------------------------------------------------------------------------------------------- cache

def test_cache_round_trip_is_exact_and_reused(tmp_path):
    src = good_file(tmp_path)
    out = tmp_path / "c.npz"
    ev1, rep1, reused1 = mbd.prepare(src, out)
    ev2, rep2, reused2 = mbd.prepare(src, out)
    assert (reused1, reused2) == (False, True)
    for name in ("signals", "sizes", "codes", "event_ids"):
        np.testing.assert_array_equal(getattr(ev1, name), getattr(ev2, name))
    assert ev2.signals.dtype == np.float32 and ev2.channels == EP and ev2.sfreq == 128.0
    assert rep2.to_dict()["codes"] == rep1.to_dict()["codes"]
    with np.load(out) as z:
        assert {"signals", "sizes", "codes", "event_ids", "channels"} <= set(z.files)
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed away


def test_cache_invalidated_when_source_changes(tmp_path):
    src = good_file(tmp_path)
    out = tmp_path / "c.npz"
    mbd.prepare(src, out)
    with open(src, "a") as fh:
        fh.write("\n".join(event_lines(999, 9)) + "\n")
    ev, rep, reused = mbd.prepare(src, out)
    assert not reused and len(ev) == 6 and ev.event_ids[-1] == 999
    assert len(mbd.load_cache(out)) == 6


def _drop_array(data: bytes, name: str) -> bytes:
    import io
    import zipfile
    src, dst = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(dst, "w") as z:
        for item in src.namelist():
            if item != f"{name}.npy":
                z.writestr(item, src.read(item))
    return dst.getvalue()


def _damage(kind: str, good: bytes) -> bytes:
    n = len(good)
    if kind == "not a zip":
        return b"not a zip"
    if kind.startswith("cut at"):  # a zip cut short: zipfile.BadZipFile (it used to escape as a traceback)
        return good[:int(n * float(kind.split()[-1]))]
    if kind == "cut by one byte":
        return good[:-1]
    if kind == "garbage bytes":  # the middle of the signals overwritten: the zip's CRC check catches it
        mid = good.index(b"signals.npy") + 400
        return good[:mid] + b"\xff" * 64 + good[mid + 64:]
    if kind == "empty":
        return b""
    if kind.startswith("missing "):
        return _drop_array(good, kind.split()[-1])
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["not a zip", "empty", "cut at 0.1", "cut at 0.5", "cut at 0.99", "cut by one byte",
                                  "garbage bytes", "missing meta", "missing signals", "missing event_ids"])
def test_damaged_cache_is_detected_and_rebuilt_with_a_one_line_notice(kind, tmp_path, capfd):
    import zipfile
    src = good_file(tmp_path)
    out = tmp_path / "c.npz"
    ref, _, _ = mbd.prepare(src, out)
    good = out.read_bytes()
    out.write_bytes(_damage(kind, good))
    with pytest.raises(mbd.CacheError, match="is damaged") as e:  # never a raw BadZipFile/KeyError/EOFError
        mbd.load_cache(out)
    assert not isinstance(e.value, zipfile.BadZipFile) and "\n" not in str(e.value)
    capfd.readouterr()
    ev, _, reused = mbd.prepare(src, out)
    err = capfd.readouterr().err
    assert not reused and len(ev) == 5
    np.testing.assert_array_equal(ev.signals, ref.signals)
    notices = [line for line in err.splitlines() if line.strip()]
    assert len(notices) == 1 and notices[0].startswith("notice: cache") and "rebuilding it from" in notices[0]
    assert out.read_bytes() == good or len(mbd.load_cache(out)) == 5  # rebuilt, readable again
    ev2, _, reused2 = mbd.prepare(src, out)
    assert reused2 and capfd.readouterr().err == ""


def test_event_id_past_int64_is_a_bad_line_not_an_overflow(tmp_path):
    huge = "99999999999999999999"
    bad = [huge + "\t" + huge + "\t" + line.split("\t", 2)[2] for line in event_lines(200, 5)]
    lines = event_lines(100, 3) + bad[:1] + event_lines(300, 7)
    events, rep = mbd.parse_file(write(tmp_path, lines))  # used to raise OverflowError
    assert events.event_ids.tolist() == [100, 300] and rep.events_valid == 2
    assert rep.lines_unreadable == 1 and rep.unreadable_examples[0]["line"] == 15
    assert "64-bit" in rep.unreadable_examples[0]["detail"] and "unreadable line 15" in rep.summary()
    with pytest.raises(mbd.MindBigDataError) as e:
        mbd.parse_file(write(tmp_path, lines, "s.txt"), strict=True)
    assert e.value.line_number == 15 and "64-bit" in str(e.value)
    # In the [id] field (the event id is fine) the event is skipped as bad_id, on its line.
    ok = event_lines(200, 5)
    ok[4] = huge + "\t" + ok[4].split("\t", 1)[1]
    events, rep = mbd.parse_file(write(tmp_path, event_lines(100, 3) + ok, "i.txt"))
    assert rep.events_skipped == {"bad_id": 1} and rep.skipped_examples[0]["line"] == 19


# --------------------------------------------------------------------------------------------- CLI

def run_cli(*args):
    env = dict(os.environ, CI="1", HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "helpers", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120)


def test_cli_inspect_json(tmp_path):
    path, _ = corpus_with("size mismatch", tmp_path)
    r = run_cli("inspect", str(path), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["lines_total"] == 42 and d["events_total"] == 3 and d["events_valid"] == 2
    assert d["events_skipped"] == {"size_mismatch": 1}
    assert d["codes"] == {"3": 1, "7": 1} and d["channels"] == list(EP)
    assert d["events_valid"] + sum(d["events_skipped"].values()) == d["events_total"]


def test_cli_errors_without_traceback(tmp_path):
    r = run_cli("inspect", str(tmp_path / "missing.txt"))
    assert r.returncode != 0 and "no such file" in r.stderr and "Traceback" not in r.stderr
    path, line = corpus_with("NaN value", tmp_path)
    r = run_cli("inspect", str(path), "--strict")
    assert r.returncode != 0 and f":{line}:" in r.stderr and "non_finite_value" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_prepare_writes_then_reuses(tmp_path):
    src, out = good_file(tmp_path), tmp_path / "x.npz"
    r1 = run_cli("prepare", str(src), "--out", str(out))
    r2 = run_cli("prepare", str(src), "--out", str(out))
    assert r1.returncode == 0 and "written" in r1.stdout
    assert r2.returncode == 0 and "reused" in r2.stdout
    assert len(mbd.load_cache(out)) == 5


def test_empty_and_foreign_files_give_zero_events(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    events, rep = mbd.parse_file(empty, device="EP")
    assert events.signals.shape == (0, 14, 0) and rep.lines_total == 0 and rep.events_total == 0
    with pytest.raises(ValueError, match="no MindBigData lines"):  # nothing to detect a device from
        mbd.parse_file(empty)
    foreign = write(tmp_path, ["1\t1\tMW\tFP1\t3\t2\t1.0,2.0", ""], "mw.txt")
    events, rep, _ = mbd.prepare(foreign, tmp_path / "mw.npz", device="EP")
    assert len(events) == 0 and rep.lines_other_device == 1 and rep.lines_blank == 1
    assert "no EP events, but lines of MW (1)" in rep.summary()
    assert mbd.load_cache(tmp_path / "mw.npz").signals.shape == (0, 14, 0)
    events, rep = mbd.parse_file(foreign)  # without --device: detected from the line itself
    assert rep.device == "MW" and len(events) == 1 and events.channels == ("FP1",)
