"""EEG events -> designed 264-dimensional feature vectors, fitted on training events only.

See docs/DESIGN.md#features. The original prototype's "264" was the length of one zero-padded raw channel line.
Here 264 is the output size of a documented multichannel recipe:

    raw event [14 ch x size]            size varies around 256 samples (2 s at 128 Hz), DC ~4000 uV
      1. bandpass    0.5-15 Hz, zero-phase Butterworth (order 4, sosfiltfilt) on each event's VALID part
      2. fix_length  crop to the first n_times=128 samples (1 s after onset); shorter events edge-padded
      3. demean      per event and channel
      4. artifact    peak-to-peak rejection (threshold fixed in uV, or "auto" = fitted on training events)
      5. standardise per channel, with mean/std of the kept training events
      6. decimate    to 32 Hz by keeping every 4th sample -> 14 ch x 32 samples = 448 numbers
      7. PCA         448 -> feature_dim (default 264) components, fitted on kept training events, whitened

Why 264? It stays the project's default feature size (the generator's input layer, config field
``feature_dim``), but now as a choice on top of a measured quantity: the 448 band-limited samples are
strongly correlated (neighbouring samples of a 15 Hz-limited signal, neighbouring electrodes), and the
264 directions of largest training variance keep about 95 % of it (93-95 % on the synthetic data;
``FeaturePipeline.explained_variance_total`` reports it for the data at hand, notebook 02 prints it,
benchmarks/results/features.json records it). Any ``feature_dim`` up to min(448, n_fit_events - 1) works;
a larger one is an error that names both numbers.

Why 1 s and 15 Hz rather than all 2 s up to 30 Hz? Measured with the linear baseline on the project's
synthetic data (default class strength, oracle top-1 0.70), whose class templates are modelled on
slow visual evoked responses (0.15-0.9 s after onset, 1-4 Hz, so these numbers say more about where
the synthetic signal lives than about real EEG: check them on EP1.01.txt); 3,000 contiguous test events;
``python benchmarks/bench_features.py --recipes`` re-measures it (benchmarks/results/features.json):

    recipe (all -> PCA 264, shrinkage LDA)        1,700 training events   10,000 training events
    2 s, 0.5-30 Hz, 64 Hz  (1792 inputs)          0.36                    0.55
    1 s, 0.5-30 Hz, 64 Hz  (896 inputs)           0.51                    0.66
    1 s, 0.5-15 Hz, 32 Hz  (448 inputs, default)  0.55                    0.68
    the default without artefact rejection        0.51                    0.65

With 2 s at 64 Hz, PCA to 264 keeps only the slow, high-variance (1/f) directions; the second second
and the 15-30 Hz band add inputs without adding class information, and every extra input costs
training events. Real visual evoked responses also lie within the first second. The old recipe is
one setting away: ``FeatureConfig(band=(0.5, 30), n_times=256, decim=2)``.

Choices, and why:
- Variable sizes: each event is filtered on its own valid samples (the zeros after ``sizes[i]`` never
  enter the filter); each end is padded by odd reflection (up to 1 s), so no artificial step is filtered.
  Events are then cropped to the first n_times samples (stimulus-locked; no resampling, which would
  stretch time differently per event), and an event shorter than that is edge-padded with its last value.
- Decimation by subsampling: the zero-phase band-pass is the anti-aliasing filter. Its amplitude gain
  |H(f)|^2 (scipy.signal.sosfreqz, squared by the forward-backward pass) is -6 dB at 15 Hz, -22 dB at
  19.5 Hz, -40 dB at 24 Hz and -68 dB at 32 Hz, so what folds back below 12.5 Hz (content above 19.5 Hz)
  is attenuated by at least 22 dB, on top of the EEG's 1/f fall-off. The pipeline checks that the band's
  upper edge lies below the new Nyquist frequency. The standalone ``decimate`` step applies its own
  anti-aliasing filter unless told the signal is already band-limited.
- Whitened PCA: each of the 264 features has unit variance on the training events, so a neural
  encoder sees inputs on one scale (no component dominates the first layer); shrinkage LDA is
  nearly unaffected. The explained-variance ratios are kept so the scale of each component is known.
- Artefact rejection: the peak-to-peak threshold (if "auto": exp(median + 4 x 1.4826 x MAD) of the
  log peak-to-peak over training events, i.e. about 4 robust standard deviations above typical) is
  fitted on training events only; rejected training events are left out of every fit.
  Validation/test events are never dropped silently: ``transform`` returns features for every
  requested event plus a ``rejected`` mask and counts. Project policy: rejected events are left out
  of training and of metrics (``FeatureSet.kept()``), and their number is reported next to every metric.
- Speed: inside the pipeline, band-pass + crop/pad + demean is one linear map per event size, built
  once by applying exactly these step functions to an identity matrix, and applied as a matrix product
  (a test proves it equals the step functions). Fit on 70 % + transform of 65,034 events: about 45 s
  on 2 shared cores, peak 1.5 GB with the 0.94 GB input, against about 17 min for a per-event loop.
"""
from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from helpers.eegsteps import (  # noqa: F401 - re-exported: features.bandpass etc. (notebook 02, tests)
    ArtifactMask,
    _check_sizes,
    artifact_mask,
    auto_ptp_threshold,
    bandpass,
    bandpass_sos,
    channel_stats,
    decimate,
    demean,
    fix_length,
    peak_to_peak,
    standardise,
)
from helpers.featuretypes import (  # noqa: F401 - re-exported: features.FeatureConfig etc. (pipeline, notebooks)
    DIGIT_CODES,
    FeatureConfig,
    FeatureSet,
    _check_index,
    _unpack,
    digit_events,
    digit_indices,
)

