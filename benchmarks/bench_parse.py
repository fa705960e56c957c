"""Parse speed and peak memory: our parser (every core, one process, inside the zip) against the naive way,
``prepare`` (parse + cache) and cache load.

    python benchmarks/bench_parse.py                 # full EP size: 65,034 events, about 2.86 GB
    python benchmarks/bench_parse.py --events 3000   # a quick run

The synthetic file (and its zip) is generated once into benchmarks/data/ (git-ignored) and reused. Each
measurement runs in a fresh subprocess, so its peak resident memory (VmHWM) is its own; with worker processes
the peak adds each worker's peak (``workers x`` the largest child's), an upper bound of what they held together. The naive way is the
original prototype's: pandas ``read_csv`` of the 7 columns, then Python ``str.split`` of every data field
into a list of floats, grouped by event in a dict (it does not even build an array, so it is a generous
lower bound of that approach). With ``--naive-events N`` the naive way runs on the first N events only
and its time and memory are extrapolated linearly to the full file; the output says so.
Prints a table and one JSON line; ``--out`` writes the JSON (default benchmarks/results/parse.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FULL_EVENTS = 65034

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {repo!r})
mode, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
import numpy as np, pandas as pd
from helpers import mindbigdata as mbd, parse_parallel
t0 = time.perf_counter()
extra = {{}}
if mode in ("parse", "parse_one_process", "zip"):
    workers = 1 if mode == "parse_one_process" else None
    events, report = mbd.parse_file(path, workers=workers)
    n = len(events)
    from helpers import readers
    with readers.open_stream(path) as (_, total, _):
        extra["workers"] = workers or parse_parallel.default_workers(total)
    extra["checksum"] = float(events.signals.sum(dtype=np.float64))
    extra["report"] = {{k: v for k, v in report.to_dict().items() if k not in ("seconds", "path")}}
elif mode == "prepare":
    events, report, reused = mbd.prepare(path, out)
    assert not reused
    n = len(events)
    extra["parse_seconds"] = report.seconds
    extra["workers"] = parse_parallel.default_workers(os.path.getsize(path))
elif mode == "load":
    events = mbd.load_cache(out)
    n = len(events)
elif mode == "naive":
    df = pd.read_csv(path, sep="\t", header=None,
                     names=["id", "event", "device", "channel", "code", "size", "data"])
    df = df[df["device"] == "EP"]
    grouped = {{}}
    for ev, ch, code, data in zip(df["event"].to_numpy(), df["channel"].to_numpy(), df["code"].to_numpy(),
                                  df["data"].to_numpy()):
        grouped.setdefault(ev, {{}})[ch] = [float(x) for x in data.split(",")]
    n = len(grouped)
seconds = time.perf_counter() - t0
# VmHWM (this process's own peak RSS): unlike ru_maxrss it is not inherited from the parent across exec.
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]
peak_mb = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
ru = resource.getrusage(resource.RUSAGE_SELF)
ch = resource.getrusage(resource.RUSAGE_CHILDREN)
if extra.get("workers", 1) > 1:
    peak_mb += extra["workers"] * ch.ru_maxrss / 1024
print(json.dumps({{"mode": mode, "seconds": seconds, "events": n, "peak_mb": peak_mb,
                  "cpu_seconds": ru.ru_utime + ru.ru_stime + ch.ru_utime + ch.ru_stime, **extra}}))
"""


def measure(mode: str, path: Path, out: Path) -> dict:
    code = CHILD.format(repo=str(REPO))
    env = dict(os.environ, CI="1")  # no progress bars
    r = subprocess.run([sys.executable, "-c", code, mode, str(path), str(out)], capture_output=True, text=True,
                       env=env)
    if r.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def ensure_file(n_events: int, data_dir: Path) -> tuple[Path, float | None]:
    sys.path.insert(0, str(REPO))
    from helpers.synthetic import SyntheticSpec, write_synthetic
    path = data_dir / f"bench_EP_{n_events}.txt"
    if path.is_file() and (data_dir / f"bench_EP_{n_events}.txt.json").is_file():
        return path, None
    t0 = time.perf_counter()
    write_synthetic(path, SyntheticSpec(n_events=n_events, seed=0), progress=sys.stderr.isatty())
    return path, time.perf_counter() - t0


