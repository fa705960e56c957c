"""Honest-number utilities: chance levels, binomial intervals, top-k accuracy, permutation tests.

Every accuracy this project reports goes through here, so that each one carries its chance level
and a 95 % interval computed the same way.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as _st


def top_k_classes(scores: np.ndarray, k: int) -> np.ndarray:
    """The k best classes per row of ``scores`` [n, classes], best first, ``int64 [n, k]``.

    Stable argsort on -scores: equal scores keep class order, so a constant scorer is deterministic.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [n, classes], got shape {scores.shape}")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k={k} must be between 1 and the number of classes ({scores.shape[1]})")
    return np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)


def confusion_counts(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``[true, predicted]``, ``int64 [C, C]``, for integer classes already known to be in 0..C-1."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels), np.asarray(pred)), 1)
    return cm


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean per row: is the true label among the k highest scores? Ties broken by class index."""
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores must be [n, classes] matching labels [n]; got {scores.shape} and {labels.shape}")
    return (top_k_classes(scores, k) == labels[:, None]).any(axis=1)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    return float(topk_correct(scores, labels, k).mean()) if len(labels) else float("nan")


def clopper_pearson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval for a proportion."""
    if n <= 0:
        return (float("nan"), float("nan"))
    a = 1.0 - level
    lo = 0.0 if successes == 0 else float(_st.beta.ppf(a / 2, successes, n - successes + 1))
    hi = 1.0 if successes == n else float(_st.beta.ppf(1 - a / 2, successes + 1, n - successes))
    return lo, hi


def chance_interval(n: int, p: float, level: float = 0.95) -> tuple[float, float]:
    """Central interval of accuracies that a chance-level classifier (rate p) produces on n events."""
    if n <= 0:
        return (float("nan"), float("nan"))
    a = 1.0 - level
    return float(_st.binom.ppf(a / 2, n, p) / n), float(_st.binom.ppf(1 - a / 2, n, p) / n)


def chance_upper95(n: int, p: float) -> float:
    """Accuracy a chance-level classifier exceeds with probability below 5 % (one-sided) on n events."""
    if n <= 0:
        return float("nan")
    return float(_st.binom.ppf(0.95, n, p) / n)


@dataclass
class Accuracy:
    """An accuracy with everything needed to judge it."""
    value: float
    n: int
    k: int
    chance: float
    ci95_low: float
    ci95_high: float
    chance_upper95: float

    @property
    def above_chance(self) -> bool:
        return self.ci95_low > self.chance

    def to_dict(self) -> dict:
        return {key: (float(v) if isinstance(v, (float, np.floating)) else int(v)) for key, v in asdict(self).items()}

    def __str__(self) -> str:
        return (f"top-{self.k} {self.value:.3f} (95% CI {self.ci95_low:.3f}-{self.ci95_high:.3f}, n={self.n}; "
                f"chance {self.chance:.3f}, chance upper 95% {self.chance_upper95:.3f})")


def accuracy_report(scores: np.ndarray, labels: np.ndarray, k: int = 1, n_classes: int | None = None) -> Accuracy:
    """Top-k accuracy with its Clopper-Pearson interval and the chance level k / n_classes."""
    scores = np.asarray(scores)
    n_classes = n_classes or scores.shape[1]
    correct = topk_correct(scores, labels, k)
    n = int(correct.size)
    hits = int(correct.sum())
    p = k / n_classes
    lo, hi = clopper_pearson(hits, n)
    return Accuracy(value=hits / n if n else float("nan"), n=n, k=k, chance=p,
                    ci95_low=lo, ci95_high=hi, chance_upper95=chance_upper95(n, p))


def permutation_test(scores: np.ndarray, labels: np.ndarray, k: int = 1, n_permutations: int = 1000,
                     seed: int = 0) -> dict:
    """Top-k accuracy against the distribution obtained by shuffling the labels.

    Returns the observed accuracy, the null mean and 95th percentile, and the p-value
    (with the +1 correction, so it is never 0).
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    observed = topk_accuracy(scores, labels, k)
    null = np.array([topk_accuracy(scores, rng.permutation(labels), k) for _ in range(n_permutations)])
    p = (1 + int((null >= observed).sum())) / (n_permutations + 1)
    return {"observed": float(observed), "null_mean": float(null.mean()),
            "null_q95": float(np.quantile(null, 0.95)), "p_value": float(p),
            "n_permutations": int(n_permutations), "k": int(k)}
