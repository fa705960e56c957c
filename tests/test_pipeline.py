"""The whole pipeline as a user runs it: `python -m helpers run`, resume, bad input, and honest numbers."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.config import make_config
from helpers.pipeline import build_trainer, evaluate_trainer, load_semantic, prepare_data, train_data
from helpers.stats import chance_interval

CONTRACT_KEYS = {"n_test_events": int, "semantic_top1": float, "semantic_top3": float, "judge_top1": float,
                 "judge_top3": float, "linear_baseline_top1": float, "chance_top1": float,
                 "chance_top1_upper95": float, "clip_semantic": bool, "oracle_top1": float}


def run_cli(args, data_dir, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EEG2IMG_PROFILE": "ci", "EEG2IMG_DATA_DIR": str(data_dir),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    return subprocess.run([sys.executable, "-m", "helpers", "run", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, judge_dir):
    root = tmp_path_factory.mktemp("cli")
    out = root / "results"
    (out / "models").mkdir(parents=True)
    for f in judge_dir.iterdir():  # reuse the session's judge instead of training another
        shutil.copy(f, out / "models" / f.name)
    proc = run_cli(["--profile", "ci", "--out", str(out), "--set", "epochs=1", "--set", "synthetic_events=600"],
                   root / "dataset")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, out, proc


def test_run_writes_contract_metrics_config_history_and_figures(cli_run):
    root, out, proc = cli_run
    m = json.loads((out / "metrics.json").read_text())
    for key, typ in CONTRACT_KEYS.items():
        assert isinstance(m[key], typ), f"{key} should be {typ.__name__}, got {m[key]!r}"
    assert m["clip_semantic"] is False  # the ci profile's tiny CLIP is untrained, and says so
    assert m["synthetic"] is True and 0.1 < m["oracle_top1"] <= 1.0
    assert m["chance_top1"] == pytest.approx(0.1) and m["chance_top1_upper95"] > 0.1
    assert m["n_test_events"] == m["split"]["n_test"] > 0
    assert 0 <= m["judge_top1"] <= m["judge_top3"] <= 1
    assert "oracle_label_judge_top1" in m and "permutation_top1" in m["scorers"]["judge"]
    assert json.loads((out / "config.json").read_text())["epochs"] == 1
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1]
    for fig in ("signature_grid", "training_curves", "confusion_matrix", "accuracy_bars", "prediction_histogram"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 10_000
    assert "SYNTHETIC" in proc.stderr + proc.stdout and "UNTRAINED CLIP" in proc.stderr + proc.stdout


def test_resume_continues_from_the_last_epoch(cli_run):
    root, out, _ = cli_run
    proc = run_cli(["--profile", "ci", "--out", str(out), "--resume", "--set", "epochs=2",
                    "--set", "synthetic_events=600"], root / "dataset")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed" in proc.stdout and "after epoch 1" in proc.stdout
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2]


def test_bad_overrides_and_mismatched_resume_fail_cleanly(cli_run):
    root, out, _ = cli_run
    bad = run_cli(["--profile", "ci", "--out", str(root / "x"), "--set", "lamda_clip=1"], root / "dataset")
    assert bad.returncode == 1 and "unknown config field" in bad.stderr and "Traceback" not in bad.stderr
    other = run_cli(["--profile", "ci", "--out", str(out), "--resume", "--set", "lambda_clip=0",
                     "--set", "synthetic_events=600"], root / "dataset")
    assert other.returncode == 1 and "lambda_clip" in other.stderr and "Traceback" not in other.stderr


@pytest.mark.parametrize("mode", ["null", "session_blocks"])
def test_no_leakage_on_data_without_per_event_class_signal(mode, tmp_path, monkeypatch, judge):
    """No per-event class information: the judge and the linear baseline stay below chance's 95 % upper bound.

    Leakage would push the numbers up; the check is one-sided because a nearly constant generator (one
    epoch) can score below chance when the held-out block holds only some of the digits (session blocks).

    "session_blocks": the digit follows recording sessions, each with its own drift, and nothing else; a
    random split would learn drift -> digit and look good. With many short sessions, the held-out block holds
    sessions (and digits) of its own, so an honest split scores at chance.
    """
    from helpers.synthetic import SyntheticSpec, write_synthetic

    monkeypatch.setenv("EEG2IMG_DATA_DIR", str(tmp_path / "dataset"))
    spec = (SyntheticSpec(n_events=1200, class_strength=0.0, seed=3) if mode == "null" else
            SyntheticSpec(n_events=1200, seed=3, label_mode="session_blocks", n_blocks=120))
    path = tmp_path / f"{mode}.txt"
    write_synthetic(path, spec)
    cfg = make_config("ci", {"epochs": 1})
    prepared = prepare_data(cfg, path)
    assert prepared.synthetic and prepared.loaded.oracle_top1 == pytest.approx(0.1)
    semantic = load_semantic(cfg)
    trainer = build_trainer(cfg, semantic, None)
    trainer.fit(*train_data(prepared), progress=False)
    m = evaluate_trainer(trainer, prepared, semantic, tmp_path / "out", judge=judge, figures=False,
                         n_permutations=200, log=lambda *_: None)
    _, hi = chance_interval(m["n_test_events"], 0.1)
    for key in ("linear_baseline_top1", "judge_top1"):
        assert m[key] <= hi, f"{key} = {m[key]:.3f} above chance's 95 % upper bound {hi:.3f}: leakage?"
    assert m["linear_baseline_top1_p_value"] > 0.05
