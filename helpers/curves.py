"""Loss curves from a Trainer's history, all drawn by one function, :func:`draw_series`.

A history is the trainer's list of per-epoch rows (``epoch``, ``train_<term>``, ``val_<term>``, ...); a term left
out of the loss is logged as NaN and is never drawn. The two loss-curve figures are both made of
:func:`draw_series`:

* :func:`training_curves` - the run's ``training_curves.png``: one panel per loss term, training solid and
  validation dashed, and a validation panel against chance (re-exported by helpers.viz);
* :func:`render_loss_curves` - notebook 04's explorer: every term on one panel, weighted as it enters the total,
  earlier runs overlaid, the validation numbers beside them (re-exported by helpers.widgets).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from helpers.figure import banners_height, finish_figure, new_figure, top_fraction

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The order of the panels of training_curves (any other term follows).
_TERM_ORDER = ("total", "adv", "rec", "kl", "clip", "cls", "disc")
_NOT_CURVES = ("epoch", "seconds")  # bookkeeping in a Trainer's history, not loss terms
# The explorer's loss terms, with the label each gets.
CURVE_TERMS: dict[str, str] = {
    "train_total": "total (weighted)",
    "train_adv": "adversarial",
    "train_rec": "L1 reconstruction",
    "train_kl": "KL",
    "train_clip": "semantic 1 - cos",
    "train_cls": "label cross-entropy",
    "train_disc": "discriminator",
}
VAL_TERMS: dict[str, str] = {"val_clip": "val semantic 1 - cos", "val_semantic_top1": "val semantic top-1",
                             "val_label_head_top1": "val label-head top-1",
                             "val_judge_top1": "val judge top-1 (independent)"}


# ----------------------------------------------------------------------------------------------
# Series, the one drawing function, the epoch axis
# ----------------------------------------------------------------------------------------------

def is_number(v) -> bool:
    """A real number (numpy's included), not a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def term(key: str) -> str:
    """The loss term a history key is about: ``train_rec`` and ``rec`` are both ``rec``."""
    return key[len("train_"):] if key.startswith("train_") else key


def series(history: Sequence[Mapping], key: str) -> np.ndarray:
    """``key``'s value in each row as floats, NaN where a row lacks it or holds no number."""
    return np.array([float(row[key]) if is_number(row.get(key)) else np.nan for row in history])


def history_epochs(history: Sequence[Mapping]) -> list:
    """Each row's ``epoch``, else its position counted from 1."""
    return [row.get("epoch", i + 1) for i, row in enumerate(history)]


def draw_series(ax, history: Sequence[Mapping], keys, *, labels: Mapping[str, str] | None = None,
                weights: Mapping[str, float] | None = None, epochs=None, **style) -> list[str]:
    """Draw the series ``keys`` of ``history`` on ``ax`` against the epochs; return the keys drawn.

    A series without a finite value (a term left out of the loss) is not drawn. ``labels``: key -> legend label
    (default: the key). ``weights`` (``lambda_<term>`` -> weight): a term with a weight is drawn as it enters the
    total, ``weight x value``, labelled ``"<weight> x <label>"``, and not at all when its weight is 0 (terms
    without one, such as the total and the discriminator's loss, stay as they are). ``epochs``: the x values
    (default :func:`history_epochs`). ``style`` goes to ``ax.plot`` (default marker ``o``).
    """
    xs = history_epochs(history) if epochs is None else epochs
    drawn = []
    for key in keys:
        ys, label = series(history, key), (labels or {}).get(key, key)
        lam = None if weights is None else weights.get(f"lambda_{term(key)}")
        if lam == 0:  # left out of the total (the trainer logs it as NaN)
            continue
        if lam is not None:
            ys, label = lam * ys, f"{lam:g} x {label}"
        if np.isfinite(ys).any():
            ax.plot(xs, ys, label=label, **{"marker": "o", **style})
            drawn.append(key)
    return drawn


def epoch_axis(ax, epochs) -> None:
    """Whole epochs on the x axis, spanning the run's epochs: every panel of a run gets the same axis (a term
    that starts later, such as adv and disc after a warm-up, shows the gap), and one epoch is one tick, not a
    0.95-1.05 range with fractional ticks."""
    from matplotlib.ticker import MaxNLocator

    epochs = np.asarray(epochs, dtype=float)
    pad = max(0.3, 0.04 * (epochs.max() - epochs.min()))
    ax.set_xlim(epochs.min() - pad, epochs.max() + pad)
    if epochs.min() == epochs.max():
        ax.set_xticks([epochs.min()])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


# ----------------------------------------------------------------------------------------------
# The run's training curves (a PNG with its banners)
# ----------------------------------------------------------------------------------------------

def training_curves(history: Sequence[Mapping], *, clip_trained: bool, synthetic: bool, out_dir=None,
                    filename: str = "training_curves.png", title: str = "training",
                    chance: tuple[float, float] | None = None) -> tuple[Figure, Path]:
    """One panel per loss term (``total``, ``adv``, ``rec``, ``kl``, ``clip``, ``cls``, ``disc``, then any
    other): training solid, ``val_<term>`` dashed. Keys may carry a ``train_`` prefix (a Trainer's history);
    ``seconds`` and terms that are NaN in every epoch (left out of the loss) are not drawn. Validation-only
    series (e.g. ``val_semantic_top1``) share a last panel, with the chance levels of top-1 and top-3 when they
    are accuracies: ``chance`` = (top-1, top-3) of the validation events' class mix
    (:func:`helpers.stats.chance_level`), else the uniform 0.1 and 0.3, labelled as such.
    """
    import matplotlib.pyplot as plt

    if not history:
        raise ValueError("history is empty: nothing to plot")
    if any("epoch" not in h for h in history):
        raise ValueError("every history entry needs an 'epoch'")
    epochs = np.array([h["epoch"] for h in history], dtype=float)

    keys: list[str] = []
    for h in history:
        keys += [k for k, v in h.items() if k not in _NOT_CURVES and k not in keys and is_number(v)]
    keys = [k for k in keys if not np.isnan(series(history, k)).all()]
    train = [k for k in keys if not k.startswith("val_")]
    order = {t: i for i, t in enumerate(_TERM_ORDER)}
    train.sort(key=lambda k: (order.get(term(k), len(order)), keys.index(k)))
    val_only = [k for k in keys if k.startswith("val_") and k[4:] not in {term(t) for t in train}]
    panels = [[k] for k in train] + ([val_only] if val_only else [])
    if not panels:
        raise ValueError("history has no numeric series besides 'epoch'")
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=(4.2 * ncols, 2.9 * nrows + 0.4 + banners_height(clip_trained, synthetic)))
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes.ravel(), panels):
        epoch_axis(ax, epochs)
        if panel is val_only:
            draw_series(ax, history, panel, labels={k: k[4:] for k in panel}, epochs=epochs, ms=3)
            if all("top" in k for k in panel):
                levels = chance or (0.1, 0.3)
                for k, lvl in zip((1, 3), levels):
                    if any(f"top{k}" in key for key in panel):
                        name = f"chance top-{k}" + ("" if chance else " (uniform)")
                        ax.axhline(lvl, color="0.5", ls=":", lw=1, label=name)
                ax.set_ylim(0, 1)
            ax.set_title("validation", fontsize=10)
        else:
            key, val = panel[0], f"val_{term(panel[0])}"
            draw_series(ax, history, [key], labels={key: "train"}, epochs=epochs, ms=3)
            draw_series(ax, history, [val], labels={val: "validation"}, epochs=epochs, marker="s", ms=3, ls="--")
            ax.set_title(term(key), fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11, y=top_fraction(fig, clip_trained, synthetic) - 0.005, va="top")
    fig.tight_layout(rect=(0, 0, 1, top_fraction(fig, clip_trained, synthetic)))  # leaves room for suptitle
    return finish_figure(fig, filename, out_dir, clip_trained=clip_trained, synthetic=synthetic, layout=False)


