"""The whole pipeline as a user runs it: `python -m helpers run`, resume, bad input, and honest numbers."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers.config import make_config
from tests.quick_run import train_and_evaluate

CONTRACT_KEYS = {"n_test_events": int, "semantic_top1": float, "semantic_top3": float, "judge_top1": float,
                 "judge_top3": float, "linear_baseline_top1": float, "chance_top1": float,
                 "chance_top1_upper95": float, "clip_semantic": bool, "oracle_top1": float}


def run_cli(args, data_dir, timeout=600, env_profile="ci"):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EEG2IMG_PROFILE": env_profile, "EEG2IMG_DATA_DIR": str(data_dir),
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
    # A bad EEG2IMG_PROFILE in the environment must not matter when --profile is given: the configuration comes
    # from the command line (docs/DESIGN.md#configuration).
    proc = run_cli(["--profile", "ci", "--out", str(out), "--set", "epochs=1", "--set", "synthetic_events=600"],
                   root / "dataset", env_profile="laptop")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, out, proc


def test_run_writes_contract_metrics_config_history_and_figures(cli_run):
    root, out, proc = cli_run
    m = json.loads((out / "metrics.json").read_text())
    for key, typ in CONTRACT_KEYS.items():
        assert isinstance(m[key], typ), f"{key} should be {typ.__name__}, got {m[key]!r}"
    assert m["clip_semantic"] is False  # the ci profile's tiny CLIP is untrained, and says so
    assert m["synthetic"] is True and 0.1 < m["oracle_top1"] <= 1.0
    assert 0.1 <= m["chance_top1"] < 0.3 and m["chance_top1_upper95"] > m["chance_top1"]  # the test block's class mix
    assert "majority_class_top1" in m and "ssim_label_blind" in m and "ssim_wrong_digit" in m
    assert m["n_test_events"] == m["split"]["n_test"] > 0
    assert 0 <= m["judge_top1"] <= m["judge_top3"] <= 1
    assert "oracle_label_judge_top1" in m and "permutation_top1" in m["scorers"]["judge"]
    assert json.loads((out / "config.json").read_text())["epochs"] == 1
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1]
    for fig in ("signature_grid", "training_curves", "confusion_matrix", "accuracy_bars", "prediction_histogram"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 10_000
    assert "SYNTHETIC" in proc.stderr + proc.stdout and "UNTRAINED CLIP" in proc.stderr + proc.stdout
    # The log (stderr, redirected here): the stages and one line per epoch, no progress-bar refreshes.
    assert "[1/4] data and features" in proc.stderr and "epoch 1/1: total" in proc.stderr
    assert "\r" not in proc.stderr and "it/s" not in proc.stderr


def test_resume_continues_from_the_last_epoch(cli_run):
    root, out, _ = cli_run
    proc = run_cli(["--profile", "ci", "--out", str(out), "--resume", "--set", "epochs=2",
                    "--set", "synthetic_events=600"], root / "dataset")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed" in proc.stderr and "after epoch 1" in proc.stderr  # the log (helpers.log) is on stderr
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2]


def test_bad_overrides_and_mismatched_resume_fail_cleanly(cli_run):
    root, out, _ = cli_run
    bad = run_cli(["--profile", "ci", "--out", str(root / "x"), "--set", "lamda_clip=1"], root / "dataset")
    assert bad.returncode == 1 and "unknown config field" in bad.stderr and "Traceback" not in bad.stderr
    other = run_cli(["--profile", "ci", "--out", str(out), "--resume", "--set", "lambda_clip=0",
                     "--set", "synthetic_events=600"], root / "dataset")
    assert other.returncode == 1 and "lambda_clip" in other.stderr and "Traceback" not in other.stderr


def _snapshot(folder):
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_run_into_a_folder_with_a_run_is_refused_unless_resume_or_force(cli_run):
    root, out, _ = cli_run
    before = _snapshot(out)
    again = run_cli(["--profile", "ci", "--out", str(out), "--set", "synthetic_events=600"], root / "dataset")
    assert again.returncode == 1 and "Traceback" not in again.stderr
    err = [line for line in again.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "already holds a run" in err[0]
    assert "--resume" in err[0] and "--force" in err[0]
    # A split that cannot work is refused up front too (val=0 used to crash after training).
    split = run_cli(["--profile", "ci", "--out", str(root / "y"), "--set", "split_fractions=0.85,0,0.15"],
                    root / "dataset")
    assert split.returncode == 1 and "split_fractions: the validation share is 0" in split.stderr
    assert "Traceback" not in split.stderr and not (root / "y").exists()
    assert _snapshot(out) == before  # nothing written, nothing touched


def test_force_replaces_the_run(cli_run):
    root, out, _ = cli_run
    proc = run_cli(["--profile", "ci", "--out", str(out), "--force", "--set", "epochs=1",
                    "--set", "synthetic_events=600", "--set", "lambda_clip=0"], root / "dataset")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--force: replacing the run" in proc.stderr and "resumed" not in proc.stderr
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1]
    assert json.loads((out / "config.json").read_text())["lambda_clip"] == 0
    assert not (out / "models" / "previous.pt").exists()  # the old run's checkpoints are gone
    assert json.loads((out / "metrics.json").read_text())["split"]["gap_events"] == 2


@pytest.mark.parametrize("mode", ["signal", "null", "session_blocks"])
def test_no_leakage_on_data_without_per_event_class_signal(mode, tmp_path, monkeypatch, judge):
    """No per-event class information: the judge and the linear baseline stay below chance's 95 % upper bound.

    "signal" is the positive control, run with the very same events, profile and epochs: there the baseline and
    the generator (judge) must rise above chance, so the null runs below could have failed had anything leaked.
    Leakage would push the null numbers up; the check is one-sided because a nearly constant generator can score
    below chance when the held-out block holds only some of the digits (session blocks).

    "session_blocks": the digit follows recording sessions, each with its own drift, and nothing else; a
    random split would learn drift -> digit and look good. With many short sessions, the held-out block holds
    sessions (and digits) of its own, so an honest split scores at chance.
    """
    from helpers.synthetic import SyntheticSpec, write_synthetic

    monkeypatch.setenv("EEG2IMG_DATA_DIR", str(tmp_path / "dataset"))
    spec = {"signal": SyntheticSpec(n_events=1200, seed=3),
            "null": SyntheticSpec(n_events=1200, class_strength=0.0, seed=3),
            "session_blocks": SyntheticSpec(n_events=1200, seed=3, label_mode="session_blocks", n_blocks=120)}[mode]
    path = tmp_path / f"{mode}.txt"
    write_synthetic(path, spec)
    # The cpu profile's rates and warm-up: at the ci profile's 2e-4 the generator needs ~10 epochs to leave chance,
    # and at 2e-3 without the warm-up the discriminator can win early and leave it there (seen: judge 0.09).
    # The deep EEG references get 10 epochs here (ci: 3), enough to learn a drift if the split let them see one.
    # 8 epochs, not 5: at 5 the positive control sat at the edge (judge 0.32 with earlier package versions, then
    # 0.13 with open_clip 3.3 / pandas 3.1 on seed 0 while seed 1 gave 0.32); at 8 it measured 0.44 (bound 0.17).
    cfg = make_config("ci", {"epochs": 8, "learning_rate": 2e-3, "encoder_learning_rate": 5e-4, "adv_warmup_epochs": 2,
                             "reference_epochs": 10})
    prepared, m = train_and_evaluate(cfg, path, tmp_path / "out", judge)
    hi = m["chance_top1_upper95"]
    if mode == "signal":  # measured with these 8 epochs: baseline 0.55, judge 0.44, bound 0.17
        assert prepared.loaded.oracle_top1 > 0.4
        assert m["linear_baseline_top1_ci95"][0] > hi, f"positive control: baseline {m['linear_baseline_top1']:.3f}"
        assert m["judge_top1"] > hi, f"positive control: judge {m['judge_top1']:.3f} not above chance {hi:.3f}"
        return
    assert prepared.synthetic and prepared.loaded.oracle_top1 == pytest.approx(0.1)
    for key in ("linear_baseline_top1", "judge_top1", "majority_class_top1", "eegnet_top1", "shallow_fbcsp_top1"):
        assert m[key] <= hi, f"{key} = {m[key]:.3f} above chance's 95 % upper bound {hi:.3f}: leakage?"
    assert m["linear_baseline_top1_p_value"] > 0.05
