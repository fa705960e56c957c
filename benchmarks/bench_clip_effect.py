"""The experiment the project exists for: what does the CLIP term do to the generated digits?

A grid of runs on the synthetic default (known class signal), each scored on its held-out test block by the
independent judge, by CLIP's ranking of the 10 stimuli and by SSIM, beside chance and the linear EEG baseline:

* ``four_terms``: the seed's loss (adversarial + L1 + KL + CLIP, no label term), ``lambda_clip`` in {0, 1, 5, 20};
* ``clip_alone``: CLIP (+ KL) only: ``lambda_rec = lambda_adv = 0``;
* the same grid with the label term on (``lambda_cls = 1``): ``label_*``;
* references: ``clip_alone_no_views`` (CLIP alone on the image itself, the known failure) and
  ``four_terms_5_untrained_clip`` (the untrained tiny CLIP that every run used before digit-CLIP);

all with digit-CLIP (the project's own CLIP that knows digits, helpers.digit_clip), ``clip_views`` random views,
every sample of the batch through CLIP (``clip_batch = 0``), the cpu profile's linear encoder, warm-up and
learning rates; at least 3 seeds per arm (a seed draws another synthetic file and another initialisation). Every
arm but the no-views reference trains the same epochs with the same views: the cpu profile's own recipe for CLIP
alone (more epochs and views, helpers.config.CLIP_ALONE) is not used here, so that the arms differ only in their loss
weights.

Usage: python benchmarks/bench_clip_effect.py [--seeds 3] [--epochs 6] [--events 1500] [--workers 2]
                                              [--arms four_terms_5 clip_alone ...] [--set KEY=VALUE ...]
Prints a table; writes benchmarks/results/clip_effect.json, clip_effect.png (the grid) and clip_effect_examples.png
(generated test digits of CLIP alone without and with views, and of the four terms).
Data and the digit-CLIP / judge caches live in benchmarks/data/clip_effect (outside git) and are reused.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from helpers.evaluate import write_json_atomic  # noqa: E402

DATA = ROOT / "benchmarks" / "data" / "clip_effect"
RESULTS = ROOT / "benchmarks" / "results"
LAMBDAS = (0.0, 1.0, 5.0, 20.0)
# Every field that make_config's CLIP-alone recipe would change is set here or per arm (epochs by --epochs).
BASE = {"clip_model": "digit-clip", "clip_weights": "auto", "clip_batch": 0, "image_size": 64, "clip_views": 2}

# The fields that make a reference arm what it is: a run-wide --set (say clip_views=4) must not turn the no-views
# reference into another views arm, nor the untrained-CLIP reference into a digit-CLIP one.
REFERENCES = {"clip_alone_no_views": {"clip_views": 1},
              "four_terms_5_untrained_clip": {"clip_model": "eeg2img-tiny", "clip_weights": "untrained"}}


def arms() -> dict[str, dict]:
    """Arm name -> config overrides (over the cpu profile and BASE)."""
    out = {}
    for prefix, cls in (("", 0.0), ("label_", 1.0)):
        for lam in LAMBDAS:
            out[f"{prefix}four_terms_{lam:g}"] = {"lambda_cls": cls, "lambda_clip": lam}
        out[f"{prefix}clip_alone"] = {"lambda_cls": cls, "lambda_clip": 5.0, "lambda_rec": 0.0, "lambda_adv": 0.0,
                                      "adv_warmup_epochs": 0}
    # References: CLIP alone on the image itself (no views: the known failure), and the four terms with the
    # untrained CLIP every run used before digit-CLIP.
    out["clip_alone_no_views"] = {**out["clip_alone"], **REFERENCES["clip_alone_no_views"]}
    out["four_terms_5_untrained_clip"] = {"lambda_cls": 0.0, "lambda_clip": 5.0,
                                          **REFERENCES["four_terms_5_untrained_clip"]}
    return out


def arm_overrides(epochs: int, events: int, sets: list[str] | None = None,
                  names: list[str] | None = None) -> dict[str, dict]:
    """Arm name -> every override its runs get: BASE, the arm's own, then the run-wide ``--epochs``, ``--events`` and
    ``--set`` values, then a reference arm's defining fields (a subset of the arms by ``names``)."""
    from helpers.config import parse_overrides

    common = {"epochs": epochs, "synthetic_events": events, **parse_overrides(sets)}
    return {k: {**BASE, **v, **common, **REFERENCES.get(k, {})} for k, v in arms().items()
            if not names or k in names}


