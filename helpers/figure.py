"""One way to make a figure for notebooks, widgets and saved PNGs, and to label it honestly.

* :func:`new_figure` - a figure outside pyplot, for notebooks and widgets;
* the banners: a figure made with an untrained CLIP carries a red one, a figure made from synthetic data an orange
  one, in the image itself, so that a PNG shared alone still tells the truth (:func:`banner_texts` reads them);
* :func:`finish_figure` - lays a figure out below its banners, adds them and saves the PNG (every figure of
  helpers.viz and helpers.curves ends with it).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from helpers.config import UNTRAINED_CLIP_NOTE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

UNTRAINED_TEXT = UNTRAINED_CLIP_NOTE
SYNTHETIC_TEXT = "SYNTHETIC DATA: not a recording of a brain"
BANNER_INCHES = 0.32  # height reserved at the top of a figure per banner


def new_figure(width: float, height: float):
    """A ``matplotlib.figure.Figure`` outside pyplot, laid out "constrained": a notebook cell or an Output widget
    shows it once (pyplot would show it a second time at the end of the cell), and it is freed with its last
    reference (no ``plt.close``)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


# ----------------------------------------------------------------------------------------------
# Banners and saving
# ----------------------------------------------------------------------------------------------

def _banner(fig: Figure, text: str, color: str, slot: int) -> None:
    w_in, h_in = fig.get_size_inches()
    h = BANNER_INCHES / h_in
    # Bold 10 pt DejaVu is about 0.085 inch per character: shrink the font on narrow figures.
    size = min(10.0, 10.0 * 0.92 * w_in / (0.085 * len(text)))
    fig.text(0.5, 1.0 - (slot + 0.5) * h, text, ha="center", va="center", fontsize=size, fontweight="bold",
             color="white", bbox=dict(boxstyle="round,pad=0.3", facecolor=color, edgecolor="none"),
             gid="banner")


def untrained_banner(fig: Figure, slot: int = 0) -> Figure:
    """Write the untrained-CLIP warning across the top of ``fig`` (call after layout)."""
    _banner(fig, UNTRAINED_TEXT, "#c62828", slot)
    return fig


def synthetic_banner(fig: Figure, slot: int = 0) -> Figure:
    """Write the synthetic-data warning across the top of ``fig`` (call after layout)."""
    _banner(fig, SYNTHETIC_TEXT, "#e65100", slot)
    return fig


def banner_texts(fig: Figure) -> list[str]:
    """The banner texts on a figure (for tests and for checks before a figure ships)."""
    return [t.get_text() for t in fig.texts if t.get_gid() == "banner"]


def banners_height(clip_trained: bool, synthetic: bool) -> float:
    """Inches the banners of a figure made this way take at its top (a figure adds them to its height)."""
    return (int(not clip_trained) + int(bool(synthetic))) * BANNER_INCHES


def top_fraction(fig: Figure, clip_trained: bool, synthetic: bool) -> float:
    """The figure fraction left for content below the banners."""
    return 1.0 - banners_height(clip_trained, synthetic) / fig.get_size_inches()[1]


def finish_figure(fig: Figure, name: str, out_dir, *, clip_trained: bool, synthetic: bool,
                  layout: bool = True, dpi: int = 110) -> tuple[Figure, Path]:
    """Lay out below the banners, add them, save the PNG ``out_dir/name`` (default folder ``results/figures``),
    return ``(fig, path)``."""
    if not isinstance(clip_trained, bool) or not isinstance(synthetic, bool):
        raise TypeError("clip_trained and synthetic must be True or False")
    if layout:
        fig.tight_layout(rect=(0, 0, 1, top_fraction(fig, clip_trained, synthetic)))
    slot = 0
    if not clip_trained:
        untrained_banner(fig, slot)
        slot += 1
    if synthetic:
        synthetic_banner(fig, slot)
    if out_dir is None:
        from helpers.config import results_dir

        out_dir = results_dir() / "figures"
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor="white")
    return fig, path
