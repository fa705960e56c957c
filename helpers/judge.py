"""An independent referee: a small CNN digit classifier that scores generated images.

CLIP is the training loss, so CLIP cannot also be the judge of what the generator drew
(docs/DESIGN.md#the-judge). The judge is trained only on renderings of 0-9 in the fonts that ship with matplotlib
(DejaVu, STIX, Computer Modern; regular, bold, italic), heavily augmented (scale, shift, rotation,
shear, stroke width, blur, contrast, noise; never inverted, since stimuli are black on white), and
is checked on held-out renderings: a fresh random draw and fonts it never saw in training.

It never sees EEG or generated images during training, so it cannot learn the generator's habits.
Training takes well under a minute on 2 CPU cores; :func:`load_or_train_judge` caches the weights.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .stimuli import N_DIGITS, render_digit
from helpers.log import logger

# Bump when the architecture, fonts, augmentation or training recipe changes: cached weights of
# another version are retrained rather than silently reused.
JUDGE_VERSION = 2
INPUT_SIZE = 32  # the judge sees 32 x 32 grayscale; generated images are resized with antialiasing
_BASE_SIZE = 64  # glyphs are rendered at twice the input size and sampled down by the augmentation
_BASE_HEIGHT = 0.6  # glyph height in the base rendering, leaving room for scaling up and shifting

TRAIN_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
    "cmr10.ttf", "cmss10.ttf", "cmb10.ttf",
)
# Never used in training: accuracy on these tells whether the judge learned digits or fonts.
HELDOUT_FONTS = ("cmtt10.ttf", "DejaVuSans-BoldOblique.ttf", "STIXGeneralBolIta.ttf")


class JudgeNet(nn.Module):
    """A 5x5 stride-2 convolution, two 3x3 blocks with pooling, and a linear read-out: ~27 k parameters.

    The strided first layer avoids any convolution at full 32 x 32 resolution, which made a
    training step about 2.4x cheaper on a CPU than a VGG-style stack we tried first, at about the
    same held-out accuracy (99.8 %).
    """

    def __init__(self, n_classes: int = N_DIGITS):
        super().__init__()

        def block(cin, cout, k=3, stride=1):
            return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(1, 16, k=5, stride=2),                       # 32 -> 16
            *block(16, 32), nn.MaxPool2d(2),                    # 16 -> 8
            *block(32, 48), nn.MaxPool2d(2),                    # 8 -> 4
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(48 * 4 * 4, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ----------------------------------------------------------------------------------------------
# Data: base renderings and augmentation (all torch, batched, driven by an explicit generator)
# ----------------------------------------------------------------------------------------------

def base_renderings(fonts: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ink maps (1 = ink, 0 = paper) ``[len(fonts)*10, 3, 64, 64]`` and their digit labels.

    The 3 planes are stroke-width variants of the same glyph: as drawn, dilated, and eroded (the
    erosion only for bold fonts, whose strokes survive it; others repeat the plain glyph). Making
    them once here keeps the per-step augmentation cheap.
    """
    ink, labels = [], []
    for font in fonts:
        for d in range(N_DIGITS):
            img = render_digit(d, size=_BASE_SIZE, font=font, height_frac=_BASE_HEIGHT)
            ink.append(1.0 - img[:, :, 0].astype(np.float32) / 255.0)
            labels.append(d)
    plain = torch.from_numpy(np.stack(ink))[:, None]
    dilated = F.max_pool2d(plain, 3, 1, 1)
    bold = torch.tensor([("Bol" in f or "b10" in f) for f in fonts for _ in range(N_DIGITS)])
    eroded = torch.where(bold[:, None, None, None], -F.max_pool2d(-plain, 3, 1, 1), plain)
    return torch.cat([plain, dilated, eroded], 1), torch.tensor(labels, dtype=torch.long)