def run_one(job: tuple[str, dict, int, str]) -> dict:
    """One run in this process (one torch thread): data, digit-CLIP, training, evaluation; returns its numbers."""
    name, overrides, seed, profile = job
    import torch

    torch.set_num_threads(1)
    os.environ["EEG2IMG_DATA_DIR"] = str(DATA)
    from helpers.config import make_config
    from helpers.judge import load_or_train_judge
    from helpers.pipeline import build_trainer, evaluate_trainer, load_semantic, prepare_data, train_data

    config = make_config(profile, {**overrides, "seed": seed})
    t0 = time.perf_counter()
    prepared = prepare_data(config)
    semantic = load_semantic(config)
    trainer = build_trainer(config, semantic)
    trainer.fit(*train_data(prepared), progress=False)
    out = DATA / "runs" / f"{name}_seed{seed}"
    judge = load_or_train_judge(DATA / "judge")
    m = evaluate_trainer(trainer, prepared, semantic, out, judge=judge, figures=False, n_permutations=200,
                         log=lambda *_: None)
    keep = ("judge_top1", "semantic_top1", "ssim_mean", "ssim_label_blind", "ssim_wrong_digit",
            "linear_baseline_top1", "majority_class_top1", "chance_top1", "chance_top1_upper95", "oracle_top1",
            "oracle_label_judge_top1", "n_test_events")
    from helpers.widgets import example_indices

    idx = example_indices(prepared.test.labels)  # one held-out test event per digit, for the examples figure
    examples = trainer.generate(prepared.test.X[idx]).numpy()
    return {"arm": name, "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
            "clip": semantic.clip.describe(), **{k: m[k] for k in keep},
            "_examples": (examples, prepared.test.labels[idx], judge.predict(examples))}