# ----------------------------------------------------------------------------------------------
# The explorer's curves (notebook 04)
# ----------------------------------------------------------------------------------------------

def render_loss_curves(history: list[dict], title: str = "", weights: Mapping[str, float] | None = None,
                       chance: float | None = None, earlier: Sequence[tuple[str, list[dict]]] = ()) -> Figure:
    """Loss terms per epoch (left) and the validation semantic numbers (right) from ``Trainer.history``.

    Terms left out of training (weight 0) are logged as NaN by the trainer and are not drawn. With ``weights``
    (``lambda_<term>`` -> weight) each term is drawn *weighted*, as it enters the total: what a slider changes is
    then visible as the height of its curve (the discriminator's own loss stays as it is). ``chance``: top-1 of a
    label-blind guess on the validation events' class mix (default: the uniform 0.1, marked as such).
    ``earlier``: ``(label, history)`` of earlier runs, drawn thin and grey (their weighted total, and their judge
    top-1, or semantic top-1 without a judge) so that a run can be compared with the ones before it.
    """
    fig = new_figure(8.0, 3.2)
    ax_loss, ax_val = fig.subplots(1, 2)
    epochs = history_epochs(history)
    ticks = list(epochs)  # with earlier runs: every epoch any run reached
    drawn = draw_series(ax_loss, history, CURVE_TERMS, labels=CURVE_TERMS, weights=weights, epochs=epochs)
    for i, (name, rows) in enumerate(earlier):
        xs = history_epochs(rows)
        style = {"marker": None, "color": "grey", "lw": 1, "alpha": 0.8 - 0.15 * i,
                 "ls": ("--", ":", "-.", (0, (1, 3)))[i % 4]}
        draw_series(ax_loss, rows, ["train_total"], labels={"train_total": f"{name}: total"}, epochs=xs, **style)
        key = "val_judge_top1" if any("val_judge_top1" in row for row in rows) else "val_semantic_top1"
        draw_series(ax_val, rows, [key], labels={key: f"{name}: {VAL_TERMS[key]}"}, epochs=xs, **style)
        ticks = sorted(set(ticks) | set(xs))
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("weighted loss (training mean)" if weights is not None else "loss (training mean)")
    ax_loss.set_yscale("symlog", linthresh=0.1)
    if drawn or earlier:
        ax_loss.legend(fontsize=7)
    else:
        ax_loss.text(0.5, 0.5, "no epochs yet", ha="center", va="center", transform=ax_loss.transAxes)
    draw_series(ax_val, history, VAL_TERMS, labels=VAL_TERMS, epochs=epochs)
    if chance is None:
        ax_val.axhline(0.1, color="grey", ls="--", lw=1, label="chance top-1 (0.1)")
    else:
        ax_val.axhline(chance, color="grey", ls="--", lw=1, label=f"chance top-1 ({chance:.2f}, class mix)")
    ax_val.set_xlabel("epoch")
    ax_val.set_ylim(-0.02, max(1.05, ax_val.get_ylim()[1]))
    ax_val.legend(fontsize=7)
    if ticks:
        for ax in (ax_loss, ax_val):
            epoch_axis(ax, ticks)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
