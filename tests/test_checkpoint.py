import os
import pickle

import pytest
import torch

from helpers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip_keeps_tensors_and_plain_data(tmp_path):
    obj = {"w": torch.arange(6.0).reshape(2, 3), "history": [{"epoch": 1, "total": 0.5}], "name": "x"}
    path = save_checkpoint(obj, tmp_path / "models" / "last.pt")
    back = load_checkpoint(path)
    assert torch.equal(back["w"], obj["w"]) and back["history"] == obj["history"] and back["name"] == "x"
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left behind


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_crafted_pickle_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"payload": _Evil()}, path)  # a pickle that would run a command when unpickled
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(path)
    # plain pickle (not torch's zip format) is refused too
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"payload": _Evil()}))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)


def test_truncated_and_missing_checkpoints_give_clear_errors(tmp_path):
    path = save_checkpoint({"w": torch.randn(1000)}, tmp_path / "last.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path):
    path = save_checkpoint({"w": torch.ones(3)}, tmp_path / "last.pt")

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint({"w": torch.zeros(3), "bad": Unsaveable()}, path)
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