def summarise(values: list[float]) -> dict:
    """Mean, sample standard deviation and the 95 % t-interval of the mean over seeds."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    n = len(v)
    sd = float(v.std(ddof=1)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)) if n > 1 else float("nan")
    return {"mean": float(v.mean()), "sd": sd, "ci95": [float(v.mean() - half), float(v.mean() + half)] if n > 1
            else None, "values": [float(x) for x in v]}


def figure(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, prefix, title in ((axes[0], "", "seed's four terms (no label term)"),
                              (axes[1], "label_", "with the label term (lambda_cls = 1)")):
        names = [f"{prefix}four_terms_{lam:g}" for lam in LAMBDAS] + [f"{prefix}clip_alone"]
        labels = [f"λclip={lam:g}" for lam in LAMBDAS] + ["CLIP alone"]
        x = np.arange(len(names))
        for off, key, colour in ((-0.2, "judge_top1", "C0"), (0.0, "semantic_top1", "C1"), (0.2, "ssim_mean", "C2")):
            s = [summary[n][key] for n in names]
            ax.bar(x + off, [a["mean"] for a in s], width=0.2, color=colour, label=key,
                   yerr=[[a["mean"] - a["ci95"][0] if a["ci95"] else 0 for a in s],
                         [a["ci95"][1] - a["mean"] if a["ci95"] else 0 for a in s]], capsize=3)
            for xi, a in zip(x, s):
                ax.plot(np.full(len(a["values"]), xi + off), a["values"], "k.", ms=3)
        base = np.mean([summary[n]["linear_baseline_top1"]["mean"] for n in names])
        chance = np.mean([summary[n]["chance_top1_upper95"]["mean"] for n in names])
        ax.axhline(base, color="C3", ls="--", lw=1, label=f"linear EEG baseline {base:.2f}")
        ax.axhspan(0, chance, color="0.6", alpha=0.3, label=f"within chance (upper 95% {chance:.2f})")
        ax.set_xticks(x, labels)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("test events (mean over seeds, 95 % CI; dots: seeds)")
    axes[1].legend(fontsize=8, loc="upper right")
    fig.suptitle("What the CLIP term does: digit-CLIP, views, synthetic data with a known signal", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def examples_figure(rows: list[dict], arms_shown: list[str], path: Path) -> None:
    """Generated test images (one per digit, first seed) of the given arms, one row each, judge's reading in the
    title: the failure of CLIP alone without views beside the cure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for name in arms_shown for r in rows if r["arm"] == name and r["seed"] == 0]
    if not shown:
        return
    fig, axes = plt.subplots(len(shown), 10, figsize=(12, 1.5 * len(shown) + 0.6), squeeze=False)
    for row_axes, r in zip(axes, shown):
        images, labels, judged = r["_examples"]
        for ax, img, y, j in zip(row_axes, images, labels, judged):
            ax.imshow(((img.transpose(1, 2, 0) + 1) / 2).clip(0, 1))
            ax.set_title(f"{y} -> judge {j}", fontsize=7, color="green" if y == j else "red")
            ax.set_xticks([])
            ax.set_yticks([])
        row_axes[0].set_ylabel(f"{r['arm']}\njudge {r['judge_top1']:.2f}\nCLIP {r['semantic_top1']:.2f}", fontsize=7,
                               rotation=0, ha="right", va="center")
    fig.suptitle("held-out test events, one per digit (digit seen -> judge's reading); first seed", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown_table(result: dict) -> str:
    """The README's table, from a clip_effect.json: one row per arm, mean (95 % CI of the mean) over seeds."""
    def cell(d):
        return f"{d['mean']:.3f} ({d['ci95'][0]:.2f}-{d['ci95'][1]:.2f})" if d.get("ci95") else f"{d['mean']:.3f}"

    lines = ["| arm | λ_cls | λ_clip | λ_rec | judge top-1 | CLIP top-1 | SSIM |", "|---|---|---|---|---|---|---|"]
    for arm, s in result["summary"].items():
        c = result["arms"][arm]
        lines.append(f"| `{arm}` | {c.get('lambda_cls', 0):g} | {c.get('lambda_clip', 5):g} | {c.get('lambda_rec', 10):g} | "
                     f"{cell(s['judge_top1'])} | {cell(s['semantic_top1'])} | {s['ssim_mean']['mean']:.3f} |")
    ref = next(iter(result["summary"].values()))
    lines.append(f"\nLinear EEG baseline {ref['linear_baseline_top1']['mean']:.3f} (mean over the seeds' files), chance's "
                 f"95 % bound {ref['chance_top1_upper95']['mean']:.3f}; {result['seeds']} seeds per arm.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--events", type=int, default=1500, help="synthetic events per file")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--profile", default="cpu", help="the profile under the arms (gpu: the step-matched simulation of "
                   "the seed's recipe, with --set device=cpu --set mixed_precision=false)")
    p.add_argument("--arms", nargs="*", help="a subset of the arms (default: all)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="KEY=VALUE for every arm (a reference arm keeps the fields that define it)")
    p.add_argument("--out", type=Path, default=RESULTS / "clip_effect.json")
    p.add_argument("--report", action="store_true", help="print the Markdown table of --out and exit (no runs)")
    a = p.parse_args(argv)
    if a.report:
        import json

        print(markdown_table(json.loads(a.out.read_text())))
        return 0
    grid = arm_overrides(a.epochs, a.events, a.overrides, a.arms)
    if not grid:
        p.error(f"no such arm; choose from {', '.join(arms())}")
    jobs = [(name, ov, seed, a.profile) for seed in range(a.seeds) for name, ov in grid.items()]
    # Train digit-CLIP and the judge once, before the workers would race to do it.
    run_one((next(iter(grid)), {**grid[next(iter(grid))], "epochs": 1}, 0, a.profile))
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=a.workers) as pool:
        rows = []
        for r in pool.map(run_one, jobs):
            rows.append(r)
            print(f"{r['arm']:>24} seed {r['seed']}: judge {r['judge_top1']:.3f} CLIP {r['semantic_top1']:.3f} "
                  f"SSIM {r['ssim_mean']:.3f} baseline {r['linear_baseline_top1']:.3f} ({r['seconds']:.0f} s)",
                  flush=True)
    examples_figure(rows, [n for n in ("clip_alone_no_views", "clip_alone", "four_terms_5", "label_four_terms_5")
                           if n in grid], a.out.with_name(a.out.stem + "_examples.png"))
    for r in rows:
        r.pop("_examples")
    metrics = ("judge_top1", "semantic_top1", "ssim_mean", "ssim_label_blind", "ssim_wrong_digit",
               "linear_baseline_top1", "chance_top1", "chance_top1_upper95", "oracle_top1", "oracle_label_judge_top1",
               "seconds")
    summary = {name: {k: summarise([r[k] for r in rows if r["arm"] == name]) for k in metrics} for name in grid}
    print(f"\n{'arm':>24} {'judge top-1':>20} {'CLIP top-1':>20} {'SSIM':>16} {'baseline':>9} {'chance95':>9}")
    for name, s in summary.items():
        ci = lambda d: f"{d['mean']:.3f} ({d['ci95'][0]:.2f}-{d['ci95'][1]:.2f})" if d["ci95"] else f"{d['mean']:.3f}"  # noqa: E731
        print(f"{name:>24} {ci(s['judge_top1']):>20} {ci(s['semantic_top1']):>20} {s['ssim_mean']['mean']:>16.3f} "
              f"{s['linear_baseline_top1']['mean']:>9.3f} {s['chance_top1_upper95']['mean']:>9.3f}")
    import torch

    result = {"what": __doc__.split("\n\n")[0], "arms": grid,
              "profile": a.profile, "seeds": a.seeds, "summary": summary, "runs": rows,
              "wall_seconds": round(time.perf_counter() - t0, 1), "workers": a.workers,
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__}}
    write_json_atomic(a.out, result)
    if all(f"{p}{n}" in grid for p in ("", "label_") for n in [f"four_terms_{lam:g}" for lam in LAMBDAS] + ["clip_alone"]):
        figure(summary, a.out.with_suffix(".png"))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
