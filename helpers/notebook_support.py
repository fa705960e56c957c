"""Small helpers that the notebooks need and that belong to no other module.

* :func:`status` - the first cell of every notebook: profile, data (real or synthetic), CLIP weights;
  loud (red) when the data are synthetic or the CLIP is untrained.
* plots for the teaching steps of notebooks 01-03 (raw lines, one event, power spectra, the EPOC
  electrode layout on a head, each preprocessing step, explained variance, the CLIP cosine matrix);
* :func:`leakage_demo` - notebook 02's side-by-side of leaky and honest splits on the same data;
* :func:`load_data` - notebook 01's data, loaded exactly as :func:`helpers.pipeline.prepare_data` loads it;
* :func:`semantic_gradient_step` - notebook 03's one gradient step from the semantic term alone;
* :func:`train_or_resume`, :func:`compare_lambda_clip` - notebook 04's main run and comparison;
* :func:`metrics_table` - notebook 05's numbers next to their references.

Figures are ``matplotlib.figure.Figure`` objects; :func:`save_figure` writes them under
``run_dir(config) / "figures"``.
"""
from __future__ import annotations

import dataclasses
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from helpers.config import UNTRAINED_CLIP_NOTE, Config, active_profile, dataset_dir, make_config, results_dir
from helpers.datasets import REAL_FILE, real_data_path

# Approximate 2-D positions (x: left -> right, y: back -> front; the head circle has radius 1) of the
# 14 EPOC channels in the international 10-20 / 10-10 system, azimuthal projection as in topographic maps.
EPOC_POSITIONS: dict[str, tuple[float, float]] = {
    "AF3": (-0.31, 0.76), "F7": (-0.809, 0.588), "F3": (-0.42, 0.52), "FC5": (-0.75, 0.28),
    "T7": (-1.00, 0.00), "P7": (-0.809, -0.588), "O1": (-0.309, -0.951), "O2": (0.309, -0.951),
    "P8": (0.809, -0.588), "T8": (1.00, 0.00), "FC6": (0.75, 0.28), "F4": (0.42, 0.52),
    "F8": (0.809, 0.588), "AF4": (0.31, 0.76),
}
# Reference electrodes of the EPOC (CMS/DRL) sit behind the ears / at P3-P4 depending on the model.
EPOC_REFERENCES: dict[str, tuple[float, float]] = {"CMS": (-0.45, -0.45), "DRL": (0.45, -0.45)}


# ------------------------------------------------------------------------------------------- config & paths

def notebook_config(profile: str | None = None, **overrides) -> Config:
    """The config of the active profile (``$EEG2IMG_PROFILE``, default ``cpu``), with optional overrides."""
    return make_config(profile or active_profile(), overrides or None)


def run_dir(config: Config) -> Path:
    """Where the notebooks' main run lives: ``results_dir()``; the ``ci`` profile uses ``results_dir()/ci``
    so that ``make test`` never overwrites the demo's checkpoints, figures or metrics."""
    base = results_dir()
    return base / "ci" if config.profile == "ci" else base


def figures_dir(config: Config) -> Path:
    d = run_dir(config) / "figures"
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_figure(fig, config: Config, name: str, dpi: int = 110) -> Path:
    """Write ``fig`` as ``<run_dir>/figures/<name>.png`` and return the path."""
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"figure name must be a plain file stem, got {name!r}")
    path = figures_dir(config) / (name if name.endswith(".png") else f"{name}.png")
    fig.savefig(path, dpi=dpi)
    return path


def keep(fig, config: Config, name: str):
    """Save ``fig`` under the run's figures folder (:func:`save_figure`) and return it, so a cell ending
    in ``ns.keep(fig, config, "name")`` both shows and keeps the figure."""
    save_figure(fig, config, name)
    return fig


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


# ------------------------------------------------------------------------------------------- status banner

