"""GPU training throughput for the `gpu` profile (ViT-B-32 CLIP, 224 px generator), ready for a CUDA machine.

Measures, in one run on one card, at batch 16 and 64 (and larger batches with mixed precision, to find the
best images per second): the seed-faithful step (open_clip's own modules, CLIP unfrozen, targets re-encoded
every step, float32) and our step in float32 and with mixed precision (bf16 autocast for the networks and
for CLIP's pass on the generated images; targets float32); median seconds per step, images per second and
peak GPU memory. Every row uses the seed's plain CLIP loss (`clip_views=1`), so all do the same work.

Checks correctness on CUDA before timing: the first steps' loss terms agree with the same steps on the CPU
(same weights, same noise, dropout off; TF32 on the GPU, so within 2 %), losses are finite with and without
mixed precision, CLIP's weights are bit-identical after training steps, and the semantic term alone reaches
the generator.

Usage (on the GPU machine): python benchmarks/bench_train_gpu.py [--steps 20] [--out DIR]
Prints the card's name, a table and one JSON line; writes DIR/train_gpu.json (default benchmarks/results).
Under 8 minutes on any recent card (the CPU half of the agreement check is most of it).
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import helpers.train  # noqa: E402
from benchmarks.bench_train import open_clip_modules, seed_faithful_step  # noqa: E402
from helpers.config import make_config  # noqa: E402
from helpers.evaluate import write_json_atomic  # noqa: E402
from helpers.semantic import load_clip  # noqa: E402
from helpers.stimuli import render_digits, to_tensor  # noqa: E402
from helpers.train import Trainer  # noqa: E402

AGREEMENT_RTOL = 0.02  # TF32 matmuls on the GPU against float32 on the CPU
SAME_WORK = {"clip_views": 1, "clip_weights": "untrained"}  # every row: the seed's plain CLIP loss


def profile_trainer(device: str, batch: int = 16, amp: bool = False, profile: str = "gpu", clip=None) -> Trainer:
    """A trainer of `profile` on `device` (the profile's networks and image size; CLIP untrained: speed only)."""
    cfg = make_config(profile, {**SAME_WORK, "batch_size": batch, "mixed_precision": amp, "device": device})
    clip = clip or load_clip(cfg.clip_model, "untrained", device=device)
    emb = clip.encode_images(to_tensor(render_digits(224)).to(device)).detach()
    return Trainer(cfg, to_tensor(render_digits(224), size=cfg.image_size), clip, emb)


def _cpu_noise(noise: torch.Generator, mu, logvar, generator=None):
    """reparameterise with its noise drawn on the CPU, so that every device gets the same."""
    eps = torch.randn(mu.shape, generator=noise).to(mu.device, mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def device_agreement(device: str, steps: int = 3, batch: int = 16, profile: str = "gpu") -> dict:
    """The first `steps` training steps on `device` against the CPU: the largest relative difference per term.

    Both start from the same weights (the trainer seeds its networks on the CPU) and use the same latent noise,
    drawn on the CPU; the encoder's dropout and the discriminator's DiffAugment are off, since CPU and CUDA draw
    different random numbers. Each side then reseeds the global RNG differently, so that any random draw left
    uncontrolled shows up as a difference even when both sides are the CPU (tests/test_bench_scripts.py).
    """
    sides = []
    original = helpers.train.reparameterise
    try:
        for side, dev in enumerate(("cpu", device)):
            helpers.train.reparameterise = functools.partial(_cpu_noise, torch.Generator().manual_seed(0))
            tr = profile_trainer(dev, batch, profile=profile)
            for m in tr.encoder.modules():
                if isinstance(m, nn.Dropout):
                    m.eval()
            tr.discriminator.augment = False
            torch.manual_seed(1000 + side)
            data = torch.Generator().manual_seed(1)
            runs = []
            for _ in range(steps):
                x = torch.randn(batch, tr.config.feature_dim, generator=data)
                y = torch.randint(0, 10, (batch,), generator=data)
                runs.append(tr.train_step(x, y))
            sides.append(runs)
    finally:
        helpers.train.reparameterise = original
    worst = {}
    for a, b in zip(*sides):
        for k in a:
            if not math.isfinite(a[k]):  # a term with weight 0 is logged as NaN on purpose
                continue
            diff = abs(b[k] - a[k]) / max(abs(a[k]), 1e-3)
            worst[k] = max(worst.get(k, 0.0), diff if math.isfinite(diff) else float("inf"))
    return {"steps": steps, "max_relative_difference": {k: v if math.isfinite(v) else "not finite"
                                                        for k, v in worst.items()},
            "rtol": AGREEMENT_RTOL, "agree": all(v <= AGREEMENT_RTOL for v in worst.values())}


def cuda_time(fn, steps: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batches", default="16,64,128,256", help="16 and 64 are timed every way; others with AMP only")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark is for a GPU machine", file=sys.stderr)
        return {}
    card = torch.cuda.get_device_name(0)
    checks = {"cpu_agreement": device_agreement("cuda")}
    torch.manual_seed(0)
    clip = load_clip("ViT-B-32", "untrained", device="cuda")
    clip_before = {k: v.clone() for k, v in clip.state_dict().items()}

    rows, out_of_memory = {}, []
    x16, y16 = torch.randn(16, 264, device="cuda"), (torch.arange(16) % 10).cuda()

    def timed_row(name: str, batch: int, step) -> None:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        seconds = cuda_time(step, a.steps)
        rows[name] = (batch, seconds, torch.cuda.max_memory_allocated() / 2**20)

    for b in [int(s) for s in a.batches.split(",")]:
        xb, yb = torch.randn(b, 264, device="cuda"), (torch.arange(b) % 10).cuda()
        try:
            if b in (16, 64):
                naive = profile_trainer("cuda", b, clip=clip)
                naive_clip = open_clip_modules(clip)
                naive_clip.model.requires_grad_(True)  # the seed never froze CLIP
                timed_row(f"seed_faithful_b{b}_fp32", b, functools.partial(seed_faithful_step, naive, naive_clip, xb, yb))
                del naive, naive_clip
            for amp in ((False, True) if b in (16, 64) else (True,)):
                tr = profile_trainer("cuda", b, amp, clip=clip)
                terms = tr.train_step(xb, yb)
                # Terms with weight 0 are logged as NaN on purpose (the gpu profile has no label term): check the rest.
                checks[f"finite_losses_b{b}_amp_{amp}"] = all(
                    math.isfinite(v) for k, v in terms.items()
                    if k in ("total", "disc") or getattr(tr.config, f"lambda_{k}") > 0)
                timed_row(f"ours_b{b}_{'amp' if amp else 'fp32'}", b, functools.partial(tr.train_step, xb, yb))
                del tr
        except torch.cuda.OutOfMemoryError:
            out_of_memory.append(b)  # strict JSON has no NaN: listed apart, not timed
        torch.cuda.empty_cache()
    checks["clip_bit_identical"] = all(torch.equal(clip_before[k], v) for k, v in clip.state_dict().items())
    # Semantic term alone reaches the generator on CUDA.
    tr = profile_trainer("cuda", 16, True, clip=clip)
    tr.config.lambda_adv = tr.config.lambda_rec = tr.config.lambda_kl = 0.0
    tr.train_step(x16, y16)
    checks["generator_grad_from_clip"] = any(p.grad is not None and float(p.grad.abs().sum()) > 0
                                             for p in tr.generator.parameters())

    table = {}
    seeds = {b: s for name, (b, s, _) in rows.items() if name.startswith("seed_faithful")}
    for name, (b, s, mem) in rows.items():
        # Against the seed's step at the same batch where it was timed (16, 64), else at the nearest smaller one.
        ref = max([sb for sb in seeds if sb <= b], default=None)
        table[name] = {"batch": b, "median_step_s": s, "images_per_s": b / s, "peak_memory_mib": mem,
                       "seed_batch_compared": ref,
                       "vs_seed": None if ref is None else (b / s) / (ref / seeds[ref])}
    print(f"\nGPU: {card}, torch {torch.__version__}, CLIP ViT-B-32 (untrained weights; speed only), 224 px")
    print(f"{'step':<26}{'median s/step':>14}{'images/s':>10}{'peak MiB':>10}{'vs seed':>9}")
    for name, r in table.items():
        vs = "" if r["vs_seed"] is None else f"{r['vs_seed']:>8.2f}x (seed at batch {r['seed_batch_compared']})"
        print(f"{name:<26}{r['median_step_s']:>14.4f}{r['images_per_s']:>10.1f}{r['peak_memory_mib']:>10.0f}{vs}")
    print("checks:", json.dumps(checks))
    if out_of_memory:
        print("out of GPU memory at batch", ", ".join(map(str, out_of_memory)))
    best = max(table.values(), key=lambda r: r["images_per_s"])
    result = {"bench": "train_step_gpu", "card": card, "torch": torch.__version__, "rows": table,
              "out_of_memory_batches": out_of_memory,
              "best_batch": best["batch"], "best_images_per_s": best["images_per_s"], "checks": checks}
    print(json.dumps(result))
    write_json_atomic(Path(a.out) / "train_gpu.json", result)
    return result


if __name__ == "__main__":
    main()
