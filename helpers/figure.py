"""One way to make a figure for notebooks, widgets and saved PNGs."""
from __future__ import annotations


def new_figure(width: float, height: float):
    """A ``matplotlib.figure.Figure`` outside pyplot, laid out "constrained": a notebook cell or an Output widget
    shows it once (pyplot would show it a second time at the end of the cell), and it is freed with its last
    reference (no ``plt.close``)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")
