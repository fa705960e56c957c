"""The generative model of the synthetic default data set: EEG events with a known class signal, and its oracle.

Each event is 14 EPOC channels at 128 Hz (:mod:`helpers.synthetic` writes them in the exact text format of
``EP1.01.txt``):

    x[ch, t] = DC[ch] + jitter[ch] + background[ch, t] + blink + ERP[ch, t] + strength * A * template[code][ch, t]

* DC offsets 4000-4500 uV per channel, plus a per-event offset jitter (the real headset drifts);
* background: per-channel 1/f-like noise, three shared 1/f sources with smooth scalp patterns and an
  occipital 10 Hz alpha rhythm (all linear filters of white noise, so their covariance is known exactly);
* blinks on frontal channels in some events; a common visual ERP on digit events;
* the class signal: for each digit, a fixed spatio-temporal template (three Gabor waves at 1-4 Hz (F_LO..F_HI),
  0.15-0.9 s after onset) scaled by ``class_strength`` (0 = no class information at all);
* values quantised to the EPOC step 1/7.8 uV (printed with 6 decimals like the real file by the writer).

Because the generative model is known, :func:`oracle_accuracy` gives the Bayes accuracy for the 10
digits: the accuracy of the classifier that knows the templates and the exact Gaussian background
covariance (first 250 samples; blinks and quantisation enter it as their variance), by Monte Carlo. Blinks
are not Gaussian, so the written data are slightly harder than this model, and no pipeline should be
expected above it.

``label_mode="session_blocks"`` has no per-event class signal: codes are constant within contiguous
blocks of events and each block carries its own session signature (offsets and a time-locked pattern).
A random split then "decodes" digits through the session signature; a contiguous block split cannot.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import linalg, signal

from helpers.mbdformat import DEVICES

SFREQ = 128.0
CHANNELS = DEVICES["EP"].channels
N_CH = len(CHANNELS)
ORACLE_SAMPLES = 250  # every event has at least this many samples (sizes are 250-270)
_BURN_IN = 128  # filters start from rest this many samples before the written part
_MAX_SIZE = 270
_BATCH = 512  # events generated at once (fixed: the output depends on it through the noise stream)
# Template amplitude (uV RMS) at class_strength 1: the default oracle top-1 is then about 0.7 (seed 0),
# where a learned linear classifier on ~3000 events reaches roughly three quarters of it.
_CLASS_AMP = 0.6
WHITE_LO, WHITE_HI = 6.0, 9.0
F_LO, F_HI = 1.0, 4.0
BLINK_P, BLINK_AMP, BLINK_T, BLINK_W = 0.12, (80.0, 200.0), (0.1, 1.9), (0.05, 0.09)
LABEL_MODES = ("signal", "session_blocks")

# Rough scalp positions (x: left-right, y: back-front) of the EPOC channels, for smooth patterns.
_POS = np.array([(-0.3, 0.9), (-0.7, 0.6), (-0.35, 0.6), (-0.55, 0.3), (-0.85, 0.0), (-0.7, -0.55),
                 (-0.3, -0.9), (0.3, -0.9), (0.7, -0.55), (0.85, 0.0), (0.55, 0.3), (0.35, 0.6),
                 (0.7, 0.6), (0.3, 0.9)])
_FRONTAL_BLINK = np.array([1.0, 0.55, 0.5, 0.2, 0.05, 0, 0, 0, 0, 0.05, 0.2, 0.5, 0.55, 1.0])


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. Same spec, same bytes."""
    n_events: int = 4000
    class_strength: float = 1.0
    seed: int = 0
    random_fraction: float = 0.03  # share of code -1 (random, non-digit) captures
    label_mode: str = "signal"  # "signal" or "session_blocks"
    n_blocks: int = 20  # session_blocks: number of contiguous blocks (codes constant within each)
    session_strength: float = 2.0  # session_blocks: strength of each block's signature (2: a random split "decodes" ~0.7)
    first_event_id: int = 67635
    # Share of each digit 0-9 (None = equal). Only with class_strength 0 ("signal" mode): recordings are not
    # balanced, and a no-signal file with 40 % zeros is how the tests prove that chance follows the class mix.
    class_priors: tuple | None = None

    def check(self) -> None:
        if self.n_events < 1:
            raise ValueError(f"n_events must be >= 1, got {self.n_events}")
        if self.class_strength < 0:
            raise ValueError(f"class_strength must be >= 0, got {self.class_strength}")
        if not 0 <= self.random_fraction < 1:
            raise ValueError(f"random_fraction must be in [0, 1), got {self.random_fraction}")
        if self.label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {self.label_mode!r}")
        if self.label_mode == "session_blocks" and not 1 <= self.n_blocks <= self.n_events:
            raise ValueError(f"n_blocks must be between 1 and n_events, got {self.n_blocks}")
        if self.class_priors is not None:
            p = np.asarray(self.class_priors, dtype=float)
            if p.shape != (10,) or (p < 0).any() or not np.isclose(p.sum(), 1.0):
                raise ValueError(f"class_priors must be 10 non-negative shares summing to 1, got {self.class_priors}")
            if self.label_mode != "signal" or self.class_strength != 0:
                raise ValueError("class_priors is for no-signal files (label_mode 'signal', class_strength 0): "
                                 "the oracle of unequal classes with a signal is not computed")


