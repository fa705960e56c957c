"""The feature recipe's steps as pure functions on arrays ``[events, channels, samples]``: band-pass, crop or pad
to a fixed length, demean, peak-to-peak and the artefact rule, channel statistics and standardisation, decimation.

helpers.features chains them into the fitted FeaturePipeline (and re-exports them: ``features.bandpass`` etc.);
notebook 02 calls them one by one. Why each step and its numbers: the docstring of helpers.features and
docs/DESIGN.md#features.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import signal as _signal


# --------------------------------------------------------------------------------------------------
# Small validation helpers
# --------------------------------------------------------------------------------------------------

def _check_3d(x: np.ndarray, name: str = "x") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"{name} must be [n_events, n_channels, n_times]; got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    return x


def _check_sizes(sizes: np.ndarray | None, x: np.ndarray, min_size: int = 2) -> np.ndarray:
    """Valid lengths per event; ``None`` means every event uses all of its samples."""
    if sizes is None:
        return np.full(x.shape[0], x.shape[-1], dtype=np.int64)
    sizes = np.asarray(sizes)
    if sizes.shape != (x.shape[0],):
        raise ValueError(f"sizes must be [n_events]={x.shape[0]}; got shape {sizes.shape}")
    if sizes.size and (sizes.min() < min_size or sizes.max() > x.shape[-1]):
        raise ValueError(f"sizes must lie in {min_size}..{x.shape[-1]} (the array's time axis); "
                         f"got {int(sizes.min())}..{int(sizes.max())}")
    return sizes.astype(np.int64)


def _out_dtype(x: np.ndarray):
    return x.dtype if x.dtype in (np.float32, np.float64) else np.float32


# --------------------------------------------------------------------------------------------------
# Step functions (pure, on arrays [n, c, t]); notebook 02 calls and plots them one by one
# --------------------------------------------------------------------------------------------------

def bandpass_sos(sfreq: float, low: float = 0.5, high: float = 15.0, order: int = 4) -> np.ndarray:
    """Second-order sections of the Butterworth band-pass used by :func:`bandpass`."""
    nyq = sfreq / 2.0
    if not 0 < low < high < nyq:
        raise ValueError(f"band-pass edges must satisfy 0 < low < high < sfreq/2; "
                         f"got low={low}, high={high}, sfreq/2={nyq}")
    if order < 1:
        raise ValueError(f"filter order must be >= 1; got {order}")
    return _signal.butter(order, [low, high], btype="bandpass", fs=sfreq, output="sos")


def _filtfilt_valid(sos: np.ndarray, x2d: np.ndarray, sfreq: float) -> np.ndarray:
    """Zero-phase filter rows of x2d [rows, L] (all valid samples), with up to 1 s of odd reflection."""
    length = x2d.shape[-1]
    # sosfiltfilt's default padding (27 samples here) is short for a 0.5 Hz high-pass, which rings for
    # about a second: a 10 Hz sine then errs by 20 % in the first second of a 2 s event. Reflecting up
    # to 1 s (never more than the event itself) brings that to about 6 %.
    default = 3 * (2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))
    padlen = min(length - 1, max(default, int(round(sfreq))))
    # The constant offset (~4000 uV) has zero gain in a band-pass; removing it first keeps float
    # precision and avoids an edge transient.
    x2d = x2d - x2d.mean(axis=-1, keepdims=True)
    return _signal.sosfiltfilt(sos, x2d, axis=-1, padlen=padlen)


def bandpass(x: np.ndarray, sfreq: float, low: float = 0.5, high: float = 15.0, order: int = 4,
             sizes: np.ndarray | None = None) -> np.ndarray:
    """Zero-phase Butterworth band-pass of every event and channel.

    With ``sizes``, each event is filtered on its valid samples ``x[i, :, :sizes[i]]`` only (odd
    reflection of up to 1 s at both ends); samples after ``sizes[i]`` are returned as zeros.
    Returns the input's float dtype (float32 for other dtypes).
    """
    x = _check_3d(x)
    sizes = _check_sizes(sizes, x)
    sos = bandpass_sos(sfreq, low, high, order)
    out = np.zeros(x.shape, dtype=_out_dtype(x))
    n, c, _ = x.shape
    for size in np.unique(sizes):  # one vectorised call per distinct size
        idx = np.flatnonzero(sizes == size)
        block = x[idx, :, :size].reshape(len(idx) * c, size).astype(np.float64)
        out[idx, :, :size] = _filtfilt_valid(sos, block, sfreq).reshape(len(idx), c, size)
    return out


def fix_length(signals: np.ndarray, sizes: np.ndarray | None = None, n_times: int = 128) -> np.ndarray:
    """Crop each event to its first ``n_times`` samples; edge-pad a shorter one with its last valid value.

    Cropping (not resampling) keeps every event on the same time axis relative to stimulus onset.
    """
    x = _check_3d(signals, "signals")
    sizes = _check_sizes(sizes, x)
    if n_times < 1:
        raise ValueError(f"n_times must be >= 1; got {n_times}")
    # For each event, time t reads sample min(t, size-1): a crop for long events, an edge pad for short.
    src = np.minimum(np.arange(n_times)[None, :], sizes[:, None] - 1)
    return np.take_along_axis(x, src[:, None, :], axis=-1).astype(_out_dtype(x), copy=False)


def demean(x: np.ndarray) -> np.ndarray:
    """Subtract each event's per-channel mean over time."""
    x = _check_3d(x)
    return (x - x.mean(axis=-1, keepdims=True)).astype(_out_dtype(x), copy=False)