def expected_clip(config: Config) -> tuple[str, bool]:
    """(description, trained) of the CLIP that ``config`` will get, decided without loading it.

    ``auto`` gets pretrained weights only when they are in the local cache (or the hub is reachable;
    this check does not probe the network and reports the cache only), else digit-CLIP.
    """
    from helpers.digit_clip import DIGIT_CLIP_NAME, cache_paths

    weights = config.clip_weights.strip()
    key = weights.lower()
    cached_digit = cache_paths()[0]
    digit_clip = ("digit-CLIP (trained by this project on handwritten digits and fonts; "
                  + (f"cached: {cached_digit})" if cached_digit.is_file() else
                     f"trained on first use, about two minutes, then cached in {cached_digit.parent})"))
    if key == "untrained":
        return f"{config.clip_model}, untrained (random weights, chosen by the profile)", False
    if config.clip_model == DIGIT_CLIP_NAME and key in ("auto", "pretrained"):
        return digit_clip, True
    if key in ("auto", "pretrained"):
        cached = None
        try:
            import open_clip

            from helpers import semantic

            pcfg = open_clip.get_pretrained_cfg(config.clip_model, config.clip_pretrained)
            cached = semantic._cached_weights_file(pcfg) if pcfg else None
        except Exception:  # unknown model names are reported when the CLIP is loaded
            cached = None
        if cached:
            return f"{config.clip_model} / {config.clip_pretrained}, pretrained (cached: {cached})", True
        if key == "pretrained":
            return (f"{config.clip_model} / {config.clip_pretrained}: pretrained weights asked for but NOT in "
                    f"the local cache - loading will fail unless the hub is reachable"), False
        return (f"{config.clip_model}: clip_weights=auto but the pretrained weights ({config.clip_pretrained}) are "
                f"not in the local cache - unless the hub is reachable it falls back to {digit_clip}"), True
    return f"{config.clip_model}, checkpoint {weights}", Path(weights).expanduser().is_file()


@dataclass
class Status:
    """What a notebook runs on. Shown as a box (red when something is not real) and as plain text."""
    profile: str
    data: str
    synthetic: bool
    clip: str
    clip_trained: bool
    run_dir: str
    extra: list = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        w = []
        if self.synthetic:
            w.append("SYNTHETIC DATA: these are generated signals with a known, planted class signal, "
                     "not recorded EEG. Numbers say whether the pipeline works, not what EEG allows. "
                     f"Put the real file at {dataset_dir() / REAL_FILE} (or its zip) to use it.")
        if not self.clip_trained:
            w.append(f"{UNTRAINED_CLIP_NOTE}. The semantic loss and every semantic number come from a fixed "
                     "random network: they exercise the mechanics, and the judge's numbers are the ones to read.")
        return w

    def lines(self) -> list[str]:
        return [f"profile : {self.profile}", f"data    : {self.data}", f"CLIP    : {self.clip}",
                f"results : {self.run_dir}", *self.extra]

    def __str__(self) -> str:
        bar = "!" * 78
        loud = [f"!! {w}" for w in self.warnings]
        return "\n".join(self.lines() + ([bar, *loud, bar] if loud else []))

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        rows = "".join(f"<div><code>{html.escape(line)}</code></div>" for line in self.lines())
        warn = "".join(f"<div style='color:#b00000;font-weight:bold;margin-top:4px'>&#9888; {html.escape(w)}</div>"
                       for w in self.warnings)
        border = "#b00000" if self.warnings else "#2e7d32"
        return f"<div style='border:3px solid {border};padding:6px 10px;border-radius:4px'>{rows}{warn}</div>"


def status(config: Config, loaded: Any = None, clip: Any = None) -> Status:
    """The first-cell report: profile, data, CLIP weights (what is loaded if given, else what will be)."""
    if loaded is not None:
        synthetic = bool(loaded.synthetic)
        data = f"{'SYNTHETIC' if synthetic else 'real'}: {loaded.source}"
        oracle = getattr(loaded, "oracle_top1", None)
        if synthetic and oracle is not None:
            data += f" (oracle top-1 {float(oracle):.2f}, uniform chance 0.10)"
    else:
        path = real_data_path()
        synthetic = path is None
        data = (f"SYNTHETIC: no {dataset_dir() / REAL_FILE}, the embedded generator's data "
                f"({config.synthetic_events} events) will be used" if synthetic else f"real: {path}")
    if clip is not None:
        clip_text, trained = clip.describe(), bool(clip.trained)
    else:
        clip_text, trained = expected_clip(config)
    return Status(profile=config.profile, data=data, synthetic=synthetic, clip=clip_text, clip_trained=trained,
                  run_dir=str(run_dir(config)))


