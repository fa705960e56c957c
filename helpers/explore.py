"""Data exploration for notebook 01: the raw text lines, events per code, one event, event sizes, drift over the
recording, power spectra and band power, and the EPOC electrode layout on a head.

``EPOC_POSITIONS`` (2-D positions of the 14 EPOC channels) come from MNE's spherical 10-05 montage when MNE is
installed (it comes with braindecode), else from the textbook values written here. Figures are
``matplotlib.figure.Figure`` objects; the notebooks call all of this as ``ns.<name>`` through
:mod:`helpers.notebook_support`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from helpers.figure import new_figure

# The 14 EPOC channels in the order of the device's files (docs/DESIGN.md#data-format).
_EPOC_CHANNELS = ("AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4")

# Textbook 2-D positions (x: left -> right, y: back -> front; the head circle has radius 1) of the EPOC channels in
# the international 10-20 / 10-10 system, azimuthal projection as in topographic maps. Used when MNE is missing.
_TEXTBOOK_POSITIONS: dict[str, tuple[float, float]] = {
    "AF3": (-0.31, 0.76), "F7": (-0.809, 0.588), "F3": (-0.42, 0.52), "FC5": (-0.75, 0.28),
    "T7": (-1.00, 0.00), "P7": (-0.809, -0.588), "O1": (-0.309, -0.951), "O2": (0.309, -0.951),
    "P8": (0.809, -0.588), "T8": (1.00, 0.00), "FC6": (0.75, 0.28), "F4": (0.42, 0.52),
    "F8": (0.809, 0.588), "AF4": (0.31, 0.76),
}


def _mne_positions(channels: Sequence[str] = _EPOC_CHANNELS) -> dict[str, tuple[float, float]] | None:
    """2-D positions of ``channels`` from MNE's spherical 10-05 montage, rounded to 3 decimals; None without MNE.

    The projection of MNE's topomaps (azimuthal equidistant about the vertex Cz: a channel's distance from the
    centre is its angle from Cz, its direction its azimuth), scaled so that the Fpz-T7-Oz ring (72 degrees from
    Cz) is the unit circle, the head outline that :func:`plot_electrode_layout` draws (as EEGLAB draws it).
    """
    # "spherical_1005", not the 10-20 montage of a scanned head ("standard_1020", renamed "colin27_1020" in
    # MNE 1.13): that head is not symmetric and not a sphere, so F7/F8 land outside the outline; the idealised
    # sphere is what a schematic needs, and its 10-05 list is the one that holds all 14 EPOC names.
    try:
        import mne

        pos = mne.channels.make_standard_montage("spherical_1005").get_positions()["ch_pos"]
        xyz = np.array([pos[c] for c in channels], dtype=np.float64)
        ring = float(np.arccos(pos["T7"][2] / np.linalg.norm(pos["T7"])))
    except Exception:  # no MNE, or an MNE without this montage or these names: the textbook positions
        return None
    radius = np.arccos(np.clip(xyz[:, 2] / np.linalg.norm(xyz, axis=1), -1.0, 1.0)) / ring
    azimuth = np.arctan2(xyz[:, 1], xyz[:, 0])
    return {c: (round(float(r * np.cos(a)), 3), round(float(r * np.sin(a)), 3))
            for c, r, a in zip(channels, radius, azimuth)}


EPOC_POSITIONS: dict[str, tuple[float, float]] = _mne_positions() or dict(_TEXTBOOK_POSITIONS)
# Reference electrodes of the EPOC (CMS/DRL) sit behind the ears / at P3-P4 depending on the model.
EPOC_REFERENCES: dict[str, tuple[float, float]] = {"CMS": (-0.45, -0.45), "DRL": (0.45, -0.45)}


def raw_lines(path: str | Path, n: int = 3, max_values: int = 6, max_chars: int = 240) -> list[str]:
    """The first ``n`` non-blank lines of a MindBigData file (inside its zip, for the zip), the data column cut to
    ``max_values`` values; any other long line (e.g. a CSV header) cut to ``max_chars`` characters."""
    from helpers.readers import open_stream

    out = []
    with open_stream(path) as (fh, _, _):
        for raw in fh:
            line = raw.decode("utf-8-sig", errors="replace").rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) >= 7:
                values = parts[6].split(",")
                more = len(values) - max_values
                parts[6] = ",".join(values[:max_values]) + (f",... ({more} more)" if more > 0 else "")
            line = "\t".join(parts)
            out.append(line if len(line) <= max_chars else f"{line[:max_chars]}... ({len(line) - max_chars} more "
                                                               f"characters)")
            if len(out) >= n:
                break
    return out


def format_raw_lines(lines: Sequence[str]) -> str:
    """Raw lines with the seven fields named, for printing."""
    header = "[id]\t[event]\t[device]\t[channel]\t[code]\t[size]\t[data]"
    return "\n".join([header, *lines])


def code_counts_table(report: Any):
    """Events per code (-1 = random capture, 0-9 = digits) from a ParseReport, as a DataFrame."""
    import pandas as pd

    codes = report.to_dict()["codes"] if hasattr(report, "to_dict") else dict(report["codes"])
    rows = [{"code": int(k), "meaning": "random (no digit)" if int(k) == -1 else f"digit {k}", "events": int(v)}
            for k, v in codes.items()]
    df = pd.DataFrame(rows).sort_values("code").reset_index(drop=True)
    df["share"] = (df["events"] / df["events"].sum()).round(3)
    return df


def plot_event(events: Any, index: int = 0, spacing_uv: float | None = None):
    """One event's channels stacked (each demeaned, offset for display), with its code and size."""
    signals = np.asarray(events.signals[index], dtype=np.float64)
    size = int(events.sizes[index])
    x = signals[:, :size]
    x = x - x.mean(axis=1, keepdims=True)
    channels = list(events.channels)
    t = np.arange(size) / float(events.sfreq)
    spacing = spacing_uv or max(float(np.percentile(np.ptp(x, axis=1), 75)), 1.0)
    fig = new_figure(9, 0.4 * len(channels) + 1.2)
    ax = fig.subplots()
    for i in range(len(channels)):
        ax.plot(t, x[i] - i * spacing, lw=0.8)
    ax.set_yticks([-i * spacing for i in range(len(channels))], channels)
    ax.set_xlabel("time after stimulus onset (s)")
    ax.set_title(f"event {int(events.event_ids[index])}: code {int(events.codes[index])}, {size} samples at "
                 f"{events.sfreq:g} Hz (each channel demeaned; offsets {spacing:.0f} uV apart)", fontsize=9)
    ax.set_xlim(0, t[-1] if size > 1 else 1)
    return fig


