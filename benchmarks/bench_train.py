"""Training throughput: our step against a seed-faithful step, same models, same data, same run.

Seed-faithful step = what the original prototype did, with its gradient bug fixed so the comparison is
about speed only: open_clip's own modules in float32, CLIP's weights left trainable (requires_grad=True, as
the seed never froze them, so backward also computes CLIP weight gradients nobody uses), and the target
stimuli re-encoded by CLIP on every step (no embedding cache). Our step (helpers.train.Trainer.train_step):
CLIP frozen with requires_grad_(False), the 10 stimulus embeddings cached once, and the vision tower's
attention and patch embedding in their exact faster forms (helpers.fast_tower). Rows, all at full CLIP batch
unless named otherwise:

* ``ours_open_clip_modules``: our step with open_clip's own modules (what freezing and caching alone give);
* ``ours``: our step, float32 (``mixed_precision=false``, the cpu profile's setting);
* ``ours_mixed_precision``: ``mixed_precision=true``: bfloat16 autocast for the networks and CLIP's pass on
  the generated images (targets float32). Its accuracy is measured in the same run: the cosine between
  float32 and bfloat16 embeddings, and between their gradients with respect to the images;
* ``ours_clip_batch_N``: the `cpu` profile's `clip_batch` (CLIP on a random subset of each batch), reported
  separately because it changes the estimator.

All rows share the batch, generator size and CLIP input pipeline (resize + normalise), and take turns, so that
machine noise hits them alike.

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

import open_clip
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.config import make_config  # noqa: E402
from helpers.evaluate import write_json_atomic  # noqa: E402
from helpers.losses import discriminator_loss, generator_losses  # noqa: E402
from helpers.semantic import FrozenClip, load_clip  # noqa: E402
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


def open_clip_modules(clip: FrozenClip) -> FrozenClip:
    """The same CLIP weights in open_clip's own modules (no fast_tower swap)."""
    stock = open_clip.create_model(clip.model_name)
    stock.load_state_dict(clip.model.state_dict())
    return FrozenClip(stock, clip.model_name, clip.weights, clip.trained, fast=False).to(clip.device)


def bf16_accuracy(clip: FrozenClip, images: torch.Tensor) -> dict:
    """How far CLIP's bfloat16 pass is from float32: embeddings' and input gradients' cosine (min over images)."""
    out = {}
    for low in (False, True):
        x = images.clone().requires_grad_(True)
        emb = clip.encode_images(x, low_precision=low)
        (emb * torch.linspace(-1, 1, emb.shape[1])).sum().backward()
        out[low] = (emb.detach(), x.grad.flatten(1))
    return {"embedding_cosine_min": float(F.cosine_similarity(out[True][0], out[False][0]).min()),
            "input_gradient_cosine_min": float(F.cosine_similarity(out[True][1], out[False][1]).min())}


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
                              "image_size": a.image_size, "clip_batch": 0, "clip_views": 1, "device": "cpu",
                              "lambda_cls": 0.0, "adv_warmup_epochs": 0})  # the seed's four terms, loop and plain
    # CLIP loss on both sides (the cpu profile's 2 views would send twice the images through CLIP: another estimator)
    clip = load_clip(cfg.clip_model, "untrained")
    stimuli = to_tensor(render_digits(224), size=a.image_size)
    stim_emb = clip.encode_images(to_tensor(render_digits(224))).detach()
    x = torch.randn(a.batch, cfg.feature_dim)
    y = torch.arange(a.batch) % 10

    stock_clip = open_clip_modules(clip)
    ours = Trainer(cfg, stimuli, clip, stim_emb)
    ours_stock = Trainer(cfg, stimuli, stock_clip, stim_emb)
    ours_amp = Trainer(make_config("cpu", {**cfg.to_dict(), "mixed_precision": True}), stimuli, clip, stim_emb)
    ours_sub = Trainer(make_config("cpu", {**cfg.to_dict(), "clip_batch": a.clip_batch, "profile": "cpu"}),
                       stimuli, clip, stim_emb)
    naive = Trainer(cfg, stimuli, clip, stim_emb)
    naive_clip = open_clip_modules(clip)
    naive_clip.model.requires_grad_(True)  # the seed never froze CLIP

    rows = {}
    fns = {"seed_faithful": lambda: seed_faithful_step(naive, naive_clip, x, y),
           "ours_open_clip_modules": lambda: ours_stock.train_step(x, y),
           "ours": lambda: ours.train_step(x, y),
           "ours_mixed_precision": lambda: ours_amp.train_step(x, y),
           f"ours_clip_batch_{a.clip_batch}": lambda: ours_sub.train_step(x, y)}
    samples = {name: [] for name in fns}
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

    cpu = _cpu_name()
    print(f"\nTraining step throughput, CLIP {a.clip} (untrained weights; speed only), batch {a.batch}, "
          f"generator {a.image_size}px, {torch.get_num_threads()} threads, {cpu}")
    print(f"{'step':<26}{'median s/step':>15}{'samples/s':>12}{'vs seed':>10}")
    for name, r in rows.items():
        print(f"{name:<26}{r['median_step_s']:>15.3f}{r['samples_per_s']:>12.2f}{r['speedup_vs_seed']:>9.2f}x")
    accuracy = bf16_accuracy(clip, torch.rand(a.batch, 3, a.image_size, a.image_size) * 2 - 1)
    print(f"CLIP bfloat16 vs float32 (min over {a.batch} images): embedding cosine "
          f"{accuracy['embedding_cosine_min']:.6f}, input-gradient cosine {accuracy['input_gradient_cosine_min']:.6f}")
    result = {"bench": "train_step_cpu", "clip": a.clip, "batch": a.batch, "image_size": a.image_size,
              "threads": torch.get_num_threads(), "machine": platform.machine(),
              "cpu": cpu, "torch": torch.__version__, "rows": rows, "clip_bf16_vs_fp32": accuracy}
    print(json.dumps(result))
    write_json_atomic(a.out, result)
    return result


if __name__ == "__main__":
    main()