# ----------------------------------------------------------------------------------------------- model

def _pink_filter():
    # Paul Kellet's economy 1/f filter: -3 dB/octave from about 0.1 Hz up, at any rate.
    b = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
    a = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])
    return b, a


def _alpha_filter(f0: float = 10.0, r: float = 0.97):
    # A resonator: two poles at +-f0 with radius r (bandwidth about 1.2 Hz).
    w = 2 * np.pi * f0 / SFREQ
    return np.array([1.0]), np.array([1.0, -2 * r * np.cos(w), r * r])


def _impulse_cov(b, a, n: int) -> tuple[np.ndarray, float]:
    """Exact covariance of the samples _BURN_IN.._BURN_IN+n of lfilter(b, a, white noise) started at rest,
    and the gain that scales the process to unit variance at the first written sample."""
    total = _BURN_IN + n
    h = signal.lfilter(b, a, np.r_[1.0, np.zeros(total - 1)])
    # Row i of M: the weights of the white inputs 0..total-1 in output sample _BURN_IN + i.
    idx = (_BURN_IN + np.arange(n))[:, None] - np.arange(total)[None, :]
    m = np.where(idx >= 0, h[np.clip(idx, 0, None)], 0.0)
    cov = m @ m.T
    gain = 1.0 / np.sqrt(cov[0, 0])
    return cov * gain * gain, gain


def _smooth_pattern(rng: np.random.Generator, width: float = 0.6) -> np.ndarray:
    """A random scalp pattern that varies smoothly between neighbouring electrodes (unit RMS)."""
    centre = rng.uniform(-1, 1, 2)
    p = np.exp(-np.sum((_POS - centre) ** 2, axis=1) / (2 * width ** 2)) * rng.choice([-1, 1])
    p = p + 0.35 * rng.standard_normal(N_CH)
    return p / np.sqrt(np.mean(p ** 2))


def _gabor_template(rng: np.random.Generator, n: int = _MAX_SIZE, n_waves: int = 3) -> np.ndarray:
    """A spatio-temporal pattern [channels, n]: Gabor waves (F_LO-F_HI Hz) with smooth scalp patterns."""
    t = np.arange(n) / SFREQ
    out = np.zeros((N_CH, n))
    for _ in range(n_waves):
        lat, f, width = rng.uniform(0.15, 0.9), rng.uniform(F_LO, F_HI), rng.uniform(0.1, 0.25)
        wave = np.exp(-((t - lat) ** 2) / (2 * width ** 2)) * np.cos(2 * np.pi * f * (t - lat) + rng.uniform(0, 2 * np.pi))
        out += _smooth_pattern(rng)[:, None] * wave[None, :]
    return out / np.sqrt(np.mean(out[:, :ORACLE_SAMPLES] ** 2))


