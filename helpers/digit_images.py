"""The images digit-CLIP learns from: scikit-learn's handwriting and matplotlib fonts, and their augmentation.

Split from helpers.digit_clip (which trains on them). None of them is a stimulus or a judge image: the fonts are
neither the stimulus font nor any judge font (helpers.judge), so the loss and the referee share no picture.
See docs/DESIGN.md#digit-clip.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .stimuli import render_digit

SIZE = 64  # CLIP input; training images are made at this size
# Matplotlib fonts that draw 0-9 and are neither a judge font (train or held out) nor the stimulus font.
TRAIN_FONTS = ("DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif-BoldItalic.ttf",
               "cmmi10.ttf")
HELDOUT_FONT = "cmti10.ttf"
N_HELDOUT_HANDWRITTEN = 450  # the last 450 of load_digits' 1797 images (43-48 per digit)


def handwritten_ink() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 handwritten digits as ink maps ``[N, 1, 64, 64]`` (1 = ink) and labels ``[N]``.

    The 8 x 8 image (it fills its frame) is upsampled to 38 x 38 and centred: the digit's height is then
    about 0.6 of the frame, as the font renderings below.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    x = F.interpolate(x, size=(38, 38), mode="bilinear", align_corners=False).clamp(0, 1)
    return F.pad(x, (13, 13, 13, 13)), torch.as_tensor(d.target, dtype=torch.long)


def font_ink(fonts: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ink maps ``[len(fonts) * 10, 1, 64, 64]`` of 0-9 in each font (height 0.6 of the frame) and labels."""
    ink = [1.0 - render_digit(d, size=SIZE, font=f, height_frac=0.6)[:, :, 0] / 255.0 for f in fonts for d in range(10)]
    return torch.as_tensor(np.stack(ink), dtype=torch.float32)[:, None], torch.arange(10).repeat(len(fonts))


def stroke_variants(ink: torch.Tensor) -> torch.Tensor:
    """Ink maps ``[N, 1, H, W]`` -> ``[N, 3, H, W]``: as drawn, dilated (thicker), eroded (thinner)."""
    return torch.cat([ink, F.max_pool2d(ink, 3, 1, 1), -F.max_pool2d(-ink, 3, 1, 1)], 1)


def augment(variants: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Random images ``[B, 3, 64, 64]`` in [-1, 1] (black on white) from :func:`stroke_variants` ``[B, 3, 64, 64]``."""
    b = variants.shape[0]

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(b, generator=gen)

    # Stroke width: 65 % as drawn, 20 % thicker, 15 % thinner.
    r = u(0, 1)
    x = variants[torch.arange(b), (r >= 0.65).long() + (r >= 0.85).long()][:, None]
    # Geometry (affine_grid maps output to input coordinates, in [-1, 1] units), at strength 1: scale 0.8-1.35,
    # rotation +-12 degrees, shear +-0.3 (also straightens the oblique fonts), shift up to 12 % of the side.
    g = strength
    scale, angle, shear = u(1 - .2 * g, 1 + .35 * g), u(-12 * g, 12 * g) * math.pi / 180, u(-.3 * g, .3 * g)
    cos, sin = torch.cos(angle), torch.sin(angle)
    tx, ty = u(-.24 * g, .24 * g), u(-.24 * g, .24 * g)
    a = torch.stack([torch.stack([cos, -sin + shear, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    a[:, :, :2] /= scale[:, None, None]
    x = F.grid_sample(x, F.affine_grid(a, [b, 1, SIZE, SIZE], align_corners=False), align_corners=False)
    # Blur (3x3 box mixed in) and, for a third, a 32 px detour: the ci generator draws 32 px images.
    x = torch.lerp(x, F.avg_pool2d(x, 3, 1, 1, count_include_pad=False), u(0, 1)[:, None, None, None])
    low = torch.nonzero(u(0, 1) < 0.33).flatten()
    x = x.index_copy(0, low, F.interpolate(F.interpolate(x[low], size=(32, 32), mode="bilinear", antialias=True,
                                                         align_corners=False), size=(SIZE, SIZE), mode="bilinear",
                                           align_corners=False))
    # Photometry: ink contrast 0.6-1, grey paper up to 0.15, pixel noise up to 0.08 (in ink units).
    x = x * u(0.6, 1.0)[:, None, None, None] + u(0, 0.15)[:, None, None, None]
    x = x + torch.randn(x.shape, generator=gen) * u(0, 0.08)[:, None, None, None]
    return (1.0 - 2.0 * x.clamp(0, 1)).expand(-1, 3, -1, -1)