# ------------------------------------------------------------------------------------------- notebook 01

def load_data(config: Config, data_path: str | Path | None = None):
    """The events the pipeline will use (:func:`helpers.pipeline.load_events`, which prepare_data calls too)."""
    from helpers.pipeline import load_events

    return load_events(config, data_path)


def raw_lines(path: str | Path, n: int = 3, max_values: int = 6) -> list[str]:
    """The first ``n`` non-blank lines of a MindBigData file, the data column cut to ``max_values`` values."""
    out = []
    with open(path, "rb") as fh:
        for raw in fh:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) >= 7:
                values = parts[6].split(",")
                more = len(values) - max_values
                parts[6] = ",".join(values[:max_values]) + (f",... ({more} more)" if more > 0 else "")
            out.append("\t".join(parts))
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
    fig = _figure(9, 0.4 * len(channels) + 1.2)
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
    fig = _figure(6, 2.8)
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
    fig = _figure(9, 3)
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
    fig = _figure(9, 4)
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
    fig = _figure(5, 5.2)
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


# ------------------------------------------------------------------------------------------- notebook 02

def plot_signal_steps(steps: Mapping[str, np.ndarray], sfreq: Mapping[str, float] | float, channel: int = 0,
                      channel_name: str = "", event_label: str = ""):
    """One channel of one event after each step (``steps``: name -> [channels, time] array of that event).

    ``sfreq``: one rate for all steps, or a rate per step name (decimation changes it).
    """
    names = list(steps)
    fig = _figure(9, 1.5 * len(names) + 0.6)
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
    fig = _figure(7, 2.8)
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
    fig = _figure(8, 3.4)
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


@dataclass
class LeakageRow:
    split: str
    unit: str
    n_train: int
    n_test: int
    accuracy: Any  # helpers.stats.Accuracy
    honest: bool
    note: str = ""


