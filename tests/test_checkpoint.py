"""Checkpoints under real faults: cut at every region, a flipped byte, another file in place, a full disk."""
import io
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from helpers.checkpoint import (CheckpointError, CheckpointFallbackWarning, _seal, is_intact, load_checkpoint,
                                load_checkpoint_or_previous, save_checkpoint, write_text_atomic)

ROOT = Path(__file__).resolve().parents[1]


def test_round_trip_keeps_tensors_and_plain_data(tmp_path):
    obj = {"w": torch.arange(6.0).reshape(2, 3), "history": [{"epoch": 1, "total": 0.5}], "name": "x"}
    path = save_checkpoint(obj, tmp_path / "models" / "last.pt")
    back = load_checkpoint(path)
    assert torch.equal(back["w"], obj["w"]) and back["history"] == obj["history"] and back["name"] == "x"
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left behind
    # Still a plain torch archive: torch.load reads it as it is (the checksum lives in the zip comment).
    assert torch.equal(torch.load(path, weights_only=True)["w"], obj["w"])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_crafted_pickle_is_refused_with_a_clear_error(tmp_path):
    buf = io.BytesIO()
    torch.save({"payload": _Evil()}, buf)  # a pickle that would run a command when unpickled
    path = tmp_path / "evil.pt"
    path.write_bytes(_seal(buf.getvalue()))  # even with a valid checksum, weights_only refuses it
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(path)
    # plain pickle, and a torch file not written by save_checkpoint: no checksum, refused before unpickling
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"payload": _Evil()}))
    torch.save({"payload": _Evil()}, tmp_path / "plain.pt")
    for p in (raw, tmp_path / "plain.pt"):
        with pytest.raises(CheckpointError, match="not a checkpoint of this project"):
            load_checkpoint(p)


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_cut_at_every_region_flipped_bytes_and_text_give_one_line_errors(tmp_path):
    good = save_checkpoint({"w": torch.randn(1000), "history": [{"epoch": 1}]}, tmp_path / "good.pt").read_bytes()
    n = len(good)
    path = tmp_path / "last.pt"
    # Cut points: the start, every 97th byte through the middle, and each of the last 100 bytes (the zip
    # directory and the checksum trailer), down to one byte short.
    cuts = sorted({0, 1, 2, 10, n // 2, *range(0, n, 97), *range(max(0, n - 100), n)})
    for cut in cuts:
        path.write_bytes(good[:cut])
        with pytest.raises(CheckpointError, match="truncated") as e:
            load_checkpoint(path)
        assert str(path) in _one_line(e)
    # One flipped byte anywhere: header, tensor data, zip directory, checksum itself.
    for pos in sorted({0, 5, 100, n // 3, n // 2, n - 200, n - 80, n - 64, n - 30, n - 1, *range(0, n, 53)}):
        bad = bytearray(good)
        bad[pos] ^= 0x01
        path.write_bytes(bytes(bad))
        with pytest.raises(CheckpointError, match="corrupt|truncated|not a checkpoint") as e:
            load_checkpoint(path)
        _one_line(e)
    # A text file in its place (it used to raise a KeyError deep inside torch).
    path.write_text("epoch,total\n1,0.5\n")
    with pytest.raises(CheckpointError, match="not a checkpoint of this project") as e:
        load_checkpoint(path)
    _one_line(e)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")


def test_previous_checkpoint_is_kept_and_used_when_the_last_is_damaged(tmp_path):
    last, prev = tmp_path / "last.pt", tmp_path / "previous.pt"
    save_checkpoint({"epoch": 1}, last, previous=prev)
    assert not prev.exists()
    save_checkpoint({"epoch": 2}, last, previous=prev)
    assert load_checkpoint(prev)["epoch"] == 1 and load_checkpoint(last)["epoch"] == 2
    data = last.read_bytes()
    last.write_bytes(data[:-7])  # last.pt damaged on disk
    logs = []
    obj, used = load_checkpoint_or_previous(last, prev, log=logs.append)
    assert obj["epoch"] == 1 and used == prev
    assert len(logs) == 1 and str(last) in logs[0] and str(prev) in logs[0] and "\n" not in logs[0]
    with pytest.warns(CheckpointFallbackWarning, match="previous.pt"):
        load_checkpoint_or_previous(last, prev)
    # A damaged last.pt is never rotated over the good previous one.
    save_checkpoint({"epoch": 3}, last, previous=prev)
    assert load_checkpoint(prev)["epoch"] == 1 and load_checkpoint(last)["epoch"] == 3
    # Neither good: refused, naming both, and nothing on disk changes.
    last.write_bytes(b"garbage")
    prev.write_bytes(prev.read_bytes()[:100])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(CheckpointError, match="no good checkpoint") as e:
        load_checkpoint_or_previous(last, prev, log=logs.append)
    assert "last.pt" in _one_line(e) and "previous.pt" in str(e.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_failed_write_in_the_writer_leaves_previous_checkpoint_intact(tmp_path):
    path = save_checkpoint({"w": torch.ones(3)}, tmp_path / "last.pt")

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint({"w": torch.zeros(3), "bad": Unsaveable()}, path)
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3)) and is_intact(path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


FULL_DISK = textwrap.dedent("""
    import resource, signal, sys, torch
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from helpers.checkpoint import save_checkpoint
    from helpers.atomic import write_text_atomic
    d = Path(sys.argv[1])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit raises OSError, like a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    for name, write in [("ckpt", lambda: save_checkpoint({{"w": torch.zeros(100_000)}}, d / "last.pt",
                                                           previous=d / "previous.pt")),
                        ("text", lambda: write_text_atomic(d / "history.json", "x" * 100_000))]:
        try:
            write()
            print(name, "WROTE")
        except OSError as e:
            print(name, "OSError", e)
""")


def test_full_disk_keeps_the_previous_files_and_leaves_no_temporary_file(tmp_path):
    last = save_checkpoint({"w": torch.ones(10)}, tmp_path / "last.pt", previous=tmp_path / "previous.pt")
    save_checkpoint({"w": torch.full((10,), 2.0)}, last, previous=tmp_path / "previous.pt")
    write_text_atomic(tmp_path / "history.json", "[1]")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    r = subprocess.run([sys.executable, "-c", FULL_DISK.format(root=str(ROOT)), str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("ckpt OSError") and "File too large" in lines[0] and "last.pt" in lines[0]
    assert lines[1].startswith("text OSError") and "File too large" in lines[1]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no .tmp file, nothing changed
    assert torch.equal(load_checkpoint(last)["w"], torch.full((10,), 2.0))
    assert torch.equal(load_checkpoint(tmp_path / "previous.pt")["w"], torch.ones(10))