def stimulus_ink(stimuli: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """A user's own stimuli (``uint8 [10, H, W, 3]``, image i = digit i) as base ink maps like
    :func:`base_renderings`: ``[10, 3, 64, 64]`` (as given, dilated, as given) and labels 0-9.

    The stimuli are scaled into the base frame at the rendered glyphs' height, so the same augmentation applies.
    """
    arr = np.asarray(stimuli)
    if arr.ndim != 4 or arr.shape[0] != N_DIGITS or arr.shape[-1] != 3:
        raise ValueError(f"stimuli must be uint8 [{N_DIGITS}, H, W, 3]; got shape {arr.shape}")
    gray = torch.from_numpy(arr.astype(np.float32).mean(-1) / 255.0)[:, None]  # [10, 1, H, W], 1 = paper
    side = int(round(_BASE_SIZE * _BASE_HEIGHT / 0.7))  # stimuli fill ~0.7 of their frame, base glyphs 0.6
    small = F.interpolate(gray, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    pad = _BASE_SIZE - side
    plain = F.pad(1.0 - small, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)).clamp(0, 1)
    dilated = F.max_pool2d(plain, 3, 1, 1)
    # No eroded plane (base_renderings erodes bold fonts only): erosion can erase a custom image's thin strokes
    # (measured: with it the judge read the letters test's stimuli at 0.962, below its floor).
    return torch.cat([plain, dilated, plain], 1), torch.arange(N_DIGITS)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur with standard deviation ``sigma`` [B] (pixels), as a grouped convolution."""
    radius = 3
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None, :] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    k = k / k.sum(1, keepdim=True)  # [B, 7]
    b = x.shape[0]
    xr = x.reshape(1, b, *x.shape[-2:])
    xr = F.conv2d(F.pad(xr, (radius, radius, 0, 0), mode="replicate"), k[:, None, None, :], groups=b)
    xr = F.conv2d(F.pad(xr, (0, 0, radius, radius), mode="replicate"), k[:, None, :, None], groups=b)
    return xr.reshape_as(x)


def augment(ink: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random renderings from base ink maps ``[B, 3, 64, 64]`` -> judge inputs ``[B, 1, 32, 32]``.

    Output is ink intensity (0 = white paper), the same representation :meth:`Judge.prepare` makes
    from RGB images, with the stroke width, geometry, paper level, contrast, blur and noise varied.
    """
    b = ink.shape[0]

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(b, generator=gen)

    # Stroke width: 60 % as drawn, 30 % dilated, 10 % eroded (generated digits are often thick or thin).
    r = torch.rand(b, generator=gen)
    plane = (r >= 0.6).long() + (r >= 0.9).long()
    x = ink[torch.arange(b), plane][:, None]
    # Geometry: scale 0.75-1.45 of the base glyph (height about 0.45-0.87 of the frame), rotation
    # +-15 degrees (more would confuse 6 and 9), shear, and shifts up to 12 % of the frame.
    scale, angle, shear = u(0.75, 1.45), u(-15, 15) * math.pi / 180, u(-0.2, 0.2)
    tx, ty = u(-0.24, 0.24), u(-0.24, 0.24)  # affine_grid works in [-1, 1] coordinates: 12 % of the frame
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output to input coordinates, hence the inverse scale.
    a = torch.stack([torch.stack([cos, -sin + shear, tx], 1), torch.stack([sin, cos, ty], 1)], 1) / scale[:, None, None]
    a[:, :, 2] = torch.stack([tx, ty], 1)
    # Sampling the 64-pixel glyph on a 32-pixel grid: at scale 1 each output pixel centre falls
    # between four input pixels, so bilinear sampling is 2x2 area averaging (anti-aliased).
    grid = F.affine_grid(a, [b, 1, INPUT_SIZE, INPUT_SIZE], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = _gaussian_blur(x, u(0.01, 1.2))
    # Photometry: ink contrast 0.5-1, paper level 0-0.2, Gaussian noise up to 0.08: every sample
    # stays legible to a person, so held-out errors are the judge's, not the augmentation's.
    x = x * u(0.5, 1.0)[:, None, None, None] + u(0.0, 0.2)[:, None, None, None]
    x = x + torch.randn(x.shape, generator=gen) * u(0.0, 0.08)[:, None, None, None]
    return x.clamp(0.0, 1.0)


def make_dataset(fonts: tuple[str, ...], n: int, seed: int, base=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` augmented renderings drawn uniformly over fonts and digits with a given seed."""
    ink, labels = base if base is not None else base_renderings(fonts)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, ink.shape[0], (n,), generator=gen)
    return augment(ink[idx], gen), labels[idx]


# ----------------------------------------------------------------------------------------------
# The judge
# ----------------------------------------------------------------------------------------------

@dataclass
class Judge:
    """A trained digit classifier with what is known about its accuracy."""
    net: JudgeNet
    heldout_accuracy: float
    metadata: dict = field(default_factory=dict)

    @staticmethod
    def prepare(images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """RGB ``[B, 3, H, W]`` in ``[-1, 1]`` -> ink maps ``[B, 1, 32, 32]`` (0 = white, 1 = black)."""
        x = torch.as_tensor(images).detach().float().cpu()
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"images must be [B, 3, H, W] (or [B, 1, H, W]) in [-1, 1]; got shape {tuple(x.shape)}")
        if x.numel() and (not torch.isfinite(x).all() or x.min() < -1.01 or x.max() > 1.01):
            raise ValueError(f"images must be finite and in [-1, 1]; got range [{x.min():.3g}, {x.max():.3g}]")
        gray = (x.mean(1, keepdim=True).clamp(-1, 1) + 1.0) / 2.0
        if tuple(gray.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            gray = F.interpolate(gray, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                                 antialias=True)
        return (1.0 - gray).clamp(0.0, 1.0)

    @torch.no_grad()
    def predict_scores(self, images: torch.Tensor | np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Softmax probabilities ``[B, 10]`` (float64 numpy) for RGB images in ``[-1, 1]``."""
        ink = self.prepare(images)
        self.net.eval()
        out = [F.softmax(self.net(ink[i:i + batch_size]), dim=1) for i in range(0, ink.shape[0], batch_size)]
        if not out:
            return np.zeros((0, N_DIGITS))
        return torch.cat(out).double().numpy()

    def predict(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        """Most probable digit per image, ``int64 [B]``."""
        return self.predict_scores(images).argmax(1)


@torch.no_grad()
def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    pred = torch.cat([net(x[i:i + 512]).argmax(1) for i in range(0, x.shape[0], 512)])
    return float((pred == y).float().mean())


def train_judge(seed: int = 0, steps: int = 400, batch_size: int = 128, lr: float = 4e-3,
                n_heldout: int = 3000, num_threads: int | None = 1, verbose: bool = False,
                stimuli: np.ndarray | None = None) -> Judge:
    """Train the judge from scratch and measure it on held-out renderings.

    ``stimuli`` (a user's own ``dataset/stimuli``, ``uint8 [10, H, W, 3]``): the judge must read the digits the
    subject saw, so augmented copies of them join the fonts (a quarter of every batch), and a fresh augmented
    draw of them is checked as ``heldout_accuracy_stimuli``. Without them the fonts already include the rendered
    stimuli's own (DejaVu Sans).

    Held-out = a fresh augmentation draw (another seed) over the training fonts, plus renderings in
    :data:`HELDOUT_FONTS`, which training never sees. ``heldout_accuracy`` is over both; the parts
    are in ``metadata``. The global torch RNG is left untouched.

    ``num_threads`` (default 1) is set for the duration of training only: on a busy 2-core machine
    two torch threads ran this small network 3-4x slower than one (they spin waiting for each
    other); ``None`` keeps torch's current setting.
    """
    prev_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _train_judge(seed, steps, batch_size, lr, n_heldout, verbose, stimuli)
    finally:
        torch.set_num_threads(prev_threads)


def _train_judge(seed: int, steps: int, batch_size: int, lr: float, n_heldout: int, verbose: bool,
                 stimuli: np.ndarray | None = None) -> Judge:
    t0, c0 = time.perf_counter(), time.process_time()
    train_base = base_renderings(TRAIN_FONTS)
    fonts_ink, fonts_labels = train_base
    stim_base = None
    if stimuli is not None:  # one quarter of the drawn base images: the stimuli, repeated
        stim_base = stimulus_ink(stimuli)
        reps = max(1, len(TRAIN_FONTS) // 3)
        fonts_ink = torch.cat([fonts_ink, stim_base[0].repeat(reps, 1, 1, 1)])
        fonts_labels = torch.cat([fonts_labels, stim_base[1].repeat(reps)])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = JudgeNet()
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
        ink, labels = fonts_ink, fonts_labels
        for step in range(steps):
            net.train()
            idx = torch.randint(0, ink.shape[0], (batch_size,), generator=gen)
            x = augment(ink[idx], gen)
            loss = F.cross_entropy(net(x), labels[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if verbose and (step + 1) % 100 == 0:
                logger.info(f"judge step {step + 1}/{steps} loss {loss.item():.3f}")
    # Held-out seeds are far from the training seed so the draws never coincide.
    n_seen = n_heldout * 2 // 3
    x_seen, y_seen = make_dataset(TRAIN_FONTS, n_seen, seed=seed + 100_003, base=train_base)
    x_new, y_new = make_dataset(HELDOUT_FONTS, n_heldout - n_seen, seed=seed + 200_003)
    acc_seen, acc_new = _accuracy(net, x_seen, y_seen), _accuracy(net, x_new, y_new)
    heldout = (acc_seen * n_seen + acc_new * (n_heldout - n_seen)) / n_heldout
    extra = {}
    if stim_base is not None:
        x_st, y_st = make_dataset((), 1000, seed=seed + 300_007, base=stim_base)
        extra = {"heldout_accuracy_stimuli": _accuracy(net, x_st, y_st), "stimuli_sha1": stimuli_sha1(stimuli)}
        heldout = min(heldout, extra["heldout_accuracy_stimuli"])  # the floor applies to the stimuli too
    net.eval()
    meta = {
        "version": JUDGE_VERSION, "seed": int(seed), "steps": int(steps), "batch_size": int(batch_size),
        "input_size": INPUT_SIZE, "train_fonts": list(TRAIN_FONTS), "heldout_fonts": list(HELDOUT_FONTS),
        "heldout_accuracy": float(heldout), "heldout_accuracy_train_fonts": float(acc_seen),
        "heldout_accuracy_unseen_fonts": float(acc_new), "n_heldout": int(n_heldout),
        "train_seconds": float(time.perf_counter() - t0), "train_cpu_seconds": float(time.process_time() - c0),
        "torch_threads": int(torch.get_num_threads()), **extra,
    }
    return Judge(net=net, heldout_accuracy=float(heldout), metadata=meta)


def stimuli_sha1(stimuli: np.ndarray) -> str:
    import hashlib

    return hashlib.sha1(np.ascontiguousarray(stimuli, dtype=np.uint8).tobytes()).hexdigest()[:12]


def judge_cache_path(cache_dir: str | os.PathLike, seed: int = 0, stimuli: np.ndarray | None = None) -> Path:
    """One cache file per seed, and per set of custom stimuli (their hash is in the name)."""
    tag = "" if stimuli is None else f"_stimuli{stimuli_sha1(stimuli)}"
    return Path(cache_dir) / f"judge_v{JUDGE_VERSION}_seed{seed}{tag}.pt"


def save_judge(judge: Judge, path: str | os.PathLike) -> Path:
    """Write weights + metadata atomically (:func:`helpers.atomic.atomic_write`)."""
    from helpers.atomic import atomic_write

    blob = {"state_dict": judge.net.state_dict(), "metadata": judge.metadata}
    return atomic_write(path, lambda f: torch.save(blob, f))


def load_judge(path: str | os.PathLike) -> Judge:
    """Load a judge saved by :func:`save_judge` (``weights_only=True``: no code runs on load)."""
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    meta = blob["metadata"]
    if meta.get("version") != JUDGE_VERSION:
        raise ValueError(f"{path}: judge version {meta.get('version')} != {JUDGE_VERSION}")
    net = JudgeNet()
    net.load_state_dict(blob["state_dict"])
    net.eval()
    return Judge(net=net, heldout_accuracy=float(meta["heldout_accuracy"]), metadata=dict(meta))


def load_or_train_judge(cache_dir: str | os.PathLike | None = None, seed: int = 0, retrain: bool = False,
                        min_accuracy: float = 0.97, verbose: bool = False, stimuli: np.ndarray | None = None) -> Judge:
    """The cached judge under ``cache_dir`` (default ``results/models``), trained and saved if absent.

    A cache file that cannot be read or is of another version is replaced, with a warning. A judge
    below ``min_accuracy`` on held-out renderings raises rather than referee anything. (It reaches 0.997 here;
    the floor leaves room for other CPUs and BLAS builds, whose training runs differ in the last digits.)
    """
    if cache_dir is None:
        from .config import results_dir

        cache_dir = results_dir() / "models"
    path = judge_cache_path(cache_dir, seed, stimuli)
    if path.exists() and not retrain:
        try:
            judge = load_judge(path)
            if verbose:
                logger.info(f"judge loaded from {path} (held-out accuracy {judge.heldout_accuracy:.4f})")
            return judge
        except Exception as e:  # a damaged or outdated cache is rebuilt, never trusted
            warnings.warn(f"judge cache {path} unusable ({e}); retraining", stacklevel=2)
    judge = train_judge(seed=seed, verbose=verbose, stimuli=stimuli)
    if judge.heldout_accuracy < min_accuracy:
        raise RuntimeError(f"judge reached only {judge.heldout_accuracy:.4f} on held-out renderings "
                           f"(< {min_accuracy}); it would be a bad referee")
    save_judge(judge, path)
    if verbose:
        logger.info(f"judge trained in {judge.metadata['train_seconds']:.0f} s, held-out accuracy "
              f"{judge.heldout_accuracy:.4f}; saved to {path}")
    return judge