def ensure_zip(text: Path) -> Path:
    """The text file inside a zip, as MindBigData ships it (deflated; written once, next to the text)."""
    zpath = text.with_suffix(".zip")
    if not zpath.is_file() or zpath.stat().st_mtime < text.stat().st_mtime:
        part = zpath.with_suffix(".zip.part")
        with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            zf.write(text, "EP1.01.txt")
        part.replace(zpath)
    return zpath


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=FULL_EVENTS)
    p.add_argument("--naive-events", type=int, default=0,
                   help="run the naive way on the first N events only and extrapolate (0 = all events)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each measurement (median reported)")
    p.add_argument("--data-dir", type=Path, default=HERE / "data")
    p.add_argument("--out", type=Path, default=HERE / "results" / "parse.json")
    args = p.parse_args(argv)

    path, gen_s = ensure_file(args.events, args.data_dir)
    zpath = ensure_zip(path)
    cache = args.data_dir / (path.stem + ".npz")
    modes = ("parse", "parse_one_process", "zip", "prepare", "load", "naive")
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    naive_path, scale = path, 1.0
    if args.naive_events and args.naive_events < args.events:
        naive_path, _ = ensure_file(args.naive_events, args.data_dir)
        scale = args.events / args.naive_events
    for _ in range(args.repeats):  # interleaved, so that a busy spell of the machine hits every mode
        runs["parse"].append(measure("parse", path, cache))
        runs["parse_one_process"].append(measure("parse_one_process", path, cache))
        runs["zip"].append(measure("zip", zpath, cache))
        if cache.exists():
            cache.unlink()
        runs["prepare"].append(measure("prepare", path, cache))
        runs["load"].append(measure("load", path, cache))
        runs["naive"].append(measure("naive", naive_path, cache))
    ref = runs["parse_one_process"][0]
    identical = all(r["events"] == ref["events"] and r["checksum"] == ref["checksum"] and r["report"] == ref["report"]
                    for m in ("parse", "parse_one_process", "zip") for r in runs[m])

    med = {m: {key: statistics.median(r[key] for r in v) for key in ("seconds", "cpu_seconds", "peak_mb")}
           for m, v in runs.items()}
    naive_s, naive_mb = med["naive"]["seconds"] * scale, med["naive"]["peak_mb"] * scale
    result = {
        "events": args.events, "file_bytes": path.stat().st_size, "zip_bytes": zpath.stat().st_size,
        "cache_bytes": cache.stat().st_size, "generate_seconds": gen_s, "workers": runs["parse"][0]["workers"],
        "identical_events_and_accounting": identical,
        **{f"{m}_{key}": round(med[m][key], 2) for m in modes if m != "naive" for key in ("seconds", "cpu_seconds")},
        **{f"{m}_peak_mb": round(med[m]["peak_mb"]) for m in modes if m != "naive"},
        "naive_seconds": round(naive_s, 2), "naive_peak_mb": round(naive_mb),
        "naive_cpu_seconds": round(med["naive"]["cpu_seconds"] * scale, 2),
        "naive_events_measured": args.naive_events or args.events,
        "naive_extrapolated": scale != 1.0,
        "speedup_vs_naive": round(naive_s / med["parse"]["seconds"], 2),
        "speedup_one_process_vs_naive": round(naive_s / med["parse_one_process"]["seconds"], 2),
        "speedup_zip_vs_naive": round(naive_s / med["zip"]["seconds"], 2),
        "memory_ratio_vs_naive": round(med["parse"]["peak_mb"] / naive_mb, 3),
        "repeats": args.repeats,
        "runs": {m: [{k: round(val, 2) if isinstance(val, float) else val for k, val in r.items() if k != "report"}
                     for r in v] for m, v in runs.items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}",
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }
    result["targets_met"] = {
        "speedup_ge_5x": result["speedup_vs_naive"] >= 5,
        "memory_le_one_fifth": result["memory_ratio_vs_naive"] <= 0.2,
        "identical_events_and_accounting": identical,
        "cache_load_le_2s": result["load_seconds"] <= 2,
    }
    note = " (naive EXTRAPOLATED linearly from %d events)" % args.naive_events if scale != 1.0 else ""
    print(f"{'':28}{'seconds':>10}{'CPU s':>10}{'peak MB':>10}{'x naive':>10}")
    labels = {"parse": f"parse ({result['workers']} workers)", "parse_one_process": "parse (one process)",
              "zip": "parse inside the zip", "prepare": "prepare (parse + cache)", "load": "cache load"}
    for m, label in labels.items():
        print(f"{label:28}{med[m]['seconds']:>10.2f}{med[m]['cpu_seconds']:>10.2f}{med[m]['peak_mb']:>10.0f}"
              f"{naive_s / med[m]['seconds']:>10.1f}")
    print(f"{'naive pandas':28}{naive_s:>10.2f}{result['naive_cpu_seconds']:>10.2f}{naive_mb:>10.0f}{1:>10.1f}{note}")
    print(f"load average (1 min) at the end: {result['load_average_1min_at_end']} on {os.cpu_count()} CPUs; "
          f"identical events and accounting in every parse: {identical}")
    print(f"speedup {result['speedup_vs_naive']}x, memory ratio {result['memory_ratio_vs_naive']}; "
          f"{args.events} events, {result['file_bytes'] / 1e9:.2f} GB")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
    sys.path.insert(0, str(REPO))
    from helpers.evaluate import write_json_atomic
    write_json_atomic(args.out, result)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
