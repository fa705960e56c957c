"""The loss terms of the VAE-GAN with a CLIP semantic term (docs/DESIGN.md#training).

    L_G = lambda_adv * BCE(D(G(z)), real) + lambda_rec * L1(G(z), stimulus)
        + lambda_kl * KL(q(z|x) || N(0, I)) + lambda_clip * (1 - cos(CLIP(G(z)), CLIP(stimulus)))
        [+ lambda_cls * CE(label_head(mu), digit)]   (optional; 0 = the seed's four-term loss)
    L_D = (BCE(D(stimulus), real) + BCE(D(G(z).detach()), fake)) / 2

Conventions: KL and L1 are both means per element (KL over latent dimensions and batch, L1 over pixels);
every BCE is the mean over the batch. The per-dimension KL is what makes the seed's weights (rec 10, kl 1)
a working balance: with KL summed over the 128 latent dimensions, the posterior collapses to the prior and
the generator draws one average digit for every EEG event (measured on the synthetic data: the oracle-label
generator fell to chance), so lambda_kl = 1 would silently switch the EEG off.

The optional fifth term is an auxiliary classifier on the latent mean (AC-GAN style). The image losses reach
the encoder only through the generator, with the sampling noise in between; the digit label is the same
information as the stimulus image the L1 and CLIP terms already compare with, given to the encoder directly.
On the synthetic data, 6 CPU epochs with all four terms and a tiny CLIP, no setting tried without it got the
validation judge top-1 past 0.25; with it 0.35-0.43 over three seeds (linear baseline 0.46-0.54; the cpu profile's
warm-up and slower encoder, helpers.config, add about 0.06). A term whose weight is 0 is left
out of the total (not multiplied by 0, which would still propagate NaNs) but is still computed and logged.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from .semantic import semantic_loss

WEIGHT_NAMES = ("lambda_adv", "lambda_rec", "lambda_kl", "lambda_clip", "lambda_cls")
# Weights a mapping may leave out, and the value they then take (the seed's loss has no label term).
OPTIONAL_WEIGHTS = {"lambda_cls": 0.0}


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per latent dimension: mean over latent dims and over the batch.

    Closed form per dimension: -0.5 * (1 + logvar - mu**2 - exp(logvar)).
    """
    if mu.shape != logvar.shape or mu.ndim != 2:
        raise ValueError(f"mu and logvar must both be [batch, latent], got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    return (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp())).mean()


def discriminator_loss(d_real_logits: torch.Tensor, d_fake_logits: torch.Tensor) -> torch.Tensor:
    """(BCE(real logits, 1) + BCE(fake logits, 0)) / 2, from logits (numerically stable).

    Halved so that with equal batch sizes it equals one BCE over the concatenated batch (pix2pix).
    """
    real = F.binary_cross_entropy_with_logits(d_real_logits, torch.ones_like(d_real_logits))
    fake = F.binary_cross_entropy_with_logits(d_fake_logits, torch.zeros_like(d_fake_logits))
    return 0.5 * (real + fake)


def loss_weights(weights: Any) -> dict[str, float]:
    """The lambdas from a Config, any object with those attributes, or a mapping; checked >= 0.

    ``lambda_cls`` may be missing (it is then 0, the seed's four-term loss); the other four are required.
    """
    out = {}
    for name in WEIGHT_NAMES:
        if isinstance(weights, Mapping) and name in weights:
            value = weights[name]
        elif not isinstance(weights, Mapping) and hasattr(weights, name):
            value = getattr(weights, name)
        elif name in OPTIONAL_WEIGHTS:
            value = OPTIONAL_WEIGHTS[name]
        else:
            raise KeyError(f"loss weights lack {name!r}; need {', '.join(WEIGHT_NAMES)}")
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        out[name] = value
    if not any(out.values()):
        raise ValueError("all loss weights are 0: the generator would have nothing to learn from")
    return out


def generator_losses(d_fake_logits: torch.Tensor | None, generated: torch.Tensor, target_images: torch.Tensor,
                     mu: torch.Tensor, logvar: torch.Tensor, gen_emb: torch.Tensor | None,
                     target_emb: torch.Tensor | None, weights: Any, class_logits: torch.Tensor | None = None,
                     labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The encoder+generator objective and its terms.

    Returns ``(total, terms)``: ``total`` is the differentiable weighted sum; ``terms`` holds plain floats
    ``adv``, ``rec`` (L1), ``kl``, ``clip`` (1 - cos), ``cls`` (cross-entropy of ``class_logits`` against the
    digit ``labels``) unweighted, and ``total``. ``d_fake_logits`` must be D(generated) *without* detach (the
    generator learns through D). ``gen_emb``, ``d_fake_logits`` and ``class_logits``/``labels`` may be None only
    when their weight is 0 (the term is then logged as NaN): it lets a caller skip the CLIP or discriminator
    forward pass entirely.
    """
    w = loss_weights(weights)
    if generated.shape != target_images.shape:
        raise ValueError(f"generated {tuple(generated.shape)} and target images {tuple(target_images.shape)} differ")

    def adv():
        return F.binary_cross_entropy_with_logits(d_fake_logits, torch.ones_like(d_fake_logits))

    computed = {
        "adv": (w["lambda_adv"], adv if d_fake_logits is not None else None),
        "rec": (w["lambda_rec"], lambda: F.l1_loss(generated, target_images)),
        "kl": (w["lambda_kl"], lambda: kl_divergence(mu, logvar)),
        "clip": (w["lambda_clip"], (lambda: semantic_loss(gen_emb, target_emb)) if gen_emb is not None else None),
        "cls": (w["lambda_cls"], (lambda: F.cross_entropy(class_logits, labels))
                if class_logits is not None and labels is not None else None),
    }
    total = None
    terms: dict[str, float] = {}
    for name, (lam, fn) in computed.items():
        if fn is None:
            if lam > 0:
                raise ValueError(f"lambda_{name}={lam} > 0 but its input is None")
            terms[name] = float("nan")
            continue
        # A weight-0 term is only logged: no graph for it (and none of its NaNs can reach the total).
        with torch.set_grad_enabled(torch.is_grad_enabled() and lam > 0):
            value = fn()
        terms[name] = float(value.detach())
        if lam > 0:
            total = lam * value if total is None else total + lam * value
    terms["total"] = float(total.detach())
    return total, terms
