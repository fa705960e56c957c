"""The parser on several processes (helpers.parse_parallel) gives the one-process result exactly: the same events,
values and line accounting, the same strict-mode error, for text and zip, on files cut into many small ranges."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from helpers import mindbigdata as mbd
from helpers import parse_parallel, textparser
from tests.test_mindbigdata import FAULTS, event_lines, write


@pytest.fixture
def small_blocks(monkeypatch):
    """Ranges of about 2 KB: a test file of a few events is cut into many ranges, some inside events."""
    monkeypatch.setattr(textparser, "BLOCK_BYTES", 2000)


def parse_both(path, **kw):
    one = mbd.parse_file(path, workers=1, **kw)
    two = mbd.parse_file(path, workers=2, **kw)
    return one, two


def assert_same(one, two):
    (a, ra), (b, rb) = one, two
    for name in ("signals", "sizes", "codes", "event_ids"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.signals.dtype == b.signals.dtype == np.float32
    da, db = ra.to_dict(), rb.to_dict()
    da.pop("seconds")
    db.pop("seconds")
    assert da == db


def mixed_lines():
    """Every fault once, between good events, with blank lines, another device and unreadable lines."""
    lines = []
    for i, fault in enumerate(sorted(FAULTS)):
        bad = event_lines(1001 + 2 * i, 2, size=8 + i % 3)  # not 7: the size-mismatch fault writes 7
        FAULTS[fault][0](bad)
        lines += event_lines(1000 + 2 * i, i % 10, size=6 + i % 4) + bad
        if i % 5 == 0:
            lines += ["", "5\t5\tMW\tFP1\t3\t3\t1.0,2.0,3.0", "garbage without tabs", "   "]
    return lines


def test_every_fault_and_layout_gives_the_one_process_result(tmp_path, small_blocks):
    path = write(tmp_path, mixed_lines(), newline="\r\n")
    one, two = parse_both(path, device="EP")
    assert_same(one, two)
    rep = two[1]
    assert rep.events_valid == len(FAULTS) and sum(rep.events_skipped.values()) == len(FAULTS)
    extras = len(range(0, len(FAULTS), 5))  # times the blank, MW and garbage lines were added
    assert rep.lines_unreadable == extras and rep.lines_other_device == extras and rep.lines_blank == 2 * extras
    assert len(parse_parallel.file_ranges(path, path.stat().st_size)) > 10  # really cut into many ranges


def test_ranges_end_where_events_end(tmp_path, small_blocks):
    lines = []
    for i in range(30):
        lines += event_lines(i, i % 10, size=5 + i % 3)
    path = write(tmp_path, lines)
    data = path.read_bytes()
    ranges = parse_parallel.file_ranges(path, len(data))
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    for start, _ in ranges[1:]:
        assert data[start - 1:start] == b"\n"
        # The line before the cut belongs to another event than the line after it.
        before = data[:start - 1].rsplit(b"\n", 1)[-1].split(b"\t")[1]
        assert data[start:].split(b"\t", 2)[1] != before
    assert_same(*parse_both(path))


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_strict_mode_raises_the_same_line(fault, tmp_path, small_blocks):
    lines = []
    for i in range(6):
        lines += event_lines(100 + i, 3)
    bad = event_lines(200, 5)
    FAULTS[fault][0](bad)
    path = write(tmp_path, lines + bad + event_lines(300, 7))
    errors = []
    for workers in (1, 2):
        with pytest.raises(mbd.MindBigDataError) as e:
            mbd.parse_file(path, strict=True, workers=workers)
        errors.append((e.value.line_number, e.value.reason, str(e.value)))
    assert errors[0] == errors[1]
    assert errors[0][1] == FAULTS[fault][1]


def test_events_not_written_together_fall_back_to_one_process(tmp_path, small_blocks, monkeypatch):
    """Shuffled lines: an event lies in several ranges, which cannot be merged exactly; the file is parsed again
    in one process, and the answer is still the one-process answer."""
    lines = []
    for i in range(12):
        lines += event_lines(i, i % 10)
    np.random.default_rng(0).shuffle(lines)
    path = write(tmp_path, lines)
    one = mbd.parse_file(path, workers=1)
    calls = []
    real = textparser.parse_stream
    monkeypatch.setattr(textparser, "parse_stream", lambda *a: calls.append(1) or real(*a))
    two = mbd.parse_file(path, workers=2)
    assert calls == [1]  # the fallback ran
    assert_same(one, two)
    assert two[1].events_valid == 12


def test_zip_stream_on_workers_matches_text(tmp_path, small_blocks):
    lines = mixed_lines()
    text = write(tmp_path, lines)
    zpath = tmp_path / "MindBigData-EP-v1.0.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(text, "EP1.01.txt")
    (a, ra), (b, rb) = mbd.parse_file(text, device="EP", workers=1), mbd.parse_file(zpath, device="EP", workers=2)
    for name in ("signals", "sizes", "codes", "event_ids"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    da, db = ra.to_dict(), rb.to_dict()
    for d in (da, db):
        d.pop("seconds")
        d.pop("path")
    assert da == db


def test_last_line_without_newline_and_one_event_per_range(tmp_path, monkeypatch):
    monkeypatch.setattr(textparser, "BLOCK_BYTES", 50)  # smaller than one line: every range is one event
    lines = []
    for i in range(5):
        lines += event_lines(i, i)
    path = tmp_path / "f.txt"
    path.write_bytes("\n".join(lines).encode())  # no newline after the last line
    one, two = parse_both(path)
    assert_same(one, two)
    assert two[1].events_valid == 5 and two[1].lines_total == 70


def test_workers_by_default_only_for_big_files():
    assert parse_parallel.default_workers(10 * 1024 * 1024) == 1
    assert parse_parallel.default_workers(3 * 1024 ** 3) >= 1


def test_metadata_longer_than_the_head_window_is_read_whole(tmp_path, small_blocks):
    """The scan reads a line's six metadata fields from its first bytes (textparser._HEAD); longer ones (here a code
    padded to 300 digits, still the integer 4) are split from the whole line, with the same values."""
    lines = event_lines(1, 4) + event_lines(2, 5)
    padded = [ln.split("\t") for ln in lines[:14]]
    for f in padded:
        f[4] = "4".rjust(300, "0")
    path = write(tmp_path, ["\t".join(f) for f in padded] + lines[14:])
    assert len(padded[0][0]) + 300 > textparser._HEAD
    one, two = parse_both(path)
    assert_same(one, two)
    events, rep = one
    assert rep.events_valid == 2 and events.codes.tolist() == [4, 5]
    expected = np.array(lines[0].split("\t")[6].split(","), dtype=np.float32)
    np.testing.assert_array_equal(events.signals[0, 0, :len(expected)], expected)
