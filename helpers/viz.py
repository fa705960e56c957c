"""Figures: the signature grid, training curves, confusion matrix, accuracy bars, prediction histogram.

Every figure function takes ``clip_trained`` and ``synthetic`` (required, keyword-only: a figure
cannot forget to say how it was made). A figure made with an untrained CLIP carries a red banner
and one made from synthetic data an orange banner, in the image itself, so a PNG shared alone
still tells the truth. Each function saves a PNG under ``out_dir`` (default ``results/figures``)
and returns ``(figure, path)``. The banners and the saving are :mod:`helpers.figure`'s (re-exported here:
``viz.banner_texts`` etc.); the training curves are drawn in :mod:`helpers.curves`, with the explorer's loss curves
(``viz.training_curves`` re-exported).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from helpers.curves import epoch_axis, is_number, training_curves  # noqa: F401 - training_curves re-exported
from helpers.figure import (  # noqa: F401 - re-exported: viz.banner_texts etc. (tests, notebooks)
    SYNTHETIC_TEXT,
    UNTRAINED_TEXT,
    banner_texts,
    banners_height,
    finish_figure,
    synthetic_banner,
    top_fraction,
    untrained_banner,
)

# Border colours of the signature grid (docs/DESIGN.md#figures).
TRUE_COLOR = "#2ca02c"      # green: the stimulus the subject saw
GOLD = "#d4af37"
SILVER = "#a8a9ad"
BRONZE = "#cd7f32"
RANK_COLORS = (GOLD, SILVER, BRONZE)
GENERATED_COLOR = "#404040"
CHECK_MARK = "\u2713"  # in DejaVu Sans, matplotlib's default font


# ----------------------------------------------------------------------------------------------
# Image panels
# ----------------------------------------------------------------------------------------------

def _frame(ax, color: str, width: float = 4.0) -> None:
    """A coloured border around an image panel (its spines), no ticks."""
    ax.set_xticks([])
    ax.set_yticks([])
    for sp in ax.spines.values():
        sp.set_visible(True)
        sp.set_edgecolor(color)
        sp.set_linewidth(width)


def _to_hwc01(img) -> np.ndarray:
    """One image, ``[3, h, w]`` in [-1, 1] (tensor or array) -> ``[h, w, 3]`` in [0, 1] for imshow."""
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    return np.clip((a.transpose(1, 2, 0).astype(np.float32) + 1.0) / 2.0, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# The signature grid
# ----------------------------------------------------------------------------------------------

_VISUAL_CHANNELS = ("O1", "O2", "P7", "P8")  # over visual cortex on the EPOC montage


def _eeg_channels(n_channels: int, channels, names: Sequence[str] | None = None) -> list[int]:
    if channels is not None:
        idx = [int(c) for c in channels]
        bad = [c for c in idx if not 0 <= c < n_channels]
        if bad:
            raise ValueError(f"channel indices {bad} outside 0..{n_channels - 1}")
        return idx
    if names is not None and all(c in names for c in _VISUAL_CHANNELS):
        return [list(names).index(c) for c in _VISUAL_CHANNELS]
    k = min(4, n_channels)  # a few channels spread over the montage
    return sorted({int(round(i)) for i in np.linspace(0, n_channels - 1, k)})


def signature_grid(eeg, sfreq: float, labels, stimuli: np.ndarray, generated, top3, *, clip_trained: bool,
                   synthetic: bool, channel_names: Sequence[str] | None = None, channels=None,
                   max_rows: int = 8, scorer: str = "judge", n_total: int | None = None, out_dir=None,
                   filename: str = "signature_grid.png") -> tuple[Figure, Path]:
    """Per test example: [EEG] [true stimulus, green] [generated] [top-3 stimuli, gold/silver/bronze, check on the correct one].

    ``eeg`` [n, channels, times] (``channels`` indices drawn, default O1 O2 P7 P8 when ``channel_names``
    has them, else four spread over the montage; each trace scaled to its own range), ``labels`` [n],
    ``stimuli`` uint8 [10, H, W, 3], ``generated`` [n, 3, h, w] in [-1, 1], ``top3`` [n, k<=3] class
    indices ranked best first by ``scorer``. At most ``max_rows`` examples are drawn (the first ones); the
    footnote counts them out of ``n_total`` test events (default: the ``n`` given).
    Axes are labelled ``eeg``, ``true``, ``generated``, ``rank1``.. (``ax.get_label()``).
    """
    eeg = np.asarray(eeg.detach().cpu() if isinstance(eeg, torch.Tensor) else eeg, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    top3 = np.asarray(top3).astype(int)
    stimuli = np.asarray(stimuli)
    if eeg.ndim != 3:
        raise ValueError(f"eeg must be [n, channels, times]; got shape {eeg.shape}")
    n = eeg.shape[0]
    if labels.shape != (n,) or len(generated) != n or top3.ndim != 2 or top3.shape[0] != n:
        raise ValueError(f"eeg ({n}), labels {labels.shape}, generated ({len(generated)}) and top3 {top3.shape} "
                         "must describe the same examples")
    if not 1 <= top3.shape[1] <= 3:
        raise ValueError(f"top3 must have 1 to 3 columns; got {top3.shape[1]}")
    if stimuli.ndim != 4 or stimuli.shape[0] != 10 or stimuli.shape[-1] != 3:
        raise ValueError(f"stimuli must be uint8 [10, H, W, 3]; got shape {stimuli.shape}")
    if n == 0:
        raise ValueError("no examples to draw")
    if sfreq <= 0:
        raise ValueError(f"sfreq must be positive; got {sfreq}")
    rows = min(n, max_rows)
    k = top3.shape[1]
    if channel_names is not None and len(channel_names) != eeg.shape[1]:
        raise ValueError(f"{len(channel_names)} channel names for {eeg.shape[1]} channels")
    chans = _eeg_channels(eeg.shape[1], channels, channel_names)
    names = list(channel_names) if channel_names is not None else [f"ch{c}" for c in range(eeg.shape[1])]

    ncols = 3 + k
    row_h = 1.35
    width = 3.2 + 1.35 * (ncols - 1)
    banner_h = banners_height(clip_trained, synthetic)
    height = rows * row_h + 0.55 + banner_h
    fig = plt.figure(figsize=(width, height))
    gs = fig.add_gridspec(rows, ncols, width_ratios=[2.4] + [1] * (ncols - 1), wspace=0.12, hspace=0.35,
                          left=0.06, right=0.99, bottom=0.5 / height, top=1 - (0.4 + banner_h) / height)
    t = np.arange(eeg.shape[2]) / float(sfreq)
    for i in range(rows):
        y = int(labels[i])
        ax = fig.add_subplot(gs[i, 0], label="eeg")
        for j, c in enumerate(chans):
            sig = eeg[i, c] - np.median(eeg[i, c])
            scale = np.percentile(np.abs(sig), 99) or 1.0
            ax.plot(t, sig / (2.2 * scale) - j, lw=0.6, color=plt.cm.tab10(j % 10))
        ax.set_yticks([-j for j in range(len(chans))], [names[c] for c in chans], fontsize=7)
        ax.set_xlim(t[0], t[-1])
        ax.tick_params(axis="x", labelsize=7)
        ax.set_ylim(-len(chans) + 0.4, 0.6)
        if i == rows - 1:
            ax.set_xlabel("time (s)", fontsize=8)
        else:
            ax.set_xticklabels([])
        ax.set_title(f"event {i}: digit {y}", fontsize=8, loc="left", pad=2)

        ax = fig.add_subplot(gs[i, 1], label="true")
        ax.imshow(stimuli[y])
        _frame(ax, TRUE_COLOR)
        ax.set_title(f"true {y}", fontsize=8, pad=2)

        ax = fig.add_subplot(gs[i, 2], label="generated")
        ax.imshow(_to_hwc01(generated[i]))
        _frame(ax, GENERATED_COLOR, 1.0)
        ax.set_title("generated", fontsize=8, pad=2)

        for r in range(k):
            p = int(top3[i, r])
            ax = fig.add_subplot(gs[i, 3 + r], label=f"rank{r + 1}")
            ax.imshow(stimuli[p])
            _frame(ax, RANK_COLORS[r])
            ax.set_title(f"#{r + 1}: {p}", fontsize=8, pad=2)
            if p == y:
                ax.text(0.97, 0.97, CHECK_MARK, transform=ax.transAxes, ha="right", va="top", fontsize=20,
                        fontweight="bold", color=TRUE_COLOR, gid="check")
    fig.text(0.99, 0.01, f"top-3 by {scorer}; the first {rows} of {n_total or n} test events", ha="right",
             va="bottom", fontsize=7, color="0.4")
    return finish_figure(fig, filename, out_dir, clip_trained=clip_trained, synthetic=synthetic, layout=False, dpi=120)


# ----------------------------------------------------------------------------------------------
# Confusion matrix, accuracy bars, prediction histogram
# ----------------------------------------------------------------------------------------------

def confusion_matrix_figure(cm, title: str = "confusion (test)", *, clip_trained: bool, synthetic: bool,
                            out_dir=None, filename: str = "confusion_matrix.png") -> tuple[Figure, Path]:
    """Counts ``cm[true, predicted]`` written in each cell, colour = share of the true class (row)."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square matrix; got shape {cm.shape}")
    if (cm < 0).any():
        raise ValueError("cm holds counts; negative entries make no sense")
    c = cm.shape[0]
    rows = cm.sum(1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    banner_h = banners_height(clip_trained, synthetic)
    fig, ax = plt.subplots(figsize=(5.6, 5.0 + banner_h))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(c):
        for j in range(c):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.55 else "black")
    ax.set_xticks(range(c))
    ax.set_yticks(range(c))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = np.trace(cm) / cm.sum() if cm.sum() else float("nan")
    chance = rows.max() / cm.sum() if cm.sum() else float("nan")  # the majority class's share (stats.chance_level)
    ax.set_title(f"{title}\n(n={int(cm.sum())}, top-1 {acc:.3f}, chance {chance:.2f} = largest class)", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    return finish_figure(fig, filename, out_dir, clip_trained=clip_trained, synthetic=synthetic)


def _acc_parts(a) -> tuple[float, float | None, float | None]:
    """(value, ci low, ci high) from an Accuracy, a dict with the same keys, or a bare number."""
    if is_number(a):
        return float(a), None, None
    get = a.get if isinstance(a, Mapping) else (lambda k, d=None: getattr(a, k, d))
    value = get("value")
    if value is None:
        raise ValueError(f"cannot read an accuracy from {a!r}")
    return float(value), get("ci95_low"), get("ci95_high")


def accuracy_bars(accuracies: Mapping, *, clip_trained: bool, synthetic: bool, chance: float | None = None,
                  chance_upper95: float | None = None, title: str = "top-1 accuracy on the test events",
                  ylabel: str = "top-1 accuracy", out_dir=None,
                  filename: str = "accuracy_bars.png") -> tuple[Figure, Path]:
    """Bars with 95 % intervals for ``name -> Accuracy`` (or dict / number), against chance.

    Chance is a dotted line, and the band up to ``chance_upper95`` (what chance reaches 5 % of the
    time for this n) is shaded: a bar whose interval sits in the band is not evidence of anything.
    ``chance``/``chance_upper95`` default to those of the first :class:`~helpers.stats.Accuracy`.
    """
    if not accuracies:
        raise ValueError("no accuracies to plot")
    names = list(accuracies)
    parts = [_acc_parts(accuracies[k]) for k in names]
    for a in accuracies.values():
        if chance is None:
            chance = a.get("chance") if isinstance(a, Mapping) else getattr(a, "chance", None)
        if chance_upper95 is None:
            chance_upper95 = a.get("chance_upper95") if isinstance(a, Mapping) else getattr(a, "chance_upper95", None)
    values = np.array([p[0] for p in parts])
    err = np.array([[v - lo if lo is not None else 0.0 for v, lo, _ in parts],
                    [hi - v if hi is not None else 0.0 for v, _, hi in parts]])
    banner_h = banners_height(clip_trained, synthetic)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(names) + 1.5), 4.0 + banner_h + 0.5 * (len(names) > 4)))
    colors = [plt.cm.tab10(i % 10) for i in range(len(names))]
    ax.bar(range(len(names)), values, yerr=err, capsize=5, color=colors, alpha=0.85, edgecolor="black", lw=0.6)
    for i, v in enumerate(values):
        ax.text(i, min(v + err[1, i] + 0.02, 1.02), f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    if chance is not None:
        ax.axhline(chance, color="black", ls=":", lw=1.2, label=f"chance {chance:.2f} (largest class of the test events)")
        if chance_upper95 is not None:
            ax.axhspan(chance, chance_upper95, color="0.6", alpha=0.3,
                       label=f"chance, upper 95% ({chance_upper95:.3f})")
    rotated = len(names) > 4
    ax.set_xticks(range(len(names)), names, rotation=15 if rotated else 0)
    if chance is not None:  # below the axes and their (rotated) labels, where it cannot hide a bar or a label
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3 if rotated else -0.1), ncol=2,
                  frameon=False)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return finish_figure(fig, filename, out_dir, clip_trained=clip_trained, synthetic=synthetic)


