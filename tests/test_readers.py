"""Data as users get it: the zip, the Hugging Face CSV, a file of another device, a spreadsheet export; each read
by content through the one entry point (parse_file / inspect), on small files made here."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from helpers import mindbigdata as mbd
from helpers import readers
from tests.test_mindbigdata import EP, event_lines, good_file, run_cli, write


def same_events(a, b):
    assert a.event_ids.tolist() == b.event_ids.tolist() and a.codes.tolist() == b.codes.tolist()
    np.testing.assert_array_equal(a.signals, b.signals)
    np.testing.assert_array_equal(a.sizes, b.sizes)


def zipped(src, dst, members=None):
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in (members or {src.name: src.read_bytes()}).items():
            zf.writestr(name, data)
    return dst


def test_the_zip_reads_as_its_text_file_without_unpacking(tmp_path):
    src = good_file(tmp_path, n=7)
    ref, ref_rep = mbd.parse_file(src)
    events, rep = mbd.parse_file(zipped(src, tmp_path / "MindBigData-EP-v1.0.zip"))
    same_events(ref, events)
    assert rep.path.endswith("MindBigData-EP-v1.0.zip:good.txt") and rep.lines_total == ref_rep.lines_total
    assert rep.events_valid == ref_rep.events_valid and sorted(p.name for p in tmp_path.iterdir()) == [
        "MindBigData-EP-v1.0.zip", "good.txt"]  # nothing unpacked beside it
    cached, _, reused = mbd.prepare(tmp_path / "MindBigData-EP-v1.0.zip", tmp_path / "c.npz")
    same_events(ref, cached)
    assert not reused and mbd.prepare(tmp_path / "MindBigData-EP-v1.0.zip", tmp_path / "c.npz")[2]


def test_a_damaged_or_ambiguous_zip_is_refused_in_one_line(tmp_path):
    src = good_file(tmp_path, n=40)
    z = zipped(src, tmp_path / "d.zip")
    raw = bytearray(z.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the compressed member: the CRC (or inflate) fails as it is read
    z.write_bytes(bytes(raw))
    with pytest.raises(readers.DataFormatError, match="damaged"):
        mbd.parse_file(z, device="EP")
    r = run_cli("inspect", str(z), "--device", "EP")
    assert r.returncode != 0 and "damaged" in r.stderr and "Traceback" not in r.stderr
    two = zipped(src, tmp_path / "two.zip", {"a.txt": b"x", "b.txt": b"y"})
    with pytest.raises(readers.DataFormatError, match="exactly one"):
        mbd.parse_file(two)


def hf_csv(tmp_path, labels, n_samples=4, rng=None, name="train.csv"):
    """A MindBigData2022-style CSV: label, then <channel>-<sample> columns (shuffled); returns (path, values)."""
    rng = rng or np.random.default_rng(0)
    cols = [f"{c}-{t}" for c in EP for t in range(n_samples)]
    order = rng.permutation(len(cols))
    values = rng.normal(size=(len(labels), len(EP), n_samples)).round(3)
    flat = values.reshape(len(labels), -1)
    lines = [",".join(["label"] + [cols[i] for i in order])]
    lines += [",".join([str(lab)] + [repr(float(row[i])) for i in order]) for lab, row in zip(labels, flat)]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path, values


def test_the_hugging_face_csv_reads_by_column_names(tmp_path):
    labels = [3, -1, 7, 0, 9]
    path, values = hf_csv(tmp_path, labels)
    events, rep = mbd.parse_file(path)
    assert rep.device == "EP" and events.channels == EP and events.sfreq == 128
    assert events.codes.tolist() == labels and events.event_ids.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(events.signals, values, rtol=1e-6)  # channel order restored from the names
    assert rep.codes["-1"] == 1 and any("no event ids" in n for n in rep.notes)
    assert any("optimistic" in n for n in rep.notes)
    r = run_cli("inspect", str(path))
    assert r.returncode == 0 and "note: Hugging Face CSV" in r.stdout


def test_csv_rows_with_bad_values_are_counted_and_a_wrong_device_refused(tmp_path):
    path, _ = hf_csv(tmp_path, [1, 2, 3])
    lines = path.read_text().splitlines()
    cells = lines[2].split(",")
    cells[5] = "nan"
    lines[2] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    events, rep = mbd.parse_file(path)
    assert events.codes.tolist() == [1, 3] and rep.events_skipped == {"non_finite_value": 1}
    assert rep.events_valid + sum(rep.events_skipped.values()) == rep.events_total == 3
    with pytest.raises(readers.DataFormatError, match="not MU"):
        mbd.parse_file(path, device="MU")


def test_a_muse_file_is_detected_and_a_mixed_file_asks_for_a_device(tmp_path):
    muse = write(tmp_path, event_lines(5, 2, channels=("TP9", "FP1", "FP2", "TP10"), device="MU"), "mu.txt")
    events, rep = mbd.parse_file(muse)
    assert rep.device == "MU" and len(events) == 1 and events.sfreq == 220
    r = run_cli("inspect", str(muse), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["device"] == "MU"
    mixed = write(tmp_path, event_lines(1, 2) + event_lines(5, 2, channels=("FP1",), device="MW"), "mix.txt")
    r = run_cli("inspect", str(mixed))
    assert r.returncode != 0 and "EP (14 lines), MW (1 lines)" in r.stderr and "--device" in r.stderr
    assert "Traceback" not in r.stderr
    assert len(mbd.parse_file(mixed, device="EP")[0]) == 1


def test_a_spreadsheet_export_is_named_as_such(tmp_path):
    lines = [f'"{ln.split(chr(9))[0]}"\t' + "\t".join(ln.split("\t")[1:]) for ln in event_lines(1, 4)]
    path = tmp_path / "export.txt"
    path.write_bytes(readers.BOM + ("\n".join(lines) + "\n").encode())
    with pytest.raises(readers.DataFormatError, match="spreadsheet export"):
        mbd.parse_file(path)
    r = run_cli("inspect", str(path))
    assert r.returncode != 0 and "byte-order mark" in r.stderr and "14 of the first 14 lines" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_csv_saved_with_a_bom_and_windows_line_ends_is_still_the_csv(tmp_path):
    path, values = hf_csv(tmp_path, [4, 5])
    path.write_bytes(readers.BOM + path.read_bytes().replace(b"\n", b"\r\n"))
    events, rep = mbd.parse_file(path)
    assert rep.device == "EP" and events.codes.tolist() == [4, 5]
    np.testing.assert_allclose(events.signals, values, rtol=1e-6)


def test_detected_and_named_device_share_one_cache(tmp_path):
    src, out = good_file(tmp_path), tmp_path / "c.npz"
    assert not mbd.prepare(src, out)[2]
    assert mbd.prepare(src, out, device="EP")[2] and mbd.prepare(src, out)[2]  # reused both times


def test_a_zip_repacked_on_macos_and_a_broken_inflate_stream(tmp_path):
    src = good_file(tmp_path, n=40)
    mac = zipped(src, tmp_path / "mac.zip", {"EP1.01.txt": src.read_bytes(), "__MACOSX/._EP1.01.txt": b"\x00" * 80})
    assert len(mbd.parse_file(mac)[0]) == 40
    raw = bytearray(zipped(src, tmp_path / "z.zip").read_bytes())
    refused = 0
    for i in range(60, len(raw) - 200, max(1, (len(raw) - 260) // 40)):  # bytes all over the deflate stream
        bad = bytearray(raw)
        bad[i] ^= 0x55
        (tmp_path / "b.zip").write_bytes(bytes(bad))
        try:
            mbd.parse_file(tmp_path / "b.zip", device="EP")
        except readers.DataFormatError:
            refused += 1  # CRC, inflate (zlib.error) or length: one line, never a traceback
    assert refused >= 30


def test_text_in_a_csv_value_refuses_the_file_in_one_line(tmp_path):
    path, _ = hf_csv(tmp_path, [1, 2])
    path.write_text(path.read_text().replace("\n1,", "\n1,abc,", 1))
    with pytest.raises(readers.DataFormatError, match="numeric"):
        mbd.parse_file(path)


def test_notebook_01s_raw_lines_read_inside_the_zip(tmp_path):
    from helpers.explore import raw_lines

    src = good_file(tmp_path)
    assert raw_lines(zipped(src, tmp_path / "r.zip")) == raw_lines(src)
    assert raw_lines(src)[0].split("\t")[2] == "EP"
    path, _ = hf_csv(tmp_path, [1])
    assert len(raw_lines(path, n=1)[0]) < 300
