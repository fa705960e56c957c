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
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(np.asarray(labels), np.asarray(pred), labels=np.arange(n_classes)).astype(np.int64)


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
    """Exact (Clopper-Pearson) binomial confidence interval for a proportion, from SciPy's ``binomtest``."""
    if n <= 0:
        return (float("nan"), float("nan"))
    ci = _st.binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def class_shares(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Share of each class among ``labels`` (``float64 [n_classes]``; all zero for no labels)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must be in 0..{n_classes - 1}; got {labels.min()}..{labels.max()}")
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return counts / counts.sum() if counts.sum() else counts


def chance_level(labels: np.ndarray, k: int, n_classes: int) -> float:
    """The best top-k accuracy a label-blind guess can reach on these events: the share of their k most
    frequent classes (k / n_classes when the classes are balanced).

    A scorer that ignores its input can do no better than always naming the k most frequent classes of the
    very events it is tested on. On a recording with 40 % zeros that is 0.40 top-1, not 0.10: an accuracy must
    beat this, not the uniform 1 / n_classes, before it says anything about the EEG.
    """
    if not 1 <= k <= n_classes:
        raise ValueError(f"k={k} must be between 1 and the number of classes ({n_classes})")
    shares = class_shares(labels, n_classes)
    if not shares.sum():
        return float("nan")
    return float(np.sort(shares)[::-1][:k].sum())


def majority_class_scores(train_labels: np.ndarray, n: int, n_classes: int) -> np.ndarray:
    """Scores ``[n, n_classes]`` of the plainest real classifier: class frequencies of the TRAINING events,
    the same for every test event (its top-1 is the training set's majority class; ties go to the lower class)."""
    shares = class_shares(train_labels, n_classes)
    return np.tile(shares, (int(n), 1))


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
    """Top-k accuracy with its Clopper-Pearson interval and the chance level of these labels' own class mix
    (:func:`chance_level`: k / n_classes only when the classes are balanced)."""
    scores = np.asarray(scores)
    n_classes = n_classes or scores.shape[1]
    correct = topk_correct(scores, labels, k)
    n = int(correct.size)
    hits = int(correct.sum())
    p = chance_level(labels, k, n_classes) if n else k / n_classes
    lo, hi = clopper_pearson(hits, n)
    return Accuracy(value=hits / n if n else float("nan"), n=n, k=k, chance=p,
                    ci95_low=lo, ci95_high=hi, chance_upper95=chance_upper95(n, p))


def permutation_test(scores: np.ndarray, labels: np.ndarray, k: int = 1, n_permutations: int = 1000,
                     seed: int = 0) -> dict:
    """Top-k accuracy against the distribution obtained by shuffling the labels.

    Shuffling keeps the test events' own class mix, so the null already reflects unbalanced classes (a scorer
    that always names the majority class is at the null's centre, not above it). Returns the observed accuracy,
    the null mean and 95th percentile, and the p-value (SciPy's ``permutation_test``: one-sided, with the +1
    correction of a randomised test, so it is never 0; exact when n! is at most ``n_permutations``).
    """
    labels = np.asarray(labels)
    hits = top_k_classes(np.asarray(scores), k)  # computed once; each permutation only reorders the labels

    def accuracy(lab, axis=-1):  # vectorised over a batch of permuted label vectors [..., n]
        return (hits == np.asarray(lab)[..., None]).any(-1).mean(axis=axis)

    res = _st.permutation_test((labels,), accuracy, permutation_type="pairings", n_resamples=n_permutations,
                               alternative="greater", vectorized=True, rng=np.random.default_rng(seed))
    null = np.asarray(res.null_distribution)
    return {"observed": float(res.statistic), "null_mean": float(null.mean()),
            "null_q95": float(np.quantile(null, 0.95)), "p_value": float(res.pvalue),
            "n_permutations": int(n_permutations), "k": int(k)}
