"""`make bench`: every benchmark, one after the other, each comparing our way with the naive way.

Each script prints its own table and one JSON line and writes benchmarks/results/<name>.json.
The parse benchmark generates a full-size (2.86 GB) synthetic EP file once into benchmarks/data/
(kept outside git) and reuses it. Pass --quick for small sizes (minutes instead of tens of minutes).
The GPU script (bench_train_gpu.py) runs only where CUDA is available.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    runs = [
        ("parse", ["bench_parse.py"] + (["--events", "5000"] if quick else [])),
        ("features", ["bench_features.py"] + (["--n", "5000", "--naive-n", "200"] if quick else [])),
        ("train (CPU)", ["bench_train.py"] + (["--steps", "3"] if quick else [])),
        ("whole run", ["bench_run.py", "--profiles", "ci"]
         + (["--out", str(HERE / "results" / "run_quick.json")] if quick else ["cpu"])),
    ]
    try:
        import torch

        if torch.cuda.is_available():
            runs.append(("train (GPU)", ["bench_train_gpu.py"]))
    except ImportError:
        pass
    failed = []
    for name, cmd in runs:
        print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / cmd[0]), *cmd[1:]], cwd=HERE.parent).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
