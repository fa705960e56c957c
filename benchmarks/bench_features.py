"""Benchmark: feature extraction for 65,034 EP-like events (fit on 70 %, transform all).

Each measurement runs in its own subprocess so that its peak memory (ru_maxrss) is its own.

    python benchmarks/bench_features.py            # pipeline on 65,034 events + naive loop on a subset
    python benchmarks/bench_features.py --recipes  # also re-measure the recipe table of helpers.features

Prints a table and one JSON line, and writes benchmarks/results/features.json.
Targets (issue 4): all 65,034 events in <= 60 s, peak memory < 4 GB.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from helpers.evaluate import write_json_atomic  # noqa: E402

N_EVENTS = 65_034
N_CH = 14
MAX_SIZE = 270
SFREQ = 128.0


def make_signals(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """EEG-like float32 [n, 14, 270] in uV, built in chunks: DC 4000-4500, 1/f-ish noise (AR(1)),
    two shared sources, an occipital 10 Hz rhythm, sizes 250-270 with zeros after each size."""
    from scipy import signal

    rng = np.random.default_rng(seed)
    sizes = np.clip(np.rint(rng.normal(258, 4, n)), 250, MAX_SIZE).astype(np.int64)
    x = np.empty((n, N_CH, MAX_SIZE), np.float32)
    dc = rng.uniform(4000, 4500, N_CH)
    mix = rng.standard_normal((N_CH, 2)) * 4
    occ = np.r_[np.zeros(6), 1, 1, np.zeros(6)] * 5 + 0.5
    t = np.arange(MAX_SIZE) / SFREQ
    for lo in range(0, n, 4096):
        m = min(n, lo + 4096) - lo
        own = signal.lfilter([1.0], [1.0, -0.95], rng.standard_normal((m, N_CH + 2, MAX_SIZE)), axis=-1) * 1.5
        chunk = own[:, :N_CH] + np.einsum("cs,nst->nct", mix, own[:, N_CH:] / 3)
        phase = rng.uniform(0, 2 * np.pi, (m, 1, 1))
        chunk += occ[None, :, None] * np.sin(2 * np.pi * 10 * t[None, None, :] + phase)
        chunk += dc[None, :, None]
        chunk *= np.arange(MAX_SIZE)[None, None, :] < sizes[lo:lo + m, None, None]
        x[lo:lo + m] = chunk
    return x, sizes


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_pipeline(n: int) -> dict:
    from helpers.features import FeatureConfig, FeaturePipeline

    t0 = time.perf_counter()
    x, sizes = make_signals(n)
    t_gen = time.perf_counter() - t0
    mem_data = peak_mb()
    train = np.arange(int(0.7 * n))
    t0 = time.perf_counter()
    pipe = FeaturePipeline(FeatureConfig()).fit((x, sizes), train)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    fs = pipe.transform((x, sizes))
    t_tr = time.perf_counter() - t0
    return {"n_events": n, "generate_s": t_gen, "fit_s": t_fit, "transform_s": t_tr,
            "features_s": t_fit + t_tr, "peak_rss_mb": peak_mb(), "peak_rss_after_data_mb": mem_data,
            "input_array_mb": x.nbytes / 2 ** 20, "X_shape": list(fs.X.shape),
            "explained_variance_total": pipe.explained_variance_total, **pipe.fit_counts_,
            "n_rejected_all": fs.n_rejected, "n_input_dims": pipe.n_input_dims}


def run_naive(n: int) -> dict:
    """The same steps, one event at a time, with the step functions (sosfiltfilt per event)."""
    from helpers import features as F

    x, sizes = make_signals(n, seed=1)
    cfg = F.FeatureConfig()
    train = np.arange(int(0.7 * n))
    # Fitted parts from the fast pipeline; only the per-event preprocessing + projection is timed,
    # so the naive time is a lower bound for a naive fit + transform.
    pipe = F.FeaturePipeline(F.FeatureConfig(feature_dim=min(cfg.feature_dim, len(train) - 1))).fit((x, sizes), train)
    t0 = time.perf_counter()
    out = []
    for i in range(n):
        e = x[i:i + 1, :, :sizes[i]]
        e = F.demean(F.fix_length(F.bandpass(e, cfg.sfreq, *cfg.band, cfg.filter_order), None, cfg.n_times))
        F.peak_to_peak(e)
        z = F.standardise(e, pipe.channel_mean_, pipe.channel_std_)
        z = F.decimate(z, cfg.decim, prefiltered=True).reshape(-1)
        out.append(z @ pipe._proj - pipe._proj_offset)
    per_event = (time.perf_counter() - t0) / n
    # A fit passes over the 70 % training events once more, so fit + transform ~ 1.7 x per event.
    return {"n_events_measured": n, "per_event_ms": per_event * 1e3,
            "extrapolated_features_s": per_event * N_EVENTS * 1.7, "peak_rss_mb": peak_mb()}


def run_recipes() -> dict:
    """Linear-baseline top-1 of feature recipes on the project's synthetic generator (in memory)."""
    from helpers import baseline as B
    from helpers import features as F
    from helpers import synthetic as S
    from helpers.config import Config

    strength, n = Config().synthetic_strength, 16_000  # the project's default synthetic data
    spec = S.SyntheticSpec(n_events=n, class_strength=strength, seed=0, random_fraction=0.0)
    plan = S._event_plan(spec)  # private generator API: the file round trip adds nothing here
    x = np.concatenate([S._simulate(spec, plan, lo, min(n, lo + 512)) for lo in range(0, n, 512)])
    x = (np.rint(x * 7.8) / 7.8).astype(np.float32)
    sizes, codes = plan["sizes"], plan["codes"]
    x *= np.arange(x.shape[-1])[None, None, :] < sizes[:, None, None]
    test = np.arange(13_000, n)
    recipes = {"2s_30Hz_64Hz": dict(band=(0.5, 30.0), n_times=256, decim=2),
               "1s_30Hz_64Hz": dict(band=(0.5, 30.0), n_times=128, decim=2),
               "1s_15Hz_32Hz_default": {},
               "1s_15Hz_32Hz_no_rejection": dict(reject_ptp_uv=None)}
    rows = []
    for n_train in (1700, 10_000):
        train = np.arange(n_train)
        for name, kw in recipes.items():
            pipe = F.FeaturePipeline(F.FeatureConfig(**kw)).fit((x, sizes), train)
            tr, te = pipe.transform((x, sizes), train), pipe.transform((x, sizes), test)
            tr.labels, te.labels = codes[train], codes[test]
            r = B.features_baseline(tr, te)
            rows.append({"recipe": name, "n_train": n_train, "top1": r.top1.value, "n_test": r.top1.n,
                         "explained_variance_total": pipe.explained_variance_total})
    return {"class_strength": strength, "oracle_top1": S.oracle_accuracy(spec)[0], "rows": rows}


