"""Training throughput: our step against a seed-faithful step, same models, same data, same run.

Seed-faithful step = what the original prototype did, with its gradient bug fixed so the comparison is
about speed only: CLIP's weights left trainable (requires_grad=True, as the seed never froze them, so
backward also computes CLIP weight gradients nobody uses), and the target stimuli re-encoded by CLIP on
every step (no embedding cache). Our step (helpers.train.Trainer.train_step): CLIP frozen with
requires_grad_(False), the 10 stimulus embeddings cached once. Both use the same batch, generator size and
the same CLIP input pipeline (resize + normalise). A third row shows the `cpu` profile's setting
`clip_batch` (CLIP on a random subset of each batch), reported separately because it changes the estimator.

Usage: python benchmarks/bench_train.py [--clip ViT-B-32] [--batch 16] [--image-size 64] [--steps 5]
Prints a table and one JSON line; writes benchmarks/results/train_cpu.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.config import make_config  # noqa: E402
from helpers.evaluate import write_json_atomic  # noqa: E402
from helpers.losses import discriminator_loss, generator_losses  # noqa: E402
from helpers.semantic import load_clip  # noqa: E402
from helpers.stimuli import render_digits, to_tensor  # noqa: E402
from helpers.train import Trainer  # noqa: E402


def seed_faithful_step(tr: Trainer, clip_model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """One step as the seed did it (gradient bug fixed): CLIP unfrozen, targets re-encoded every step."""
    c = tr.config
    real = tr.stimuli[y]
    mu, logvar = tr.encoder(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    fake = tr.generator(z)
    tr.opt_d.zero_grad()
    d_loss = discriminator_loss(tr.discriminator(real), tr.discriminator(fake.detach()))
    d_loss.backward()
    tr.opt_d.step()
    tr.opt_g.zero_grad()
    gen_emb = clip_model.encode_images(fake)
    with torch.no_grad():
        target_emb = clip_model.encode_images(real)
    total, _ = generator_losses(tr.discriminator(fake), fake, real, mu, logvar, gen_emb, target_emb, c)
    total.backward()
    tr.opt_g.step()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", default="ViT-B-32")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--clip-batch", type=int, default=4, help="the cpu profile's clip_batch for the third row")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_cpu.json"))
    a = p.parse_args(argv)

    torch.manual_seed(0)
    cfg = make_config("cpu", {"clip_model": a.clip, "clip_weights": "untrained", "batch_size": a.batch,
                              "image_size": a.image_size, "clip_batch": 0, "device": "cpu",
                              "lambda_cls": 0.0, "adv_warmup_epochs": 0})  # the seed's four terms and loop on both sides
    clip = load_clip(cfg.clip_model, "untrained")
    stimuli = to_tensor(render_digits(224), size=a.image_size)
    stim_emb = clip.encode_images(to_tensor(render_digits(224))).detach()
    x = torch.randn(a.batch, cfg.feature_dim)
    y = torch.arange(a.batch) % 10

    ours = Trainer(cfg, stimuli, clip, stim_emb)
    ours_sub = Trainer(make_config("cpu", {**cfg.to_dict(), "clip_batch": a.clip_batch, "profile": "cpu"}),
                       stimuli, clip, stim_emb)
    naive = Trainer(cfg, stimuli, clip, stim_emb)
    naive_clip = load_clip(cfg.clip_model, "untrained")
    naive_clip.model.requires_grad_(True)  # the seed never froze CLIP

    rows = {}
    # Interleave the three ways so that machine noise hits them alike.
    samples = {"seed_faithful": [], "ours": [], f"ours_clip_batch_{a.clip_batch}": []}
    fns = {"seed_faithful": lambda: seed_faithful_step(naive, naive_clip, x, y),
           "ours": lambda: ours.train_step(x, y),
           f"ours_clip_batch_{a.clip_batch}": lambda: ours_sub.train_step(x, y)}
    for fn in fns.values():
        fn()  # warm-up: allocator and first-call overheads
    for _ in range(a.steps):
        for name, fn in fns.items():
            samples[name].append(timed(fn))
    for name, ts in samples.items():
        med = statistics.median(ts)
        rows[name] = {"median_step_s": med, "samples_per_s": a.batch / med, "steps": len(ts)}
    base = rows["seed_faithful"]["samples_per_s"]
    for r in rows.values():
        r["speedup_vs_seed"] = r["samples_per_s"] / base

    print(f"\nTraining step throughput, CLIP {a.clip} (untrained weights; speed only), batch {a.batch}, "
          f"generator {a.image_size}px, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"{'step':<22}{'median s/step':>15}{'samples/s':>12}{'vs seed':>10}")
    for name, r in rows.items():
        print(f"{name:<22}{r['median_step_s']:>15.3f}{r['samples_per_s']:>12.2f}{r['speedup_vs_seed']:>9.2f}x")
    result = {"bench": "train_step_cpu", "clip": a.clip, "batch": a.batch, "image_size": a.image_size,
              "threads": torch.get_num_threads(), "machine": platform.machine(), "rows": rows}
    print(json.dumps(result))
    write_json_atomic(a.out, result)
    return result


if __name__ == "__main__":
    main()
