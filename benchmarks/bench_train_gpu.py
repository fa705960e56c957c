"""GPU training throughput for the `gpu` profile (ViT-B-32 CLIP, 224 px generator), ready for a CUDA machine.

Measures, in one run on one card: the seed-faithful step (CLIP unfrozen, targets re-encoded every step) at
batch 16; our step at batch 16 in float32 and with mixed precision (bf16 autocast for encoder, generator
and discriminator; CLIP always float32); and our step with mixed precision at larger batches, to find the
best images per second. Also checks correctness on CUDA: finite losses, CLIP weights bit-identical after
the steps, and non-zero generator gradients from the semantic term.

Usage (on the GPU machine): python benchmarks/bench_train_gpu.py [--steps 20] [--out DIR]
Prints the card's name, a table and one JSON line; writes DIR/train_gpu.json (default benchmarks/results).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_train import seed_faithful_step  # noqa: E402
from helpers.config import make_config  # noqa: E402
from helpers.evaluate import write_json_atomic  # noqa: E402
from helpers.semantic import load_clip  # noqa: E402
from helpers.stimuli import render_digits, to_tensor  # noqa: E402
from helpers.train import Trainer  # noqa: E402


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
    p.add_argument("--batches", default="16,32,64,128")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark is for a GPU machine", file=sys.stderr)
        return {}
    card = torch.cuda.get_device_name(0)
    torch.manual_seed(0)
    clip = load_clip("ViT-B-32", "untrained", device="cuda")
    full = to_tensor(render_digits(224)).cuda()
    emb = clip.encode_images(full).detach()
    stimuli = to_tensor(render_digits(224), size=224)
    clip_before = {k: v.clone() for k, v in clip.state_dict().items()}

    def trainer(batch, amp):
        cfg = make_config("gpu", {"batch_size": batch, "mixed_precision": amp, "clip_weights": "untrained"})
        return Trainer(cfg, stimuli, clip, emb)

    rows = {}
    checks = {}
    x16, y16 = torch.randn(16, 264, device="cuda"), (torch.arange(16) % 10).cuda()
    naive = trainer(16, False)
    naive_clip = load_clip("ViT-B-32", "untrained", device="cuda")
    naive_clip.model.requires_grad_(True)
    rows["seed_faithful_b16_fp32"] = (16, cuda_time(lambda: seed_faithful_step(naive, naive_clip, x16, y16), a.steps))
    for amp in (False, True):
        tr = trainer(16, amp)
        terms = tr.train_step(x16, y16)
        # Terms with weight 0 are logged as NaN on purpose (the gpu profile has no label term): check the rest.
        checks[f"finite_losses_amp_{amp}"] = all(math.isfinite(v) for k, v in terms.items()
                                                 if k in ("total", "disc") or getattr(tr.config, f"lambda_{k}") > 0)
        rows[f"ours_b16_{'amp' if amp else 'fp32'}"] = (16, cuda_time(lambda tr=tr: tr.train_step(x16, y16), a.steps))
    out_of_memory = []
    for b in [int(s) for s in a.batches.split(",") if int(s) != 16]:
        try:
            tr = trainer(b, True)
            xb, yb = torch.randn(b, 264, device="cuda"), (torch.arange(b) % 10).cuda()
            rows[f"ours_b{b}_amp"] = (b, cuda_time(lambda tr=tr, xb=xb, yb=yb: tr.train_step(xb, yb), a.steps))
        except torch.cuda.OutOfMemoryError:
            out_of_memory.append(b)  # strict JSON has no NaN: listed apart, not timed
            torch.cuda.empty_cache()
    checks["clip_bit_identical"] = all(torch.equal(clip_before[k], v) for k, v in clip.state_dict().items())
    # Semantic term alone reaches the generator on CUDA.
    tr = trainer(16, True)
    tr.config.lambda_adv = tr.config.lambda_rec = tr.config.lambda_kl = 0.0
    tr.train_step(x16, y16)
    checks["generator_grad_from_clip"] = any(p.grad is not None and float(p.grad.abs().sum()) > 0
                                             for p in tr.generator.parameters())

    base = 16 / rows["seed_faithful_b16_fp32"][1]
    table = {name: {"batch": b, "median_step_s": s, "images_per_s": b / s, "vs_seed_b16": (b / s) / base}
             for name, (b, s) in rows.items()}
    print(f"\nGPU: {card}, torch {torch.__version__}, CLIP ViT-B-32 (untrained weights; speed only), 224 px")
    print(f"{'step':<26}{'median s/step':>14}{'images/s':>10}{'vs seed':>9}")
    for name, r in table.items():
        print(f"{name:<26}{r['median_step_s']:>14.4f}{r['images_per_s']:>10.1f}{r['vs_seed_b16']:>8.2f}x")
    print("checks:", checks)
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