def _common_erp(n: int = _MAX_SIZE) -> np.ndarray:
    """The same visual evoked response to every digit (P1, N1, P3): realistic, carries no class."""
    t = np.arange(n) / SFREQ
    occ = np.exp(-((_POS[:, 1] + 0.9) ** 2) / 0.3)
    par = np.exp(-((_POS[:, 1] + 0.4) ** 2) / 0.5)
    bump = lambda lat, w: np.exp(-((t - lat) ** 2) / (2 * w ** 2))  # noqa: E731
    return (3.0 * occ[:, None] * bump(0.10, 0.02) - 4.0 * occ[:, None] * bump(0.17, 0.03)
            + 3.0 * par[:, None] * bump(0.35, 0.08))


@dataclass
class _Model:
    dc: np.ndarray  # [ch]
    noise_sd: np.ndarray  # [ch] per-channel 1/f noise
    shared: np.ndarray  # [ch, 3] shared 1/f source patterns (uV)
    alpha: np.ndarray  # [ch] alpha pattern (uV)
    jitter_sd: float
    white_sd: np.ndarray  # [ch] white sensor/muscle noise floor
    templates: np.ndarray  # [10, ch, _MAX_SIZE] unit-RMS class templates
    erp: np.ndarray  # [ch, _MAX_SIZE]


@lru_cache(maxsize=8)
def _model(seed: int) -> _Model:
    """The fixed parameters of a recording; they depend only on the seed."""
    rng = np.random.default_rng([seed, 1])
    occipital = np.exp(-((_POS[:, 1] + 0.9) ** 2) / 0.4)
    return _Model(dc=rng.uniform(4000, 4500, N_CH), noise_sd=rng.uniform(4.0, 6.0, N_CH),
                  shared=np.stack([4.0 * _smooth_pattern(rng, 0.8) for _ in range(3)], axis=1),
                  alpha=6.0 * occipital + 0.5, jitter_sd=8.0,
                  white_sd=rng.uniform(WHITE_LO, WHITE_HI, N_CH),
                  templates=np.stack([_gabor_template(rng) for _ in range(10)]), erp=_common_erp())


@lru_cache(maxsize=4)
def _background_cov(seed: int) -> np.ndarray:
    """Exact covariance of the Gaussian part of the background over [channels x first 250 samples]."""
    m = _model(seed)
    n = ORACLE_SAMPLES
    t_pink, _ = _impulse_cov(*_pink_filter(), n)
    t_alpha, _ = _impulse_cov(*_alpha_filter(), n)
    cov = np.kron(np.diag(m.noise_sd ** 2) + m.shared @ m.shared.T, t_pink)
    cov += np.kron(np.outer(m.alpha, m.alpha), t_alpha)
    cov += np.kron(np.eye(N_CH) * m.jitter_sd ** 2, np.ones((n, n)))
    cov += np.diag(np.repeat(m.white_sd ** 2 + (1 / 7.8) ** 2 / 12, n))  # white floor + quantisation
    cov += np.kron(np.outer(_FRONTAL_BLINK, _FRONTAL_BLINK), _blink_time_cov(n))
    return cov


def _blink_time_cov(n: int) -> np.ndarray:
    """Second moment over time of the blink term (probability x amplitude^2 x bump products), by
    quadrature over the uniform blink time and width: blinks enter the oracle as the noise they are."""
    t = np.arange(n) / SFREQ
    t0 = np.linspace(BLINK_T[0], BLINK_T[1], 400)
    acc = np.zeros((n, n))
    for w in np.linspace(BLINK_W[0], BLINK_W[1], 9):
        bumps = np.exp(-((t[None, :] - t0[:, None]) ** 2) / (2 * w * w))  # [t0, t]
        acc += bumps.T @ bumps / (len(t0) * 9)
    a2 = (BLINK_AMP[1] ** 3 - BLINK_AMP[0] ** 3) / (3 * (BLINK_AMP[1] - BLINK_AMP[0]))  # E[amp^2]
    return BLINK_P * a2 * acc