STATE_KIND = "helpers.features.FeaturePipeline"
STATE_VERSION = 1


# --------------------------------------------------------------------------------------------------
# The fitted pipeline
# --------------------------------------------------------------------------------------------------

class FeaturePipeline:
    """Fit on training events, transform any events: band-pass ... PCA (module docstring).

    >>> pipe = FeaturePipeline(FeatureConfig()).fit(events, split.train)
    >>> train, test = pipe.transform(events, split.train).kept(), pipe.transform(events, split.test)
    """

    def __init__(self, config: FeatureConfig | None = None):
        self.config = config or FeatureConfig()
        self._sos = bandpass_sos(self.config.sfreq, *self.config.band, self.config.filter_order)
        self._operators: dict[int, np.ndarray] = {}
        self.fitted = False

    # ---- the fused linear preprocessing (band-pass + crop/pad + demean) -------------------------

    def _operator(self, size: int) -> np.ndarray:
        """[size, n_times] matrix M with x @ M == demean(fix_length(bandpass(x))) for events of this size.

        Every step is linear in the signal (sosfiltfilt with its odd-reflection padding included), so
        applying the step functions to the identity matrix gives the map exactly.
        """
        op = self._operators.get(size)
        if op is None:
            cfg = self.config
            eye = np.eye(size)[:, None, :]  # [size events, 1 channel, size samples]
            y = bandpass(eye, cfg.sfreq, *cfg.band, cfg.filter_order)
            y = demean(fix_length(y, None, cfg.n_times))[:, 0, :]  # [size (inputs), n_times]
            op = np.ascontiguousarray(y, dtype=np.float32)
            self._operators[size] = op
        return op

    def _preprocess(self, signals: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """Chunk [m, c, max_size] -> filtered, fixed-length, demeaned float32 [m, c, n_times]."""
        m, c, _ = signals.shape
        out = np.empty((m, c, self.config.n_times), dtype=np.float32)
        for size in np.unique(sizes):
            idx = np.flatnonzero(sizes == size)
            block = signals[idx, :, :size].astype(np.float64)
            # Remove the ~4000 uV offset in float64 before the float32 matrix product (the map kills
            # constants anyway; this only protects float32 precision).
            block = (block - block.mean(axis=-1, keepdims=True)).astype(np.float32)
            out[idx] = (block.reshape(-1, size) @ self._operator(int(size))).reshape(len(idx), c, -1)
        return out

    def _chunks(self, idx: np.ndarray):
        step = self.config.chunk_size
        for start in range(0, len(idx), step):
            yield start, idx[start:start + step]

    def _source(self, data) -> dict:
        src = _unpack(data)
        # Sizes below min_samples are allowed here: those events are rejected as too_short, not fatal.
        src["sizes"] = _check_sizes(src["sizes"], src["signals"], min_size=0)
        if src["sfreq"] is not None and abs(float(src["sfreq"]) - self.config.sfreq) > 1e-6:
            raise ValueError(f"events are sampled at {src['sfreq']} Hz but FeatureConfig.sfreq is "
                             f"{self.config.sfreq} Hz")
        return src

    # ---- fit -------------------------------------------------------------------------------------

    def fit(self, data, train_idx) -> "FeaturePipeline":
        """Fit the artefact threshold, channel statistics and PCA on ``data[train_idx]`` only.

        ``data``: a mindbigdata.Events, a (signals, sizes) pair or a signals array [n, c, t].
        Training events rejected as artefacts are left out of the statistics and the PCA.
        """
        cfg = self.config
        src = self._source(data)
        signals, sizes = src["signals"], src["sizes"]
        train_idx = _check_index(train_idx, signals.shape[0], "train_idx")
        n_given = len(train_idx)
        n_short = int((sizes[train_idx] < cfg.min_samples).sum())
        train_idx = train_idx[sizes[train_idx] >= cfg.min_samples]  # too short: rejected, left out of the fit
        n_train, n_ch = len(train_idx), signals.shape[1]
        t_dec = cfg.n_times_decimated
        n_dims = n_ch * t_dec
        if n_train < 2:
            raise ValueError(f"need at least 2 training events to fit; got {n_train}")
        available = min(n_dims, n_train - 1)
        if cfg.feature_dim > available:
            raise ValueError(f"feature_dim={cfg.feature_dim} exceeds the {available} dimensions available "
                             f"({n_ch} channels x {t_dec} samples = {n_dims} inputs, {n_train} training events)")

        # Pass 1: preprocess training events once; keep peak-to-peak, per-event channel sums, and the
        # decimated signals (subsampling commutes exactly with the per-channel standardisation).
        ptp = np.empty(n_train, dtype=np.float64)
        sums = np.empty((n_train, n_ch), dtype=np.float64)
        sumsq = np.empty((n_train, n_ch), dtype=np.float64)
        cache = np.empty((n_train, n_ch, t_dec), dtype=np.float32)
        for start, chunk in self._chunks(train_idx):
            x = self._preprocess(signals[chunk], sizes[chunk])
            sl = slice(start, start + len(chunk))
            ptp[sl] = peak_to_peak(x)
            sums[sl] = x.sum(axis=-1, dtype=np.float64)
            sumsq[sl] = np.square(x, dtype=np.float64).sum(axis=-1)
            cache[sl] = x[..., ::cfg.decim]

        if cfg.reject_ptp_uv == "auto":
            threshold = auto_ptp_threshold(ptp, cfg.reject_auto_k)
        elif cfg.reject_ptp_uv is None:
            threshold = None
        else:
            threshold = float(cfg.reject_ptp_uv)
        keep = np.ones(n_train, bool) if threshold is None else ptp <= threshold
        n_keep = int(keep.sum())
        if cfg.feature_dim > n_keep - 1:
            raise ValueError(f"feature_dim={cfg.feature_dim} exceeds the {n_keep - 1} dimensions available: only "
                             f"{n_keep} of {n_train} training events pass artefact rejection "
                             f"(threshold {threshold} uV)")

        count = n_keep * cfg.n_times
        mean = sums[keep].sum(axis=0) / count
        var = sumsq[keep].sum(axis=0) / count - mean ** 2
        std = np.sqrt(np.maximum(var, 0.0))
        if not np.all(std > 0):
            bad = np.flatnonzero(~(std > 0)).tolist()
            raise ValueError(f"channel(s) {bad} have zero variance in the kept training events")

        # Pass 2: PCA covariance of the standardised, decimated, flattened kept training events.
        kept_rows = np.flatnonzero(keep)
        total = np.zeros(n_dims)
        gram = np.zeros((n_dims, n_dims))
        for _, rows in self._chunks(kept_rows):
            z = standardise(cache[rows], mean, std).reshape(len(rows), n_dims).astype(np.float64)
            total += z.sum(axis=0)
            gram += z.T @ z
        del cache
        pca_mean = total / n_keep
        cov = (gram - n_keep * np.outer(pca_mean, pca_mean)) / (n_keep - 1)
        # One BLAS thread: LAPACK's tridiagonal reduction gains little from threads and, on shared
        # cores, OpenBLAS threads contending made it 10x slower (2 s -> 25 s for a 1792 x 1792 matrix).
        with threadpool_limits(limits=1, user_api="blas"):
            evals, evecs = np.linalg.eigh(cov)            # ascending
        evals = np.clip(evals[::-1], 0.0, None)
        evecs = evecs[:, ::-1]
        k = cfg.feature_dim
        if evals[k - 1] <= 1e-12 * evals[0]:
            rank = int((evals > 1e-12 * evals[0]).sum())
            raise ValueError(f"feature_dim={k} exceeds the {rank} dimensions with non-zero variance in the "
                             f"training features")
        comps = evecs[:, :k].T.copy()                      # [k, n_dims]
        # Deterministic sign: the largest loading of every component is positive.
        flip = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
        comps *= flip[:, None]

        counts = {"n_train_events": n_given, "n_train_rejected": n_given - n_keep, "n_fit_events": n_keep}
        if n_short:  # only when it happens, so that the saved state (and a run's identity) is otherwise unchanged
            counts["n_train_too_short"] = n_short
        self._set_state(channel_mean=mean, channel_std=std, threshold=threshold, pca_mean=pca_mean,
                        components=comps, explained_variance=evals[:k], total_variance=float(evals.sum()),
                        n_channels=n_ch, channels=src["channels"], counts=counts)
        return self

    def _set_state(self, *, channel_mean, channel_std, threshold, pca_mean, components, explained_variance,
                   total_variance, n_channels, channels, counts):
        self.channel_mean_ = np.asarray(channel_mean, np.float64)
        self.channel_std_ = np.asarray(channel_std, np.float64)
        self.ptp_threshold_uv_ = None if threshold is None else float(threshold)
        self.pca_mean_ = np.asarray(pca_mean, np.float64)
        self.components_ = np.asarray(components, np.float64)
        self.explained_variance_ = np.asarray(explained_variance, np.float64)
        self.total_variance_ = float(total_variance)
        self.n_channels_ = int(n_channels)
        self.channels_ = None if channels is None else tuple(str(c) for c in channels)
        self.fit_counts_ = {k: int(v) for k, v in counts.items()}
        # Projection used by transform, derived the same way after fit and after loading.
        scale = np.sqrt(self.explained_variance_) if self.config.whiten else np.ones(len(self.explained_variance_))
        self._proj = (self.components_.T / scale[None, :]).astype(np.float32)   # [n_dims, k]
        self._proj_offset = (self.pca_mean_ @ self.components_.T / scale).astype(np.float32)
        self.fitted = True

    # ---- introspection ---------------------------------------------------------------------------

    @property
    def explained_variance_ratio_(self) -> np.ndarray:
        """Fraction of the training variance (of the standardised, decimated inputs) carried by each component."""
        self._require_fitted()
        return self.explained_variance_ / self.total_variance_

    @property
    def explained_variance_total(self) -> float:
        """Fraction of the training variance kept by the feature_dim components."""
        return float(self.explained_variance_ratio_.sum())

    @property
    def n_input_dims(self) -> int:
        self._require_fitted()
        return self.n_channels_ * self.config.n_times_decimated

    def describe(self) -> dict:
        """Plain summary for notebooks and run logs."""
        self._require_fitted()
        return {"n_input_dims": self.n_input_dims, "feature_dim": self.config.feature_dim,
                "explained_variance_total": self.explained_variance_total,
                "ptp_threshold_uv": self.ptp_threshold_uv_, **self.fit_counts_, "config": self.config.to_dict()}

    def _require_fitted(self):
        if not self.fitted:
            raise RuntimeError("FeaturePipeline is not fitted: call fit(events, train_idx) first")

    # ---- transform -------------------------------------------------------------------------------

    def transform(self, data, idx=None) -> FeatureSet:
        """Features of ``data[idx]`` (all events if idx is None) with the fitted, unchanged transform.

        Every requested event gets a feature row; those above the training-fitted artefact threshold
        are flagged in ``rejected`` (not dropped): use ``.kept()`` and report ``.counts()``.
        """
        cfg = self.config
        src, idx = self._fitted_source(data, idx)
        signals, sizes = src["signals"], src["sizes"]
        n = len(idx)
        X = np.zeros((n, cfg.feature_dim), dtype=np.float32)
        ptp = np.zeros(n, dtype=np.float32)
        short = sizes[idx] < cfg.min_samples
        usable = np.flatnonzero(~short)  # positions in idx; a too-short event keeps a zero row, rejected
        for _, pos in self._chunks(usable):
            chunk = idx[pos]
            x = self._preprocess(signals[chunk], sizes[chunk])
            ptp[pos] = peak_to_peak(x)
            z = standardise(x[..., ::cfg.decim], self.channel_mean_, self.channel_std_)
            X[pos] = z.reshape(len(chunk), -1) @ self._proj - self._proj_offset
        rejected = short.copy()
        if self.ptp_threshold_uv_ is not None:
            rejected |= ptp > self.ptp_threshold_uv_
        codes, ids = (None if a is None else np.asarray(a)[idx].astype(np.int64) for a in (src["codes"], src["event_ids"]))
        return FeatureSet(X=X, indices=idx, rejected=rejected, ptp_uv=ptp, labels=codes, event_ids=ids,
                          too_short=short if short.any() else None)

    def _fitted_source(self, data, idx) -> tuple[dict, np.ndarray]:
        """``(source, checked idx)`` for applying the fitted transform: same channels, in the fitted order."""
        self._require_fitted()
        src = self._source(data)
        n_ch = src["signals"].shape[1]
        if n_ch != self.n_channels_:
            raise ValueError(f"fitted on {self.n_channels_} channels, got events with {n_ch}")
        if self.channels_ is not None and src["channels"] is not None and tuple(src["channels"]) != self.channels_:
            raise ValueError(f"channel order {tuple(src['channels'])} differs from the fitted {self.channels_}")
        return src, _check_index(idx, src["signals"].shape[0], "idx")

    def windows(self, data, idx) -> np.ndarray:
        """The signal the features start from, before decimation and PCA: band-passed, cropped to ``n_times``,
        demeaned and standardised per channel with the training statistics (float32 [m, channels, n_times]).
        The deep EEG references (helpers.eeg_references) read this, so they see what the features see."""
        src, idx = self._fitted_source(data, idx)
        signals, sizes = src["signals"], src["sizes"]
        out = np.zeros((len(idx), signals.shape[1], self.config.n_times), dtype=np.float32)
        for start, chunk in self._chunks(idx):
            x = self._preprocess(signals[chunk], sizes[chunk])
            out[start:start + len(chunk)] = standardise(x, self.channel_mean_, self.channel_std_)
        return out

    # ---- persistence -----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to re-apply the fitted transform: plain Python values and torch tensors.

        Safe for ``torch.save`` + ``torch.load(weights_only=True)`` (float64 tensors keep it exact).
        """
        import torch  # lazy: the step functions and notebooks 01-02 do not need torch

        self._require_fitted()
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))  # noqa: E731
        return {"kind": STATE_KIND, "version": STATE_VERSION, "config": self.config.to_dict(),
                "channel_mean": t(self.channel_mean_), "channel_std": t(self.channel_std_),
                "ptp_threshold_uv": self.ptp_threshold_uv_, "pca_mean": t(self.pca_mean_),
                "components": t(self.components_), "explained_variance": t(self.explained_variance_),
                "total_variance": self.total_variance_, "n_channels": self.n_channels_,
                "channels": None if self.channels_ is None else list(self.channels_),
                "counts": dict(self.fit_counts_)}

    @classmethod
    def from_state_dict(cls, state: dict) -> "FeaturePipeline":
        """Rebuild a fitted pipeline from :meth:`state_dict` (tensors, arrays or lists accepted)."""
        if state.get("kind") != STATE_KIND:
            raise ValueError(f"not a FeaturePipeline state (kind={state.get('kind')!r})")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"FeaturePipeline state version {state.get('version')} is not supported "
                             f"(this code reads version {STATE_VERSION})")
        arr = lambda v: np.asarray(v.numpy() if hasattr(v, "numpy") else v, dtype=np.float64)  # noqa: E731
        pipe = cls(FeatureConfig(**state["config"]))
        pipe._set_state(channel_mean=arr(state["channel_mean"]), channel_std=arr(state["channel_std"]),
                        threshold=state["ptp_threshold_uv"], pca_mean=arr(state["pca_mean"]),
                        components=arr(state["components"]), explained_variance=arr(state["explained_variance"]),
                        total_variance=state["total_variance"], n_channels=state["n_channels"],
                        channels=state["channels"], counts=state["counts"])
        return pipe
