"""The figures of notebooks 02-05 that are not data exploration: one channel after each preprocessing step,
peak-to-peak amplitudes, PCA explained variance, accuracy bars against chance, the CLIP cosine matrix, the
lambda_clip comparison; and the list of a run's saved figures.

Figures are ``matplotlib.figure.Figure`` objects; the notebooks call these as ``ns.<name>`` through
:mod:`helpers.notebook_support`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from helpers.config import UNTRAINED_CLIP_NOTE
from helpers.figure import new_figure


# ------------------------------------------------------------------------------------------- notebook 02

def plot_signal_steps(steps: Mapping[str, np.ndarray], sfreq: Mapping[str, float] | float, channel: int = 0,
                      channel_name: str = "", event_label: str = ""):
    """One channel of one event after each step (``steps``: name -> [channels, time] array of that event).

    ``sfreq``: one rate for all steps, or a rate per step name (decimation changes it).
    """
    names = list(steps)
    fig = new_figure(9, 1.5 * len(names) + 0.6)
    axes = np.atleast_1d(fig.subplots(len(names), 1, sharex=True))
    for ax, name in zip(axes, names):
        y = np.asarray(steps[name])[channel]
        rate = float(sfreq[name] if isinstance(sfreq, Mapping) else sfreq)
        t = np.arange(y.shape[-1]) / rate
        ax.plot(t, y, lw=0.9, marker="." if y.shape[-1] <= 160 else None, ms=2)
        ax.set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
        ax.tick_params(labelsize=7)
        ax.text(1.0, 1.0, f"{y.shape[-1]} samples, mean {np.mean(y):.3g}, sd {np.std(y):.3g}",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="grey")
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(f"channel {channel_name or channel} of {event_label or 'one event'}, step by step", fontsize=9)
    return fig


def plot_ptp(ptp_uv: np.ndarray, threshold_uv: float | None):
    """Histogram of each event's largest channel peak-to-peak amplitude, with the rejection threshold."""
    ptp = np.asarray(ptp_uv, dtype=np.float64)
    fig = new_figure(7, 2.8)
    ax = fig.subplots()
    ax.hist(ptp, bins=np.logspace(np.log10(ptp.min()), np.log10(ptp.max()), 50), color="C0")
    ax.set_xscale("log")
    if threshold_uv is not None:
        n_bad = int((ptp > threshold_uv).sum())
        ax.axvline(threshold_uv, color="C3", ls="--", label=f"threshold {threshold_uv:.0f} uV: {n_bad} of "
                                                            f"{len(ptp)} events rejected")
        ax.legend(fontsize=8)
    ax.set_xlabel("largest channel peak-to-peak after band-pass (uV, log scale)")
    ax.set_ylabel("events")
    return fig


def plot_explained_variance(pipe: Any, marks: Sequence[int] = (32, 64, 128, 264, 512)):
    """Cumulative explained variance of the fitted PCA, with the chosen feature_dim marked."""
    ratio = np.asarray(pipe.explained_variance_ratio_)
    cum = np.cumsum(ratio)
    k = len(ratio)
    fig = new_figure(8, 3.4)
    ax = fig.subplots()
    ax.plot(np.arange(1, k + 1), cum, lw=2)
    ax.set_xlabel("number of PCA components kept")
    ax.set_ylabel("fraction of training variance")
    ax.set_ylim(0, 1.02)
    ax.axvline(k, color="C3", ls="--", lw=1)
    ax.text(k, 0.05, f" feature_dim={k}: {cum[-1]:.1%}", color="C3", fontsize=8)
    for m in marks:
        if m < k:
            ax.plot([m], [cum[m - 1]], "o", color="grey", ms=4)
            ax.text(m, cum[m - 1] - 0.06, f"{m}: {cum[m - 1]:.0%}", fontsize=7, ha="center", color="grey")
    ax.set_title(f"{pipe.n_input_dims} standardised inputs ({pipe.n_channels_} channels x "
                 f"{pipe.config.n_times_decimated} samples) -> {k} components", fontsize=9)
    return fig