def plot_sizes(sizes: np.ndarray, sfreq: float):
    """Histogram of the number of samples per event (about 2 s at 128 Hz; it varies)."""
    sizes = np.asarray(sizes)
    fig = new_figure(6, 2.8)
    ax = fig.subplots()
    ax.hist(sizes, bins=np.arange(sizes.min() - 0.5, sizes.max() + 1.5), color="C0")
    ax.axvline(2 * sfreq, color="C3", ls="--", lw=1, label=f"2 s = {2 * sfreq:g} samples")
    ax.set_xlabel("samples per event")
    ax.set_ylabel("events")
    ax.set_title(f"{len(sizes)} events: {sizes.min()}-{sizes.max()} samples (median {np.median(sizes):g})",
                 fontsize=9)
    ax.legend(fontsize=8)
    return fig


def plot_drift(events: Any, channels: Sequence[str] = ("AF3", "O1", "T8")):
    """Each event's mean value (the DC offset) of a few channels against its position in time (file order).

    Slow changes over the recording are what a random split leaks: neighbouring events look alike.
    """
    names = list(events.channels)
    order = np.argsort(np.asarray(events.event_ids), kind="stable")
    fig = new_figure(9, 3)
    ax = fig.subplots()
    for name in channels:
        if name not in names:
            continue
        c = names.index(name)
        dc = np.array([events.signals[i, c, :int(events.sizes[i])].mean() for i in order])
        line, = ax.plot(np.arange(len(order)), dc, lw=0.5, alpha=0.6)
        w = max(1, min(50, len(dc) // 10))
        run = np.convolve(dc, np.ones(w) / w, mode="valid")
        ax.plot(np.arange(len(run)) + (w - 1) / 2, run, lw=2, color=line.get_color(), label=f"{name} (running mean of {w})")
    ax.set_xlabel("event number in recording order")
    ax.set_ylabel("mean of the event (uV)")
    ax.set_title("each event's mean value (its DC offset) in recording order", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def band_power(freqs: np.ndarray, psd: np.ndarray, low: float, high: float) -> np.ndarray:
    """Power per channel in [low, high) Hz (sum of PSD bins x bin width), [channels]."""
    freqs = np.asarray(freqs)
    sel = (freqs >= low) & (freqs < high)
    if not sel.any():
        raise ValueError(f"no frequency bins in [{low}, {high}) Hz")
    df = float(freqs[1] - freqs[0]) if len(freqs) > 1 else 1.0
    return np.asarray(psd)[:, sel].sum(axis=1) * df


def power_spectra(events: Any, n_events: int = 300, nperseg: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Mean Welch power spectral density per channel over the first ``n_events`` events.

    Each event's valid samples only, demeaned (scipy.signal.welch, Hann windows of ``nperseg``).
    Returns (freqs [f], psd [channels, f]) in uV^2/Hz.
    """
    from scipy.signal import welch

    n = min(int(n_events), len(events.sizes))
    if n < 1:
        raise ValueError("no events to compute spectra from")
    nper = int(min(nperseg, int(np.min(events.sizes[:n]))))
    acc = None
    for i in range(n):
        x = np.asarray(events.signals[i, :, :int(events.sizes[i])], dtype=np.float64)
        f, p = welch(x - x.mean(axis=1, keepdims=True), fs=float(events.sfreq), nperseg=nper, axis=-1)
        acc = p if acc is None else acc + p
    return f, acc / n


def plot_power_spectra(freqs: np.ndarray, psd: np.ndarray, channels: Sequence[str], title: str = ""):
    """Log power spectra per channel, with the EEG bands shaded."""
    fig = new_figure(9, 4)
    ax = fig.subplots()
    bands = [("delta", 0.5, 4), ("theta", 4, 8), ("alpha", 8, 13), ("beta", 13, 30)]
    for (name, lo, hi), shade in zip(bands, (0.04, 0.08, 0.12, 0.06)):
        ax.axvspan(lo, hi, color="k", alpha=shade, lw=0)
        ax.text((lo + hi) / 2, 1.0, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)
    for i, name in enumerate(channels):
        ax.semilogy(freqs, psd[i], lw=1, label=name)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("power spectral density (uV$^2$/Hz)")
    ax.set_xlim(0, freqs[-1])
    ax.legend(ncol=7, fontsize=7, loc="upper right")
    if title:
        ax.set_title(title, fontsize=9, pad=14)
    return fig


def plot_electrode_layout(channels: Sequence[str] | None = None, values: Mapping[str, float] | None = None,
                          title: str = "Emotiv EPOC: 14 electrodes (10-20 names)"):
    """The EPOC electrodes on a head outline (nose up, left ear left); optional per-channel ``values`` colour them."""
    from matplotlib.patches import Circle, Polygon

    channels = list(channels or EPOC_POSITIONS)
    unknown = [c for c in channels if c not in EPOC_POSITIONS]
    if unknown:
        raise ValueError(f"no layout position for channel(s) {', '.join(unknown)}; known: {', '.join(EPOC_POSITIONS)}")
    fig = new_figure(5, 5.2)
    ax = fig.subplots()
    ax.add_patch(Circle((0, 0), 1.0, fill=False, lw=2))
    ax.add_patch(Polygon([(-0.12, 0.99), (0, 1.15), (0.12, 0.99)], closed=False, fill=False, lw=2))  # nose
    for side in (-1, 1):  # ears
        ax.add_patch(Polygon([(side * 0.99, 0.12), (side * 1.07, 0.10), (side * 1.09, -0.10), (side * 0.99, -0.12)],
                             closed=False, fill=False, lw=2))
    cmap = None
    if values is not None:
        import matplotlib

        cmap = matplotlib.colormaps["viridis"]
        vals = np.array([float(values[c]) for c in channels])
        lo, hi = float(vals.min()), float(vals.max())
    for name in channels:
        x, y = EPOC_POSITIONS[name]
        colour = "#1f77b4"
        if cmap is not None:
            colour = cmap(0.5 if hi == lo else (float(values[name]) - lo) / (hi - lo))
        ax.add_patch(Circle((x * 0.88, y * 0.88), 0.095, color=colour, zorder=3))
        ax.text(x * 0.88, y * 0.88, name, ha="center", va="center", fontsize=7, color="white",
                fontweight="bold", zorder=4)
    for name, (x, y) in EPOC_REFERENCES.items():
        ax.add_patch(Circle((x, y), 0.045, fill=False, ls="--", zorder=3))
        ax.text(x, y - 0.08, name, ha="center", va="top", fontsize=7, color="grey")
    ax.text(0, -1.2, "front (nose) up; CMS/DRL = reference electrodes (approximate)", ha="center", fontsize=7,
            color="grey")
    ax.set_xlim(-1.25, 1.25)
    ax.set_ylim(-1.3, 1.25)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    return fig
