"""The feature stage's data: the recipe's settings (:class:`FeatureConfig`), the events it applies to (the digit
events; the forms of events and indices it accepts) and what it gives (:class:`FeatureSet`).

:mod:`helpers.features` fits and applies the recipe (``FeaturePipeline``) and re-exports all of these; why the
defaults are what they are (264 dimensions, the first 1 s, 0.5-15 Hz, 32 Hz) is in its docstring and in
docs/DESIGN.md#features.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from helpers.eegsteps import _check_3d, bandpass_sos

DIGIT_CODES = tuple(range(10))


# --------------------------------------------------------------------------------------------------
# Events helpers (thin wrappers over the data layer's Events)
# --------------------------------------------------------------------------------------------------

def digit_indices(codes: np.ndarray) -> np.ndarray:
    """Indices of digit events (codes 0-9); code -1 (random capture) is not part of the 10-class task."""
    codes = np.asarray(codes)
    return np.flatnonzero((codes >= 0) & (codes <= 9))


def digit_events(events) -> tuple[Any, int]:
    """(the digit events only, number of non-digit events excluded). ``events`` is a mindbigdata.Events."""
    idx = digit_indices(events.codes)
    return events.subset(idx), int(len(events.codes) - len(idx))


def _unpack(data) -> dict:
    """Accept an Events-like object (``.signals``, ``.sizes``, ...), a (signals, sizes) pair or an array."""
    if hasattr(data, "signals"):
        return dict(signals=_check_3d(data.signals, "signals"), sizes=np.asarray(data.sizes),
                    codes=getattr(data, "codes", None), event_ids=getattr(data, "event_ids", None),
                    sfreq=getattr(data, "sfreq", None), channels=getattr(data, "channels", None))
    if isinstance(data, tuple) and len(data) == 2:
        signals, sizes = data
        return dict(signals=_check_3d(signals, "signals"), sizes=sizes, codes=None, event_ids=None,
                    sfreq=None, channels=None)
    return dict(signals=_check_3d(data, "signals"), sizes=None, codes=None, event_ids=None,
                sfreq=None, channels=None)


def _check_index(idx, n: int, name: str) -> np.ndarray:
    if idx is None:
        return np.arange(n)
    idx = np.asarray(idx)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise ValueError(f"{name} as a boolean mask must have length {n}; got {idx.shape}")
        return np.flatnonzero(idx)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer index array or boolean mask")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"{name} must lie in 0..{n - 1}; got {int(idx.min())}..{int(idx.max())}")
    return idx.astype(np.int64)


# --------------------------------------------------------------------------------------------------
# The recipe's settings and its output
# --------------------------------------------------------------------------------------------------

@dataclass
class FeatureConfig:
    """Settings of the feature recipe (the docstring of helpers.features). All fitted parts use training events only."""
    sfreq: float = 128.0
    band: tuple = (0.5, 15.0)
    filter_order: int = 4
    n_times: int = 128                             # the first 1 s after onset
    reject_ptp_uv: float | str | None = "auto"   # uV, "auto" (fitted on training events) or None
    reject_auto_k: float = 4.0
    decim: int = 4                                 # 128 Hz -> 32 Hz
    feature_dim: int = 264
    whiten: bool = True
    seed: int = 0            # recorded with the run; the exact eigendecomposition needs no randomness
    chunk_size: int = 2048   # events processed at a time (bounds memory)

    def __post_init__(self):
        self.band = tuple(float(b) for b in self.band)
        if len(self.band) != 2:
            raise ValueError(f"band must be (low, high); got {self.band}")
        bandpass_sos(self.sfreq, *self.band, self.filter_order)  # validates the edges
        if self.decim < 1 or int(self.decim) != self.decim:
            raise ValueError(f"decim must be a positive integer; got {self.decim}")
        new_nyq = self.sfreq / self.decim / 2
        if self.band[1] > new_nyq:
            raise ValueError(f"decimating by {self.decim} gives a Nyquist frequency of {new_nyq} Hz, below the "
                             f"band-pass upper edge {self.band[1]} Hz: the samples would alias. Lower band[1] "
                             f"or decim.")
        if isinstance(self.reject_ptp_uv, str) and self.reject_ptp_uv != "auto":
            raise ValueError(f"reject_ptp_uv must be a number (uV), 'auto' or None; got {self.reject_ptp_uv!r}")
        if isinstance(self.reject_ptp_uv, (int, float)) and not self.reject_ptp_uv > 0:
            raise ValueError(f"reject_ptp_uv must be > 0; got {self.reject_ptp_uv}")
        if self.feature_dim < 1 or self.n_times < 2 or self.chunk_size < 1:
            raise ValueError("feature_dim, chunk_size must be >= 1 and n_times >= 2")

    @classmethod
    def from_config(cls, config, **overrides) -> "FeatureConfig":
        """The recipe with the run's ``feature_dim`` and ``seed`` (a helpers.config.Config)."""
        return cls(**{"feature_dim": config.feature_dim, "seed": config.seed, **overrides})

    @property
    def min_samples(self) -> int:
        """Fewest valid samples an event needs: half the crop window (64 = 0.5 s by default).

        A shorter event (a line cut short in the file, a single sample) would be mostly edge padding after
        ``fix_length`` and too short for the 0.5 Hz high-pass to mean anything (a one-sample event cannot be
        filtered at all). Such events are rejected as ``too_short`` and counted, like artefacts, instead of
        aborting the whole feature stage.
        """
        return max(2, self.n_times // 2)

    @property
    def rate_after_decimation(self) -> float:
        return self.sfreq / self.decim

    @property
    def n_times_decimated(self) -> int:
        return len(range(0, self.n_times, self.decim))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["band"] = list(self.band)
        return d


@dataclass
class FeatureSet:
    """Features of a set of events, aligned row by row with ``indices`` into the source events."""
    X: np.ndarray                 # float32 [n, feature_dim]
    indices: np.ndarray           # int64 [n], rows of the source events
    rejected: np.ndarray          # bool [n], failed the (training-fitted) artefact threshold
    ptp_uv: np.ndarray            # float32 [n], largest channel peak-to-peak after filtering
    labels: np.ndarray | None = None     # int64 [n] codes, when the source had them
    event_ids: np.ndarray | None = None  # int64 [n], when the source had them
    # bool [n]: rejected because the event has fewer than FeatureConfig.min_samples valid samples (its X row
    # is 0 and its ptp_uv 0); a subset of ``rejected``. None = no event was too short.
    too_short: np.ndarray | None = None

    @property
    def n_events(self) -> int:
        return int(len(self.indices))

    @property
    def n_rejected(self) -> int:
        return int(self.rejected.sum())

    @property
    def n_kept(self) -> int:
        return self.n_events - self.n_rejected

    def kept(self) -> "FeatureSet":
        """The events that passed artefact rejection (project policy for training and metrics)."""
        m = ~self.rejected
        return FeatureSet(X=self.X[m], indices=self.indices[m], rejected=self.rejected[m], ptp_uv=self.ptp_uv[m],
                          labels=None if self.labels is None else self.labels[m],
                          event_ids=None if self.event_ids is None else self.event_ids[m],
                          too_short=None if self.too_short is None else self.too_short[m])

    def counts(self) -> dict:
        return {"n_events": self.n_events, "n_rejected": self.n_rejected, "n_kept": self.n_kept}

    def rejection_reasons(self) -> dict[str, int]:
        """Rejected events by reason: ``artefact`` (peak-to-peak above the threshold) and ``too_short``
        (fewer valid samples than ``FeatureConfig.min_samples``)."""
        short = 0 if self.too_short is None else int(self.too_short.sum())
        return {"artefact": self.n_rejected - short, "too_short": short}
