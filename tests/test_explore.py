"""Notebook 01's data exploration (helpers.explore): raw lines, code counts, spectra, one event, the electrode layout."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from helpers import explore


def test_raw_lines_skip_blanks_and_shorten_the_data_column(tmp_path):
    p = tmp_path / "f.txt"
    values = ",".join(str(v) for v in range(10))
    p.write_text(f"\n1\t1\tEP\tAF3\t6\t10\t{values}\r\n2\t1\tEP\tF7\t6\t10\t{values}\n3\t1\tEP\tF3\t6\t10\t{values}\n")
    lines = explore.raw_lines(p, n=2, max_values=3)
    assert lines == ["1\t1\tEP\tAF3\t6\t10\t0,1,2,... (7 more)", "2\t1\tEP\tF7\t6\t10\t0,1,2,... (7 more)"]
    assert explore.format_raw_lines(lines).splitlines()[0].startswith("[id]\t[event]")


def test_code_counts_table_names_the_random_code():
    report = types.SimpleNamespace(to_dict=lambda: {"codes": {"-1": 3, "0": 5, "1": 2}})
    df = explore.code_counts_table(report)
    assert df["code"].tolist() == [-1, 0, 1] and df["meaning"][0] == "random (no digit)"
    assert df["events"].sum() == 10 and df["share"].tolist() == [0.3, 0.5, 0.2]


def _events(n=4, c=14, t=256, sfreq=128.0, f0=10.0):
    time = np.arange(t) / sfreq
    sig = 4000 + 20 * np.sin(2 * np.pi * f0 * time)[None, None, :] + np.zeros((n, c, t))
    return types.SimpleNamespace(signals=sig.astype(np.float32), sizes=np.full(n, t), codes=np.arange(n),
                                 event_ids=np.arange(n) + 100, channels=tuple(explore.EPOC_POSITIONS), sfreq=sfreq)


def test_power_spectra_peak_at_the_frequency_of_a_sine():
    f, psd = explore.power_spectra(_events(f0=10.0), n_events=3)
    assert psd.shape == (14, len(f))
    assert np.all(np.abs(f[psd.argmax(axis=1)] - 10.0) <= 1.0)
    fig = explore.plot_power_spectra(f, psd, list(explore.EPOC_POSITIONS))
    assert len(fig.axes[0].get_lines()) == 14


def test_plot_event_stacks_every_channel():
    fig = explore.plot_event(_events(), 1)
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 14 and [t.get_text() for t in ax.get_yticklabels()] == list(explore.EPOC_POSITIONS)
    assert "event 101: code 1" in ax.get_title()


def test_electrode_layout_is_left_right_symmetric_and_inside_the_head():
    pos = explore.EPOC_POSITIONS
    assert len(pos) == 14
    for name, (x, y) in pos.items():
        assert x * x + y * y <= 1.001
        if name[-1].isdigit():
            num = int("".join(ch for ch in name if ch.isdigit()))
            mirror = name.rstrip("0123456789") + str(num + 1 if num % 2 else num - 1)
            assert pos[mirror] == pytest.approx((-x, y)), name
            assert (x < 0) == (num % 2 == 1), f"{name}: odd numbers are on the left"
    fig = explore.plot_electrode_layout()
    names = {t.get_text() for t in fig.axes[0].texts}
    assert set(pos) <= names
    with pytest.raises(ValueError, match="Cz"):
        explore.plot_electrode_layout(["AF3", "Cz"])



def test_electrode_positions_come_from_mne_and_agree_with_the_textbook():
    pytest.importorskip("mne")
    assert explore._mne_positions() == explore.EPOC_POSITIONS
    assert list(explore.EPOC_POSITIONS) == list(explore._TEXTBOOK_POSITIONS)
    for name, (x, y) in explore.EPOC_POSITIONS.items():
        assert (x, y) == pytest.approx(explore._TEXTBOOK_POSITIONS[name], abs=0.04), name
    # T7/T8 lie on the head circle, Cz (the vertex) in its centre, Fpz at the front.
    assert explore.EPOC_POSITIONS["T8"] == pytest.approx((1.0, 0.0), abs=1e-3)
    assert explore._mne_positions(["Cz", "Fpz"]) == {"Cz": pytest.approx((0.0, 0.0), abs=1e-3),
                                                   "Fpz": pytest.approx((0.0, 1.0), abs=1e-3)}


def test_electrode_positions_without_mne_are_the_textbook_ones(monkeypatch):
    monkeypatch.setitem(sys.modules, "mne", None)  # import mne now raises ImportError
    assert explore._mne_positions() is None
