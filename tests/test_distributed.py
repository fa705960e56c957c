"""Two processes with torchrun (gloo, CPU): the run finishes, writes one set of results recording world_size 2,
and its first-epoch losses match a single process at the same effective batch."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import distributed

REPO = Path(__file__).resolve().parents[1]
ARGS = ["run", "--profile", "ci", "--set", "epochs=1", "--set", "reference_epochs=1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, out, *extra):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CI": "1", "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    r = subprocess.run([*cmd, *ARGS, *extra, "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r


def _torchrun():
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(_free_port()), "-m", "helpers"]


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
    """The seed's loss without the label term (Config's default, the gpu profile's): the label head is then unused,
    which DistributedDataParallel must be told."""
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, "-m", "helpers"], one, "--set", "lambda_cls=0")
    r = _run(_torchrun(), two, "--set", "lambda_cls=0")
    assert r.stderr.count("[4/4] evaluation") == 1  # rank 0 alone evaluates and logs (the log is on stderr)
    metrics = json.loads((two / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and json.loads((two / "config.json").read_text())["world_size"] == 2
    assert json.loads((one / "metrics.json").read_text())["world_size"] == 1
    assert sorted(p.name for p in (two / "models").iterdir()) == sorted(p.name for p in (one / "models").iterdir())
    h1, h2 = (json.loads((d / "history.json").read_text()) for d in (one, two))
    assert len(h1) == len(h2) == 1
    # Same batches, each process a half of every one, gradients averaged: the epoch's mean losses agree (measured
    # with the label term: total 13.755 vs 13.742). BatchNorm over half-batches and other noise draws: some slack.
    for term in ("train_total", "train_rec", "train_kl"):
        assert h2[0][term] == pytest.approx(h1[0][term], rel=0.02), term


@pytest.mark.slow
def test_two_processes_with_the_label_term_and_a_refused_folder(tmp_path):
    out = tmp_path / "two"
    _run(_torchrun(), out)  # the ci profile: label term on, the head inside the DDP forward
    assert json.loads((out / "metrics.json").read_text())["world_size"] == 2
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    r = subprocess.run([*_torchrun(), *ARGS, "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                       timeout=600, env={**env, "HF_HUB_OFFLINE": "1", "CI": "1", "OMP_NUM_THREADS": "1"})
    # A folder that holds a run: rank 0 refuses it in one line and the other rank stops too (no wait at a barrier).
    assert r.returncode != 0 and "already holds a run" in r.stderr


def _worker_pid(port: int, rank: int) -> int | None:
    """The torchrun worker of ``rank`` in the run that uses ``port``: found by its environment, and the lowest such
    process id, since processes a worker forks inherit its environment."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = dict(kv.split("=", 1) for kv in (proc / "environ").read_text().split("\0") if "=" in kv)
        except OSError:
            continue
        if env.get("MASTER_PORT") == str(port) and env.get("RANK") == str(rank) and "TORCHELASTIC_RUN_ID" in env:
            found.append(int(proc.name))
    return min(found, default=None)


EPOCHS = ("--set", "epochs=3")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A 2-process run of 3 epochs that nothing interrupts: the reference of the kill tests."""
    ref = tmp_path_factory.mktemp("uninterrupted") / "run"
    _run(_torchrun(), ref, *EPOCHS)
    return ref


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker through /proc (Linux)")
@pytest.mark.parametrize("rank", [0, 1])
def test_a_killed_rank_resumes_exactly(tmp_path, rank, uninterrupted):
    """SIGKILL one process of a 2-process run after its first checkpoint; `--resume` under torchrun then finishes
    with the very losses of a run that was never interrupted (each epoch's randomness comes from the seed and the
    epoch, and rank 0's checkpoint holds everything else)."""
    epochs, ref, killed = EPOCHS, uninterrupted, tmp_path / "killed"
    cmd = _torchrun()
    port = int(cmd[cmd.index("--master_port") + 1])
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    log = tmp_path / "killed.log"  # a file, not a pipe: nobody reads while it runs, and a full pipe would block it
    with open(log, "w") as err:
        proc = subprocess.Popen([*cmd, *ARGS, *epochs, "--out", str(killed)], cwd=REPO, stdout=err, stderr=err,
                                env={**env, "HF_HUB_OFFLINE": "1", "CI": "1", "OMP_NUM_THREADS": "1"})
        try:
            history = killed / "history.json"
            deadline = time.monotonic() + 600
            while not (history.is_file() and len(json.loads(history.read_text() or "[]")) >= 1):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.05)
            pid = _worker_pid(port, rank)
            assert pid is not None, "rank's process not found"
            os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode != 0  # torchrun stops the run when a worker dies
    done = json.loads(history.read_text())
    assert 1 <= len(done) < 3, "the kill came after the run had finished: nothing to resume"
    _run(_torchrun(), killed, *epochs, "--resume")
    h_ref, h_res = (json.loads((d / "history.json").read_text()) for d in (ref, killed))
    assert [r["epoch"] for r in h_res] == [1, 2, 3]
    for a, b in zip(h_ref, h_res):
        for key in a:
            if key.startswith(("train_", "val_")):
                assert a[key] == b[key], (a["epoch"], key, a[key], b[key])
    m_ref, m_res = (json.loads((d / "metrics.json").read_text()) for d in (ref, killed))
    assert m_res["judge_top1"] == m_ref["judge_top1"] and m_res["world_size"] == 2


def test_without_torchrun_nothing_is_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.setup("cpu") == 1 and distributed.is_main() and distributed.rank() == 0
    assert distributed.broadcast_flag(True) is True and distributed.all_reduce_sum([1.0, 2.0]) == [1.0, 2.0]