def _row_features(events: Any, n_times: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The broken prototype's samples: one row per (event, channel), the raw trace with its DC offset,
    zero-padded / cut to ``n_times``. Returns (X [n*c, n_times], labels [n*c], event index [n*c])."""
    sig = np.asarray(events.signals, dtype=np.float32)
    n, c, t = sig.shape
    X = np.zeros((n, c, n_times), dtype=np.float32)
    for i in range(n):
        s = min(int(events.sizes[i]), n_times)
        X[i, :, :s] = sig[i, :, :s]
    return X.reshape(n * c, n_times), np.repeat(np.asarray(events.codes), c), np.repeat(np.arange(n), c)


def leakage_demo(events: Any, feature_dim: int = 264, seed: int = 0,
                 fractions: tuple = (0.7, 0.15, 0.15)) -> list[LeakageRow]:
    """The same digit events under three splits, each scored with a linear classifier on held-out data.

    1. random rows: the broken prototype - single-channel traces split at random (siblings leak);
    2. random events: whole events split at random (neighbours in time leak);
    3. contiguous blocks of event ids: the project's split.
    On data whose labels follow recording blocks (``label_mode='session_blocks'``) only 3 is honest.
    """
    from helpers.baseline import features_baseline, linear_baseline
    from helpers.features import FeatureConfig, FeaturePipeline
    from helpers.splits import block_split, random_event_split, random_row_split

    rows: list[LeakageRow] = []
    n_ch = len(events.channels)
    # 1. random rows
    X, y, _ = _row_features(events)
    rs = random_row_split(events.event_ids, n_ch, fractions=fractions, seed=seed)
    mean, std = X[rs.train].mean(axis=0), X[rs.train].std(axis=0) + 1e-6  # "scaled per column", as it was
    res = linear_baseline((X[rs.train] - mean) / std, y[rs.train], (X[rs.test] - mean) / std, y[rs.test], seed=seed)
    rows.append(LeakageRow("random rows (prototype)", "channel traces", len(rs.train), len(rs.test), res.top1, False,
                           note=f"{rs.leaked_fraction:.0%} of test rows have sibling channels in training "
                                f"({rs.mean_siblings_in_train:.1f} of 13 on average)"))
    # 2-3. event splits through the real feature pipeline
    for name, split, honest, note in (
            ("random events", random_event_split(events.event_ids, fractions=fractions, seed=seed), False,
             "each test event has its neighbours in time in training"),
            ("contiguous blocks (ours)", block_split(events.event_ids, fractions=fractions), True,
             "training = the first part of the recording, test = the last")):
        dim = min(feature_dim, len(split.train) - 2)
        pipe = FeaturePipeline(FeatureConfig(sfreq=float(events.sfreq), feature_dim=dim, seed=seed))
        pipe.fit(events, split.train)
        res = features_baseline(pipe.transform(events, split.train), pipe.transform(events, split.test), seed=seed)
        rows.append(LeakageRow(name, "events", len(split.train), len(split.test), res.top1, honest, note))
    return rows


def leakage_table(rows: Sequence[LeakageRow]):
    import pandas as pd

    return pd.DataFrame([{"split": r.split, "unit": r.unit, "train": r.n_train, "test": r.n_test,
                          "top-1": round(r.accuracy.value, 3),
                          "95% CI": f"{r.accuracy.ci95_low:.3f}-{r.accuracy.ci95_high:.3f}",
                          "chance upper 95%": round(r.accuracy.chance_upper95, 3),
                          "honest?": "yes" if r.honest else "NO (leaks)", "why": r.note} for r in rows])


def plot_accuracies(named: Mapping[str, Any], title: str = "", chance: float | None = None,
                    oracle: float | None = None):
    """Bars of top-1 accuracies (helpers.stats.Accuracy) with 95 % intervals, chance and its upper bound.

    ``chance`` defaults to the largest of the accuracies' own chance levels (their test events' class mix)."""
    names = list(named)
    acc = [named[n] for n in names]
    chance = max(a.chance for a in acc) if chance is None else chance
    vals = np.array([a.value for a in acc])
    err = np.array([[a.value - a.ci95_low for a in acc], [a.ci95_high - a.value for a in acc]])
    fig = _figure(max(6.5, 1.6 * len(names) + 2.5), 3.4)
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
    fig = _figure(5.6, 5.0)
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


def parameter_table(modules: Mapping[str, Any]):
    """Parameters of each network: total and trainable (CLIP is frozen: 0 trainable)."""
    import pandas as pd

    from helpers.models import count_parameters

    rows = [{"network": name, "parameters": count_parameters(m),
             "trainable": count_parameters(m, trainable_only=True)} for name, m in modules.items()]
    return pd.DataFrame(rows)


def forward_shapes(encoder, generator, discriminator, clip, x) -> dict[str, tuple]:
    """One forward pass through every network, returning the shape at each stage (no gradients)."""
    import torch

    from helpers.models import reparameterise

    with torch.no_grad():
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        encoder.eval()
        generator.eval()
        discriminator.eval()
        mu, logvar = encoder(x)
        z = reparameterise(mu, logvar)
        img = generator(z)
        logits = discriminator(img)
        clip_in = clip.preprocess(img)
        emb = clip.encode_images(img)
    return {"features x": tuple(x.shape), "mu": tuple(mu.shape), "logvar": tuple(logvar.shape),
            "z = mu + sigma * eps": tuple(z.shape), "generated image": tuple(img.shape),
            "image value range": (round(float(img.min()), 3), round(float(img.max()), 3)),
            "discriminator logits": tuple(logits.shape), "CLIP input (resized, normalised)": tuple(clip_in.shape),
            "CLIP embedding (unit length)": tuple(emb.shape)}


def semantic_gradient_step(encoder, generator, clip, stimulus_embeddings, x, y, lr: float = 2e-4,
                           lambda_clip: float = 1.0, betas: tuple = (0.5, 0.999)) -> dict:
    """One Adam step of encoder + generator on ``lambda_clip * (1 - cos(CLIP(G(E(x))), CLIP(stimulus)))`` alone.

    Works on *copies* of ``encoder`` and ``generator`` (the caller's networks are left untouched), so it can be
    called for several ``lambda_clip`` values on the same starting point. Shows that gradients flow *through*
    the frozen CLIP into the generator and the encoder, that their size is proportional to ``lambda_clip``
    (exactly 0 at 0), and that CLIP itself is untouched: no CLIP parameter receives a gradient and its weights
    are bit-identical after the optimiser step. ``semantic_loss_before``/``_after`` are the unweighted
    semantic loss on the same inputs (the encoder's mean ``mu``, no sampling noise).
    """
    import copy

    import torch

    from helpers.semantic import semantic_loss

    if lambda_clip < 0:
        raise ValueError(f"lambda_clip must be >= 0, got {lambda_clip}")
    # The encoder without dropout (eval mode) and the generator with batch statistics (train mode): the same
    # inputs then give the same loss, so before/after compare the step alone. Gradients flow in both modes.
    enc, gen = copy.deepcopy(encoder).eval(), copy.deepcopy(generator).train()
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    y = torch.as_tensor(np.asarray(y), dtype=torch.long)
    opt = torch.optim.Adam(list(enc.parameters()) + list(gen.parameters()), lr=lr, betas=betas)
    clip_before = [p.detach().clone() for p in clip.parameters()]

    def loss_now():
        mu, _ = enc(x)
        return semantic_loss(clip.encode_images(gen(mu)), stimulus_embeddings[y])

    opt.zero_grad(set_to_none=True)
    loss = loss_now()
    (float(lambda_clip) * loss).backward()

    def norm(ps):
        grads = [p.grad.detach() for p in ps if p.grad is not None]
        return float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads))) if grads else 0.0

    g_norm, e_norm = norm(gen.parameters()), norm(enc.parameters())
    clip_grads = sum(p.grad is not None for p in clip.parameters())
    if lambda_clip > 0:  # Adam normalises the step size, so a zero gradient would still move nothing; skip it
        opt.step()
    with torch.no_grad():
        after = float(loss_now())
    unchanged = all(torch.equal(a, p.detach()) for a, p in zip(clip_before, clip.parameters()))
    return {"lambda_clip": float(lambda_clip), "semantic_loss_before": float(loss.detach()),
            "semantic_loss_after": after, "generator_grad_norm": g_norm, "encoder_grad_norm": e_norm,
            "clip_params_with_grad": int(clip_grads), "clip_weights_unchanged": bool(unchanged)}


# ------------------------------------------------------------------------------------------- notebooks 04-05

def train_or_resume(config: Config, prepared: Any, semantic: Any, out_dir: str | Path | None = None,
                    progress: bool | None = None, log=print, force: bool = False):
    """The profile's main training run in ``out_dir`` (default :func:`run_dir`), with per-epoch checkpoints.

    The same rule as ``python -m helpers run --resume`` (:func:`helpers.pipeline.open_run`): a finished
    checkpoint of the same configuration, data, features and CLIP is reused (no training); an unfinished one
    is resumed; a damaged ``last.pt`` falls back to ``previous.pt`` (said in the log). One that cannot be
    resumed (another configuration, other data or features, another CLIP) is REFUSED with
    ``helpers.checkpoint.CheckpointError`` saying why, and the folder is left exactly as it was (nothing is
    written before that check). ``force=True`` replaces such a run with a fresh one in the same folder, like
    ``run --force``; copy the folder first (or pass another ``out_dir``) to keep the old run.
    """
    from helpers.pipeline import open_run, train_data

    out = Path(out_dir) if out_dir is not None else run_dir(config)
    trainer, resumed = open_run(config, prepared, semantic, out, resume=True, force=force, log=log)
    if resumed and trainer.epoch >= config.epochs:
        log(f"reusing the finished run in {out} ({trainer.epoch} epochs); delete {out / 'models'} to retrain")
        return trainer
    if resumed:
        log(f"resuming from epoch {trainer.epoch} of {config.epochs}")
    train, val = train_data(prepared)
    trainer.fit(train, val, progress=progress)
    log(f"trained {config.epochs} epochs; checkpoint {out / 'models'}")
    return trainer


def compare_lambda_clip(config: Config, prepared: Any, semantic: Any, values: Sequence[float] = (0.0, 5.0),
                        epochs: int | None = None, progress: bool = False, reuse: Any = None) -> dict[float, list[dict]]:
    """Runs on the same data and seed that differ only in ``lambda_clip``; returns each run's history.

    ``reuse``: a trainer (e.g. the main run) whose configuration equals ``config`` except for ``epochs`` and
    whose history covers ``epochs``: its first epochs stand in for the run with its ``lambda_clip`` (training
    is deterministic per epoch, so a fresh run would repeat them exactly) and are not retrained.
    """
    from helpers.pipeline import build_trainer, train_data

    epochs = int(epochs or config.epochs)
    train, val = train_data(prepared)
    out: dict[float, list[dict]] = {}
    for v in values:
        c = dataclasses.replace(config, lambda_clip=float(v), epochs=epochs)
        if reuse is not None and len(reuse.history) >= epochs:
            mine = {k: x for k, x in c.to_dict().items() if k != "epochs"}
            theirs = {k: x for k, x in reuse.config.to_dict().items() if k != "epochs"}
            if mine == theirs:
                out[float(v)] = [dict(r) for r in reuse.history[:epochs]]
                continue
        trainer = build_trainer(c, semantic, None, prepared=prepared)
        out[float(v)] = list(trainer.fit(train, val, progress=progress))
    return out


def comparison_table(histories: Mapping[float, list[dict]]):
    """Last-epoch validation numbers of each lambda_clip run, side by side."""
    import pandas as pd

    rows = []
    for v, hist in histories.items():
        last = hist[-1] if hist else {}
        rows.append({"lambda_clip": v, "epochs": len(hist), "val_clip (1 - cos)": last.get("val_clip"),
                     "val_semantic_top1": last.get("val_semantic_top1"), "val_rec (L1)": last.get("val_rec"),
                     "train_total": last.get("train_total")})
    return pd.DataFrame(rows)


def plot_comparison(histories: Mapping[float, list[dict]], trained_clip: bool = True):
    """val_clip and val_semantic_top1 per epoch for each lambda_clip run."""
    fig = _figure(9, 3.2)
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


def _get(d: Mapping, *keys, default=None):
    for k in keys:
        if isinstance(d, Mapping) and k in d:
            d = d[k]
        else:
            return default
    return d


def _num(v) -> float | None:
    if isinstance(v, Mapping):
        v = v.get("value", v.get("top1"))
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def metrics_table(metrics: Mapping[str, Any]):
    """The numbers of metrics.json (docs/DESIGN.md#metricsjson), each with its interval, permutation p-value, what it
    means and what it should be compared with; ``verdict`` says whether a top-1 beats chance's 95 % bound."""
    import pandas as pd

    chance = _num(metrics.get("chance_top1")) or 0.1
    chance3 = _num(metrics.get("chance_top3")) or 0.3
    upper = _num(metrics.get("chance_top1_upper95"))
    upper3 = _num(metrics.get("chance_top3_upper95"))
    ref1 = f"chance {chance:.2f} (upper 95% {upper:.3f})" if upper is not None else f"chance {chance:.2f}"
    ref3 = f"chance {chance3:.2f} (upper 95% {upper3:.3f})" if upper3 is not None else f"chance {chance3:.2f}"
    ssim_ref = ("label-blind average digit {:.3f}, wrong digit {:.3f}".format(metrics["ssim_label_blind"],
                metrics["ssim_wrong_digit"]) if "ssim_label_blind" in metrics else "compare runs")
    corr_ref = ("label-blind average digit {:.3f}, wrong digit {:.3f}".format(metrics["pixel_corr_label_blind"],
                metrics["pixel_corr_wrong_digit"]) if "pixel_corr_label_blind" in metrics else "compare runs")
    rows = [
        ("semantic_top1", "generated image -> nearest stimulus in CLIP space is the true digit", ref1),
        ("semantic_top3", "true digit among the 3 nearest stimuli in CLIP space", ref3),
        ("judge_top1", "independent digit classifier (not CLIP) reads the generated image as the true digit", ref1),
        ("judge_top3", "true digit among the judge's 3 best guesses", ref3),
        ("linear_baseline_top1", "shrinkage LDA on the 264 EEG features (no images at all)",
         "what the EEG features carry: the generator's realistic ceiling"),
        ("eegnet_top1", "braindecode's EEGNet on the same events' 1-s signal (before decimation and PCA)",
         "does a deep EEG network find more than the features keep?"),
        ("shallow_fbcsp_top1", "braindecode's ShallowFBCSPNet (band power) on the same events' signal",
         "the same question, for a band-power reader"),
        ("majority_class_top1", "always the most frequent digit of the training events (no EEG at all)", ref1),
        ("oracle_label_judge_top1", "the same generator fed the TRUE class (judge reads it)",
         "upper bound: what perfect EEG decoding would give"),
        ("oracle_label_semantic_top1", "the same generator fed the TRUE class (CLIP ranks it)", "upper bound"),
        ("ssim_mean", "structural similarity of generated image and true stimulus (1 = identical)", ssim_ref),
        ("pixel_corr_mean", "pixel correlation of generated image and true stimulus", corr_ref),
        ("ssim_label_blind", "SSIM of the average training digit with the true stimulus (no EEG at all)", "-"),
        ("ssim_wrong_digit", "SSIM of a wrong digit's stimulus with the true stimulus", "-"),
        ("chance_top1", "best label-blind guess: the share of the test events' most frequent digit", "-"),
        ("chance_top1_upper95", "a label-blind guesser exceeds this with probability < 5 % on this many test events",
         "-"),
        ("oracle_top1", "Bayes accuracy of the synthetic data (nobody can beat it)", "-"),
    ]
    out = []
    for key, meaning, reference in rows:
        if key not in metrics:
            continue
        v = _num(metrics.get(key))
        ci = metrics.get(f"{key}_ci95")
        p = _num(metrics.get(f"{key}_p_value"))
        verdict = ""
        bound = upper if key.endswith("top1") else upper3 if key.endswith("top3") else None
        if v is not None and bound is not None and key not in ("chance_top1", "oracle_top1"):
            verdict = "above chance" if v > bound else "within chance"
        out.append({"metric": key, "value": None if v is None else round(v, 3),
                    "95% CI": f"{ci[0]:.3f}-{ci[1]:.3f}" if isinstance(ci, (list, tuple)) and len(ci) == 2 else "",
                    "permutation p": None if p is None else round(p, 4),
                    "meaning": meaning, "compare with": reference, "verdict": verdict})
    df = pd.DataFrame(out)
    df.attrs["n_test_events"] = metrics.get("n_test_events")
    df.attrs["clip_semantic"] = metrics.get("clip_semantic")
    return df


def list_figures(folder: str | Path) -> list[Path]:
    """PNG files in ``folder`` (sorted), e.g. the evaluation's figures."""
    folder = Path(folder)
    return sorted(folder.glob("*.png")) if folder.is_dir() else []


CLIP_EFFECT_JSON = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "clip_effect.json"


def clip_effect_table(path: str | Path = CLIP_EFFECT_JSON):
    """The lambda_clip experiment (benchmarks/bench_clip_effect.py) as a table: per arm, the judge's and CLIP's
    top-1 and SSIM on held-out test events (mean over seeds with the 95 % interval of the mean), beside the linear
    EEG baseline and chance's 95 % bound measured on the same runs."""
    import json

    import pandas as pd

    result = json.loads(Path(path).read_text())

    def cell(d):
        return f"{d['mean']:.3f} ({d['ci95'][0]:.2f}-{d['ci95'][1]:.2f})" if d.get("ci95") else f"{d['mean']:.3f}"

    rows = []
    for arm, s in result["summary"].items():
        cfg = result["arms"][arm]
        rows.append({"arm": arm, "lambda_cls": cfg.get("lambda_cls"), "lambda_clip": cfg.get("lambda_clip"),
                     "lambda_rec": cfg.get("lambda_rec", 10.0), "clip_views": cfg.get("clip_views", "default"),
                     "judge top-1": cell(s["judge_top1"]), "CLIP top-1": cell(s["semantic_top1"]),
                     "SSIM": round(s["ssim_mean"]["mean"], 3),
                     "linear baseline": round(s["linear_baseline_top1"]["mean"], 3),
                     "chance upper 95%": round(s["chance_top1_upper95"]["mean"], 3), "seeds": len(s["judge_top1"]["values"])})
    df = pd.DataFrame(rows).set_index("arm")
    df.attrs["seeds"] = result.get("seeds")
    return df
