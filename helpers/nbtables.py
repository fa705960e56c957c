"""The tables and numbers that notebooks 03-05 show: parameter counts, the shapes of one forward pass, one
gradient step of the semantic term alone, the lambda_clip comparison, metrics.json next to its references, and
the lambda_clip experiment's results. The notebooks call these as ``ns.<name>`` through
:mod:`helpers.notebook_support`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np


# ------------------------------------------------------------------------------------------- notebook 03

def parameter_table(modules: Mapping[str, Any]):
    """Parameters of each network: total and trainable (CLIP is frozen: 0 trainable)."""
    import pandas as pd

    from helpers.models import count_parameters

    rows = [{"network": name, "parameters": count_parameters(m),
             "trainable": count_parameters(m, trainable_only=True)} for name, m in modules.items()]
    return pd.DataFrame(rows)


def forward_shapes(encoder, generator, discriminator, clip, x) -> dict[str, tuple]:
    """One forward pass through every network, returning the shape at each stage (no gradients)."""
    import torch

    from helpers.models import reparameterise

    with torch.no_grad():
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        encoder.eval()
        generator.eval()
        discriminator.eval()
        mu, logvar = encoder(x)
        z = reparameterise(mu, logvar)
        img = generator(z)
        logits = discriminator(img)
        clip_in = clip.preprocess(img)
        emb = clip.encode_images(img)
    return {"features x": tuple(x.shape), "mu": tuple(mu.shape), "logvar": tuple(logvar.shape),
            "z = mu + sigma * eps": tuple(z.shape), "generated image": tuple(img.shape),
            "image value range": (round(float(img.min()), 3), round(float(img.max()), 3)),
            "discriminator logits": tuple(logits.shape), "CLIP input (resized, normalised)": tuple(clip_in.shape),
            "CLIP embedding (unit length)": tuple(emb.shape)}


def semantic_gradient_step(encoder, generator, clip, stimulus_embeddings, x, y, lr: float = 2e-4,
                           lambda_clip: float = 1.0, betas: tuple = (0.5, 0.999)) -> dict:
    """One Adam step of encoder + generator on ``lambda_clip * (1 - cos(CLIP(G(E(x))), CLIP(stimulus)))`` alone.

    Works on *copies* of ``encoder`` and ``generator`` (the caller's networks are left untouched), so it can be
    called for several ``lambda_clip`` values on the same starting point. Shows that gradients flow *through*
    the frozen CLIP into the generator and the encoder, that their size is proportional to ``lambda_clip``
    (exactly 0 at 0), and that CLIP itself is untouched: no CLIP parameter receives a gradient and its weights
    are bit-identical after the optimiser step. ``semantic_loss_before``/``_after`` are the unweighted
    semantic loss on the same inputs (the encoder's mean ``mu``, no sampling noise).
    """
    import copy

    import torch

    from helpers.semantic import semantic_loss

    if lambda_clip < 0:
        raise ValueError(f"lambda_clip must be >= 0, got {lambda_clip}")
    # The encoder without dropout (eval mode) and the generator with batch statistics (train mode): the same
    # inputs then give the same loss, so before/after compare the step alone. Gradients flow in both modes.
    enc, gen = copy.deepcopy(encoder).eval(), copy.deepcopy(generator).train()
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    y = torch.as_tensor(np.asarray(y), dtype=torch.long)
    opt = torch.optim.Adam(list(enc.parameters()) + list(gen.parameters()), lr=lr, betas=betas)
    clip_before = [p.detach().clone() for p in clip.parameters()]

    def loss_now():
        mu, _ = enc(x)
        return semantic_loss(clip.encode_images(gen(mu)), stimulus_embeddings[y])

    opt.zero_grad(set_to_none=True)
    loss = loss_now()
    (float(lambda_clip) * loss).backward()

    def norm(ps):
        grads = [p.grad.detach() for p in ps if p.grad is not None]
        return float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads))) if grads else 0.0

    g_norm, e_norm = norm(gen.parameters()), norm(enc.parameters())
    clip_grads = sum(p.grad is not None for p in clip.parameters())
    if lambda_clip > 0:  # Adam normalises the step size, so a zero gradient would still move nothing; skip it
        opt.step()
    with torch.no_grad():
        after = float(loss_now())
    unchanged = all(torch.equal(a, p.detach()) for a, p in zip(clip_before, clip.parameters()))
    return {"lambda_clip": float(lambda_clip), "semantic_loss_before": float(loss.detach()),
            "semantic_loss_after": after, "generator_grad_norm": g_norm, "encoder_grad_norm": e_norm,
            "clip_params_with_grad": int(clip_grads), "clip_weights_unchanged": bool(unchanged)}


# ------------------------------------------------------------------------------------------- notebooks 04-05

def comparison_table(histories: Mapping[float, list[dict]]):
    """Last-epoch validation numbers of each lambda_clip run, side by side."""
    import pandas as pd

    rows = []
    for v, hist in histories.items():
        last = hist[-1] if hist else {}
        rows.append({"lambda_clip": v, "epochs": len(hist), "val_clip (1 - cos)": last.get("val_clip"),
                     "val_semantic_top1": last.get("val_semantic_top1"), "val_rec (L1)": last.get("val_rec"),
                     "train_total": last.get("train_total")})
    return pd.DataFrame(rows)


def _get(d: Mapping, *keys, default=None):
    for k in keys:
        if isinstance(d, Mapping) and k in d:
            d = d[k]
        else:
            return default
    return d


def _num(v) -> float | None:
    if isinstance(v, Mapping):
        v = v.get("value", v.get("top1"))
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def metrics_table(metrics: Mapping[str, Any]):
    """The numbers of metrics.json (docs/DESIGN.md#metricsjson), each with its interval, permutation p-value, what it
    means and what it should be compared with; ``verdict`` says whether a top-1 beats chance's 95 % bound."""
    import pandas as pd

    chance = _num(metrics.get("chance_top1")) or 0.1
    chance3 = _num(metrics.get("chance_top3")) or 0.3
    upper = _num(metrics.get("chance_top1_upper95"))
    upper3 = _num(metrics.get("chance_top3_upper95"))
    ref1 = f"chance {chance:.2f} (upper 95% {upper:.3f})" if upper is not None else f"chance {chance:.2f}"
    ref3 = f"chance {chance3:.2f} (upper 95% {upper3:.3f})" if upper3 is not None else f"chance {chance3:.2f}"
    ssim_ref = ("label-blind average digit {:.3f}, wrong digit {:.3f}".format(metrics["ssim_label_blind"],
                metrics["ssim_wrong_digit"]) if "ssim_label_blind" in metrics else "compare runs")
    corr_ref = ("label-blind average digit {:.3f}, wrong digit {:.3f}".format(metrics["pixel_corr_label_blind"],
                metrics["pixel_corr_wrong_digit"]) if "pixel_corr_label_blind" in metrics else "compare runs")
    rows = [
        ("semantic_top1", "generated image -> nearest stimulus in CLIP space is the true digit", ref1),
        ("semantic_top3", "true digit among the 3 nearest stimuli in CLIP space", ref3),
        ("judge_top1", "independent digit classifier (not CLIP) reads the generated image as the true digit", ref1),
        ("judge_top3", "true digit among the judge's 3 best guesses", ref3),
        ("linear_baseline_top1", "shrinkage LDA on the 264 EEG features (no images at all)",
         "what the EEG features carry: the generator's realistic ceiling"),
        ("eegnet_top1", "braindecode's EEGNet on the same events' 1-s signal (before decimation and PCA)",
         "does a deep EEG network find more than the features keep?"),
        ("shallow_fbcsp_top1", "braindecode's ShallowFBCSPNet (band power) on the same events' signal",
         "the same question, for a band-power reader"),
        ("majority_class_top1", "always the most frequent digit of the training events (no EEG at all)", ref1),
        ("oracle_label_judge_top1", "the same generator fed the TRUE class (judge reads it)",
         "upper bound: what perfect EEG decoding would give"),
        ("oracle_label_semantic_top1", "the same generator fed the TRUE class (CLIP ranks it)", "upper bound"),
        ("ssim_mean", "structural similarity of generated image and true stimulus (1 = identical)", ssim_ref),
        ("pixel_corr_mean", "pixel correlation of generated image and true stimulus", corr_ref),
        ("ssim_label_blind", "SSIM of the average training digit with the true stimulus (no EEG at all)", "-"),
        ("ssim_wrong_digit", "SSIM of a wrong digit's stimulus with the true stimulus", "-"),
        ("chance_top1", "best label-blind guess: the share of the test events' most frequent digit", "-"),
        ("chance_top1_upper95", "a label-blind guesser exceeds this with probability < 5 % on this many test events",
         "-"),
        ("oracle_top1", "Bayes accuracy of the synthetic data (nobody can beat it)", "-"),
    ]
    out = []
    for key, meaning, reference in rows:
        if key not in metrics:
            continue
        v = _num(metrics.get(key))
        ci = metrics.get(f"{key}_ci95")
        p = _num(metrics.get(f"{key}_p_value"))
        verdict = ""
        bound = upper if key.endswith("top1") else upper3 if key.endswith("top3") else None
        if v is not None and bound is not None and key not in ("chance_top1", "oracle_top1"):
            verdict = "above chance" if v > bound else "within chance"
        out.append({"metric": key, "value": None if v is None else round(v, 3),
                    "95% CI": f"{ci[0]:.3f}-{ci[1]:.3f}" if isinstance(ci, (list, tuple)) and len(ci) == 2 else "",
                    "permutation p": None if p is None else round(p, 4),
                    "meaning": meaning, "compare with": reference, "verdict": verdict})
    df = pd.DataFrame(out)
    df.attrs["n_test_events"] = metrics.get("n_test_events")
    df.attrs["clip_semantic"] = metrics.get("clip_semantic")
    return df


CLIP_EFFECT_JSON = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "clip_effect.json"


def clip_effect_table(path: str | Path = CLIP_EFFECT_JSON):
    """The lambda_clip experiment (benchmarks/bench_clip_effect.py) as a table: per arm, the judge's and CLIP's
    top-1 and SSIM on held-out test events (mean over seeds with the 95 % interval of the mean), beside the linear
    EEG baseline and chance's 95 % bound measured on the same runs."""
    import json

    import pandas as pd

    result = json.loads(Path(path).read_text())

    def cell(d):
        return f"{d['mean']:.3f} ({d['ci95'][0]:.2f}-{d['ci95'][1]:.2f})" if d.get("ci95") else f"{d['mean']:.3f}"

    rows = []
    for arm, s in result["summary"].items():
        cfg = result["arms"][arm]
        rows.append({"arm": arm, "lambda_cls": cfg.get("lambda_cls"), "lambda_clip": cfg.get("lambda_clip"),
                     "lambda_rec": cfg.get("lambda_rec", 10.0), "clip_views": cfg.get("clip_views", "default"),
                     "judge top-1": cell(s["judge_top1"]), "CLIP top-1": cell(s["semantic_top1"]),
                     "SSIM": round(s["ssim_mean"]["mean"], 3),
                     "linear baseline": round(s["linear_baseline_top1"]["mean"], 3),
                     "chance upper 95%": round(s["chance_top1_upper95"]["mean"], 3), "seeds": len(s["judge_top1"]["values"])})
    df = pd.DataFrame(rows).set_index("arm")
    df.attrs["seeds"] = result.get("seeds")
    return df
