"""The whole `python -m helpers run`, timed end to end as a new user meets it, per profile.

Each run starts from nothing that a first-time user would not have: an empty data folder (the synthetic default
is generated, parsed and cached), an empty output folder (the judge is trained and the stimulus embeddings are
computed), then features, split, baseline, training, evaluation and figures. Issue 6's targets: `ci` within
2 minutes and `cpu` within 15 minutes on the project's 2-core machine. The naive reference for the training part
is `bench_train.py` (the seed-faithful step); this script measures what the user waits for, and also reports
the run's headline metrics so that speed is never bought with quality silently.

Usage: python benchmarks/bench_run.py [--profiles ci cpu] [--set KEY=VALUE ...]
Prints a table and one JSON line; writes benchmarks/results/run.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from helpers.evaluate import write_json_atomic  # noqa: E402
TARGET_S = {"ci": 120.0, "cpu": 900.0}
HEADLINE = ("n_test_events", "judge_top1", "judge_top1_p_value", "semantic_top1", "linear_baseline_top1",
            "oracle_label_judge_top1", "chance_top1_upper95", "oracle_top1", "clip_semantic")
# Runs the command and prints its peak memory: a fresh wrapper per profile, so that RUSAGE_CHILDREN's maximum
# belongs to that profile's run alone.
_WRAPPER = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
            "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
            "sys.exit(rc)")


def _peak_gb(stderr: str) -> float | None:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("PEAK_RSS_KB ")]
    return float(lines[-1].split()[1]) / 1e6 if lines else None  # Linux: kilobytes


def run_profile(profile: str, overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench_run_{profile}_") as tmp:
        env = {**os.environ, "EEG2IMG_DATA_DIR": str(Path(tmp) / "dataset"), "HF_HUB_OFFLINE": "1", "CI": "1",
               # digit-CLIP (what clip_weights=auto falls back to offline) from the checkout's cache: trained once
               # there, not once per benchmark run in a fresh data folder.
               "EEG2IMG_CACHE_DIR": os.environ.get("EEG2IMG_CACHE_DIR") or str(ROOT / "dataset" / "cache")}
        out = Path(tmp) / "results"
        cmd = [sys.executable, "-m", "helpers", "run", "--profile", profile, "--out", str(out)]
        for item in overrides:
            cmd += ["--set", item]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], cwd=ROOT, env=env, capture_output=True,
                              text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        metrics = json.loads((out / "metrics.json").read_text())
        history = json.loads((out / "history.json").read_text())
    return {
        "profile": profile, "overrides": overrides, "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "peak_rss_gb": _peak_gb(proc.stderr),
        "target_s": TARGET_S.get(profile), "epochs": len(history),
        "epoch_s": [row["seconds"] for row in history],
        "metrics": {k: metrics.get(k) for k in HEADLINE},
    }


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profiles", nargs="+", default=["ci", "cpu"])
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "run.json"))
    a = p.parse_args(argv)
    rows = [run_profile(profile, a.overrides) for profile in a.profiles]
    print(f"\nWhole `python -m helpers run`, from an empty data and output folder, {os.cpu_count()} CPUs, "
          f"{platform.machine()}")
    print(f"{'profile':<9}{'wall s':>9}{'target s':>10}{'CPU s':>9}{'peak GB':>9}{'epochs':>8}"
          f"{'judge':>8}{'baseline':>10}{'chance95':>10}")
    for r in rows:
        m = r["metrics"]
        print(f"{r['profile']:<9}{r['wall_s']:>9.0f}{r['target_s'] or float('nan'):>10.0f}{r['cpu_s']:>9.0f}"
              f"{r['peak_rss_gb'] or float('nan'):>9.2f}{r['epochs']:>8}{m['judge_top1']:>8.3f}{m['linear_baseline_top1']:>10.3f}"
              f"{m['chance_top1_upper95']:>10.3f}")
    result = {"bench": "run_end_to_end", "cpus": os.cpu_count(), "machine": platform.machine(), "rows": rows}
    print(json.dumps(result))
    write_json_atomic(a.out, result)
    return rows


if __name__ == "__main__":
    main()