def plot_accuracies(named: Mapping[str, Any], title: str = "", chance: float | None = None,
                    oracle: float | None = None):
    """Bars of top-1 accuracies (helpers.stats.Accuracy) with 95 % intervals, chance and its upper bound.

    ``chance`` defaults to the largest of the accuracies' own chance levels (their test events' class mix)."""
    names = list(named)
    acc = [named[n] for n in names]
    chance = max(a.chance for a in acc) if chance is None else chance
    vals = np.array([a.value for a in acc])
    err = np.array([[a.value - a.ci95_low for a in acc], [a.ci95_high - a.value for a in acc]])
    fig = new_figure(max(6.5, 1.6 * len(names) + 2.5), 3.4)
    ax = fig.subplots()
    colours = ["C3" if "random" in n.lower() else "C0" for n in names]
    ax.bar(range(len(names)), vals, yerr=err, capsize=4, color=colours)
    ax.axhline(chance, color="k", ls="--", lw=1, label=f"chance {chance:.2f}")
    upper = max(a.chance_upper95 for a in acc)
    ax.axhspan(0, upper, color="grey", alpha=0.15, label=f"within chance (upper 95% {upper:.2f})")
    if oracle is not None:
        ax.axhline(oracle, color="C2", ls=":", lw=1.5, label=f"oracle (Bayes) {oracle:.2f}")
    for i, v in enumerate(vals):
        ax.text(i + 0.06, v + 0.01, f"{v:.2f}", ha="left", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel("top-1 accuracy on held-out data")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, loc="upper right")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


# ------------------------------------------------------------------------------------------- notebook 03

def plot_cosine_matrix(matrix, trained: bool, title: str = "CLIP cosine similarity of the 10 stimuli"):
    """The 10 x 10 cosine matrix of the stimulus embeddings, labelled loudly when the CLIP is untrained."""
    m = np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix, dtype=np.float64)
    fig = new_figure(5.6, 5.0)
    ax = fig.subplots()
    off = m[~np.eye(len(m), dtype=bool)]
    im = ax.imshow(m, cmap="magma", vmin=float(off.min()), vmax=1.0)
    for i in range(len(m)):
        for j in range(len(m)):
            ax.text(j, i, f"{m[i, j]:.3f}", ha="center", va="center", fontsize=5,
                    color="black" if m[i, j] > (off.min() + 1) / 2 else "white")
    ax.set_xticks(range(len(m)))
    ax.set_yticks(range(len(m)))
    ax.set_xlabel("stimulus digit")
    ax.set_ylabel("stimulus digit")
    fig.colorbar(im, ax=ax, shrink=0.8)
    note = "" if trained else f"\n{UNTRAINED_CLIP_NOTE}"
    ax.set_title(title + note, fontsize=9, color="black" if trained else "#b00000")
    return fig


# ------------------------------------------------------------------------------------------- notebooks 04-05

def plot_comparison(histories: Mapping[float, list[dict]], trained_clip: bool = True):
    """val_clip and val_semantic_top1 per epoch for each lambda_clip run."""
    fig = new_figure(9, 3.2)
    ax_c, ax_t = fig.subplots(1, 2)
    for v, hist in histories.items():
        ep = [r["epoch"] for r in hist]
        ax_c.plot(ep, [r.get("val_clip", np.nan) for r in hist], marker="o", label=f"lambda_clip = {v:g}")
        ax_t.plot(ep, [r.get("val_semantic_top1", np.nan) for r in hist], marker="o", label=f"lambda_clip = {v:g}")
    ax_c.set_title("validation semantic loss 1 - cos (lower = closer to the stimulus)", fontsize=8)
    ax_t.set_title("validation semantic top-1", fontsize=8)
    ax_t.axhline(0.1, color="grey", ls="--", lw=1, label="uniform chance 0.1")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_c, ax_t):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    if not trained_clip:
        fig.suptitle(UNTRAINED_CLIP_NOTE, color="#b00000", fontsize=9)
    return fig


def list_figures(folder: str | Path) -> list[Path]:
    """PNG files in ``folder`` (sorted), e.g. the evaluation's figures."""
    folder = Path(folder)
    return sorted(folder.glob("*.png")) if folder.is_dir() else []
