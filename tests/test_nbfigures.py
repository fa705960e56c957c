"""The figures of notebooks 02-05 (helpers.nbfigures)."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import nbfigures


def test_plot_signal_steps_uses_each_steps_own_rate():
    steps = {"raw": np.zeros((14, 256)), "decimated": np.zeros((14, 128))}
    fig = nbfigures.plot_signal_steps(steps, {"raw": 128.0, "decimated": 64.0}, channel=3, channel_name="FC5")
    ends = [ax.get_lines()[0].get_xdata()[-1] for ax in fig.axes]
    assert ends == pytest.approx([255 / 128, 127 / 64])


def test_cosine_matrix_plot_is_labelled_untrained():
    fig = nbfigures.plot_cosine_matrix(np.eye(10) * 0.5 + 0.5, trained=False)
    assert "UNTRAINED CLIP" in fig.axes[0].get_title()
    assert "UNTRAINED" not in nbfigures.plot_cosine_matrix(np.eye(10) * 0.5 + 0.5, trained=True).axes[0].get_title()