@lru_cache(maxsize=4)
def _cholesky(seed: int) -> np.ndarray:
    return linalg.cholesky(_background_cov(seed), lower=True)


class OracleClassifier:
    """The Bayes classifier of the Gaussian model: knows the templates and the background covariance."""

    def __init__(self, spec: SyntheticSpec):
        m = _model(spec.seed)
        n = ORACLE_SAMPLES
        self.chol = _cholesky(spec.seed)
        amp = spec.class_strength * _CLASS_AMP if spec.label_mode == "signal" else 0.0
        means = (m.dc[None, :, None] + m.erp[None, :, :n] + amp * m.templates[:, :, :n]).reshape(10, -1)
        self.white_means = linalg.solve_triangular(self.chol, means.T, lower=True).T  # [10, D]

    def scores(self, signals: np.ndarray) -> np.ndarray:
        """Log-likelihood (up to a constant) of each digit for events [n, 14, >=250]: higher is likelier."""
        x = np.asarray(signals, np.float64)[:, :, :ORACLE_SAMPLES].reshape(len(signals), -1)
        wx = linalg.solve_triangular(self.chol, x.T, lower=True).T
        d2 = (wx ** 2).sum(1)[:, None] - 2 * wx @ self.white_means.T + (self.white_means ** 2).sum(1)[None, :]
        return -0.5 * d2


def oracle_accuracy(spec: SyntheticSpec, n_mc: int = 200_000) -> tuple[float, float]:
    """Bayes top-1 accuracy over the 10 digits and its Monte Carlo standard error (see _oracle)."""
    return _oracle(spec.seed, float(spec.class_strength), spec.label_mode, int(n_mc))