def peak_to_peak(x: np.ndarray) -> np.ndarray:
    """Largest channel peak-to-peak amplitude of each event, [n] (same unit as x, here uV)."""
    x = _check_3d(x)
    return np.ptp(x, axis=-1).max(axis=-1)


class ArtifactMask(NamedTuple):
    keep: np.ndarray      # bool [n]: True = event kept
    n_rejected: int
    ptp_uv: np.ndarray    # [n] largest channel peak-to-peak of each event
    threshold_uv: float | None


def artifact_mask(x: np.ndarray, threshold_uv: float | None) -> ArtifactMask:
    """Keep an event unless some channel's peak-to-peak amplitude exceeds ``threshold_uv``.

    ``threshold_uv=None`` keeps everything (the peak-to-peak values are still returned).
    """
    ptp = peak_to_peak(x)
    if threshold_uv is None:
        keep = np.ones(len(ptp), dtype=bool)
    else:
        if not threshold_uv > 0:
            raise ValueError(f"threshold_uv must be > 0 (or None); got {threshold_uv}")
        keep = ptp <= threshold_uv
    return ArtifactMask(keep=keep, n_rejected=int((~keep).sum()), ptp_uv=ptp,
                        threshold_uv=None if threshold_uv is None else float(threshold_uv))


def auto_ptp_threshold(ptp_uv: np.ndarray, k: float = 4.0) -> float:
    """Robust outlier threshold for peak-to-peak values: exp(median + k * 1.4826 * MAD) on a log scale.

    Peak-to-peak amplitudes are positive and right-skewed, so the robust z-score is taken on their
    logarithm; k=4 flags events about 4 robust standard deviations above the typical event.
    """
    ptp = np.asarray(ptp_uv, dtype=np.float64)
    if ptp.size == 0 or not np.all(ptp > 0):
        raise ValueError("auto threshold needs at least one event and positive peak-to-peak values")
    logp = np.log(ptp)
    med = np.median(logp)
    mad = 1.4826 * np.median(np.abs(logp - med))
    return float(np.exp(med + k * mad))


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over events and time (float64, [c] each)."""
    x = _check_3d(x)
    return x.mean(axis=(0, 2), dtype=np.float64), x.std(axis=(0, 2), dtype=np.float64)


def standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std per channel; mean and std come from the TRAINING events ([c] each)."""
    x = _check_3d(x)
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    if mean.shape != (x.shape[1],) or std.shape != (x.shape[1],):
        raise ValueError(f"mean and std must be [n_channels]={x.shape[1]}; got {mean.shape}, {std.shape}")
    if not np.all(np.isfinite(std) & (std > 0)):
        raise ValueError(f"std must be finite and > 0 for every channel; got {std}")
    dt = _out_dtype(x)
    return ((x - mean.astype(dt)[:, None]) / std.astype(dt)[:, None]).astype(dt, copy=False)


def decimate(x: np.ndarray, factor: int, prefiltered: bool = False) -> np.ndarray:
    """Reduce the sampling rate by an integer ``factor``.

    ``prefiltered=True``: keep every ``factor``-th sample; valid only if the signal was already
    low-passed below the new Nyquist frequency (the pipeline's band-pass is, and it checks so).
    ``prefiltered=False``: scipy.signal.decimate with its zero-phase order-8 Chebyshev anti-alias filter.
    """
    x = _check_3d(x)
    if int(factor) != factor or factor < 1:
        raise ValueError(f"decimation factor must be a positive integer; got {factor}")
    factor = int(factor)
    if factor == 1:
        return x.copy()
    if prefiltered:
        return np.ascontiguousarray(x[..., ::factor])
    return _signal.decimate(x, factor, ftype="iir", zero_phase=True, axis=-1).astype(_out_dtype(x))