def in_subprocess(mode: str, n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--n", str(n)], check=True,
                         capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=N_EVENTS)
    ap.add_argument("--naive-n", type=int, default=500)
    ap.add_argument("--recipes", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        fn = {"pipeline": run_pipeline, "naive": run_naive, "recipes": lambda n: run_recipes()}[args.child]
        print(json.dumps(fn(args.n)))
        return

    pipe = in_subprocess("pipeline", args.n)
    naive = in_subprocess("naive", args.naive_n)
    result = {"benchmark": "features", "machine": f"{platform.machine()}, 2 shared CPU cores",
              "pipeline": pipe, "naive": naive,
              "speedup": naive["extrapolated_features_s"] / pipe["features_s"],
              "targets": {"features_s_max": 60, "peak_rss_mb_max": 4096,
                          "met": pipe["features_s"] <= 60 and pipe["peak_rss_mb"] < 4096}}
    if args.recipes:
        result["recipes"] = in_subprocess("recipes", 0)

    print(f"{'way':<34}{'events':>8}{'features s':>12}{'peak MB':>10}")
    print(f"{'pipeline (fused, chunked)':<34}{pipe['n_events']:>8}{pipe['features_s']:>12.1f}{pipe['peak_rss_mb']:>10.0f}")
    print(f"{'  of which fit (70 %) / transform':<34}{'':>8}{pipe['fit_s']:>6.1f} /{pipe['transform_s']:>4.1f}")
    print(f"{'naive per-event loop (extrap.)':<34}{N_EVENTS:>8}{naive['extrapolated_features_s']:>12.1f}"
          f"{naive['peak_rss_mb']:>10.0f}   (measured on {naive['n_events_measured']})")
    print(f"input array {pipe['input_array_mb']:.0f} MB; explained variance kept "
          f"{pipe['explained_variance_total']:.3f}; speed-up x{result['speedup']:.0f}; targets met: "
          f"{result['targets']['met']}")
    for row in result.get("recipes", {}).get("rows", []):
        print(f"recipe {row['recipe']:<28} n_train {row['n_train']:>6}  top-1 {row['top1']:.3f}")
    print(json.dumps(result))
    out = ROOT / "benchmarks" / "results" / "features.json"
    write_json_atomic(out, result)


if __name__ == "__main__":
    main()