def prediction_histogram_figure(histograms, *, clip_trained: bool, synthetic: bool, true_counts=None,
                                title: str = "how often each digit is predicted", out_dir=None,
                                filename: str = "prediction_histogram.png") -> tuple[Figure, Path]:
    """Grouped bars of prediction counts per digit: one array of counts, or ``name -> counts``.

    ``true_counts`` (how often each digit really occurs) is drawn as black steps: a generator that
    always draws one digit shows a single tall bar far above them.
    """
    if not isinstance(histograms, Mapping):
        histograms = {"predictions": histograms}
    if not histograms:
        raise ValueError("no histograms to plot")
    hs = {k: np.asarray(v) for k, v in histograms.items()}
    c = len(next(iter(hs.values())))
    for k, v in hs.items():
        if v.ndim != 1 or len(v) != c or (v < 0).any():
            raise ValueError(f"histogram {k!r} must be {c} non-negative counts; got {v!r}")
    banner_h = banners_height(clip_trained, synthetic)
    fig, ax = plt.subplots(figsize=(7.0, 3.6 + banner_h))
    width = 0.8 / len(hs)
    for i, (name, v) in enumerate(hs.items()):
        ax.bar(np.arange(c) - 0.4 + width * (i + 0.5), v, width=width, label=name, color=plt.cm.tab10(i % 10))
    if true_counts is not None:
        tc = np.asarray(true_counts)
        if tc.shape != (c,):
            raise ValueError(f"true_counts must have {c} entries; got shape {tc.shape}")
        ax.step(np.arange(c + 1) - 0.5, np.append(tc, tc[-1]), where="post", color="black", lw=1.2,
                label="true labels")
    ax.set_xticks(range(c))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("test events")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return finish_figure(fig, filename, out_dir, clip_trained=clip_trained, synthetic=synthetic)