@lru_cache(maxsize=32)
def _oracle(seed: int, strength: float, label_mode: str, n_mc: int) -> tuple[float, float]:
    """Bayes top-1 accuracy over the 10 digits and its Monte Carlo standard error.

    Only the differences between whitened class means matter, so the simulation runs in their (at most
    10-dimensional) span, where the background is white: exact for the Gaussian model, and fast.
    """
    if label_mode != "signal" or strength == 0:
        return 0.1, 0.0  # no per-event class information: the best is a guess
    spec = SyntheticSpec(class_strength=strength, seed=seed, label_mode=label_mode)
    wm = OracleClassifier(spec).white_means
    centred = wm - wm.mean(0)
    q, _ = np.linalg.qr(centred.T)  # [D, 10] orthonormal basis of the span
    m = centred @ q  # [10, 10] class means in that basis
    rng = np.random.default_rng([spec.seed, 2])
    y = np.repeat(np.arange(10), n_mc // 10)
    z = m[y] + rng.standard_normal((y.size, m.shape[1]))
    pred = np.argmin(((z[:, None, :] - m[None, :, :]) ** 2).sum(-1), axis=1)
    acc = float((pred == y).mean())
    return acc, float(np.sqrt(acc * (1 - acc) / y.size))


# ----------------------------------------------------------------------------------------------- events

def _event_plan(spec: SyntheticSpec) -> dict[str, np.ndarray]:
    """Per-event choices (codes, sizes, ids, blinks, blocks), drawn once from the seed."""
    rng = np.random.default_rng([spec.seed, 3])
    n = spec.n_events
    random = rng.random(n) < spec.random_fraction
    blocks = np.zeros(n, np.int64)
    block_codes = np.zeros(0, np.int64)
    if spec.label_mode == "session_blocks":
        blocks = np.arange(n) * spec.n_blocks // n
        block_codes = rng.permutation(np.resize(np.arange(10), spec.n_blocks))
        codes = block_codes[blocks]
    elif spec.class_priors is not None:
        codes = rng.choice(10, size=n, p=np.asarray(spec.class_priors, dtype=float))
    else:
        codes = rng.integers(0, 10, n)
    codes = np.where(random, -1, codes)
    sizes = np.clip(np.rint(rng.normal(258, 4, n)), ORACLE_SAMPLES, _MAX_SIZE).astype(np.int64)
    gaps = np.where(rng.random(n) < 0.05, rng.integers(2, 5, n), 1)  # other devices' ids in between
    ids = spec.first_event_id + np.cumsum(gaps) - gaps[0]
    blink = rng.random(n) < BLINK_P
    return dict(codes=codes, sizes=sizes, ids=ids, blocks=blocks, block_codes=block_codes,
                blink=blink, blink_amp=rng.uniform(*BLINK_AMP, n), blink_t=rng.uniform(*BLINK_T, n),
                blink_w=rng.uniform(*BLINK_W, n))


def _session_signatures(spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray]:
    """session_blocks: each block's DC offsets [blocks, ch] and time-locked pattern [blocks, ch, t]."""
    rng = np.random.default_rng([spec.seed, 4])
    offsets = rng.normal(0, 25.0, (spec.n_blocks, N_CH))
    patterns = np.stack([_gabor_template(rng) for _ in range(spec.n_blocks)])
    return offsets, patterns * spec.session_strength * _CLASS_AMP


def _simulate(spec: SyntheticSpec, plan: dict, lo: int, hi: int, sig=None) -> np.ndarray:
    """Signals in uV, float64 [hi-lo, 14, _MAX_SIZE], before quantisation."""
    m = _model(spec.seed)
    rng = np.random.default_rng([spec.seed, 5, lo])
    nb, total = hi - lo, _BURN_IN + _MAX_SIZE
    b, a = _pink_filter()
    _, g_pink = _impulse_cov(b, a, 1)
    ba, aa = _alpha_filter()
    _, g_alpha = _impulse_cov(ba, aa, 1)
    own = signal.lfilter(b, a, rng.standard_normal((nb, N_CH, total)), axis=-1)[..., _BURN_IN:] * g_pink
    shared = signal.lfilter(b, a, rng.standard_normal((nb, 3, total)), axis=-1)[..., _BURN_IN:] * g_pink
    alpha = signal.lfilter(ba, aa, rng.standard_normal((nb, total)), axis=-1)[..., _BURN_IN:] * g_alpha
    x = own * m.noise_sd[None, :, None]
    x += np.einsum("cs,nst->nct", m.shared, shared)
    x += m.alpha[None, :, None] * alpha[:, None, :]
    x += m.white_sd[None, :, None] * rng.standard_normal((nb, N_CH, _MAX_SIZE))
    x += (m.dc[None, :] + m.jitter_sd * rng.standard_normal((nb, N_CH)))[:, :, None]
    codes = plan["codes"][lo:hi]
    digit = codes >= 0
    x[digit] += m.erp[None]
    if spec.label_mode == "signal" and spec.class_strength > 0:
        x[digit] += spec.class_strength * _CLASS_AMP * m.templates[codes[digit]]
    if spec.label_mode == "session_blocks":
        offsets, patterns = sig
        blk = plan["blocks"][lo:hi]
        x += offsets[blk][:, :, None]
        x[digit] += patterns[blk[digit]]
    t = np.arange(_MAX_SIZE) / SFREQ
    for i in np.flatnonzero(plan["blink"][lo:hi]):
        j = lo + i
        bump = plan["blink_amp"][j] * np.exp(-((t - plan["blink_t"][j]) ** 2) / (2 * plan["blink_w"][j] ** 2))
        x[i] += _FRONTAL_BLINK[:, None] * bump[None, :]
    return x
