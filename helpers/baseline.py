"""The linear "decodability" reference: how well a plain classifier reads the digit from the features.

A generated image can only be as right about the digit as the EEG allows, so every generator metric is
shown next to this number, computed on the same split and features (docs/DESIGN.md#features).

Default: shrinkage LDA (``solver="lsqr", shrinkage="auto"``, Ledoit-Wolf): no hyper-parameter to tune,
so the validation events are not needed to fit it and it is fully deterministic. The alternative,
``method="logreg"``, is multinomial logistic regression whose C is chosen on the validation events
(then fitted on the training events only, the same data the generator trains on).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from helpers.stats import Accuracy, accuracy_report, confusion_counts
from helpers.stimuli import N_DIGITS

N_CLASSES = N_DIGITS  # one class per stimulus digit
LOGREG_C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@dataclass
class BaselineResult:
    """Test-set accuracy of the linear baseline, with the per-event scores kept for figures."""
    method: str
    top1: Accuracy
    top3: Accuracy
    scores: np.ndarray          # [n_test, 10] class scores (probabilities), column = digit
    predictions: np.ndarray     # [n_test] argmax digit
    labels: np.ndarray          # [n_test] true digit
    n_train: int
    val_top1: Accuracy | None = None
    params: dict = field(default_factory=dict)

    @property
    def confusion(self) -> np.ndarray:
        """[true digit, predicted digit] counts on the test events."""
        return confusion_counts(self.predictions, self.labels, N_CLASSES)

    def to_dict(self) -> dict:
        """Plain Python types (for metrics.json); the per-event scores stay out."""
        return {"method": self.method, "n_train": int(self.n_train), "n_test": int(len(self.labels)),
                "top1": self.top1.to_dict(), "top3": self.top3.to_dict(),
                "val_top1": None if self.val_top1 is None else self.val_top1.to_dict(),
                "params": {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in self.params.items()},
                "confusion": self.confusion.tolist()}

    def __str__(self) -> str:
        return f"linear baseline ({self.method}, n_train={self.n_train}): {self.top1}; {self.top3}"


def _check_xy(X, y, name: str) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"X_{name} must be [n_events, n_features]; got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y_{name} must be [n_events]={X.shape[0]}; got shape {y.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"X_{name} has no events")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"X_{name} contains NaN or infinite values")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= N_CLASSES:
        raise ValueError(f"y_{name} must be digit codes 0-9 (drop code -1 events with "
                         f"helpers.features.digit_events); got values {np.unique(y)[:12].tolist()}")
    return X, y.astype(np.int64)


def _scores10(model, X: np.ndarray) -> np.ndarray:
    """Class probabilities as [n, 10]; a digit absent from training gets probability 0."""
    out = np.zeros((X.shape[0], N_CLASSES))
    out[:, model.classes_.astype(int)] = model.predict_proba(X)
    return out


def _make(method: str, seed: int, C: float | None = None):
    if method == "lda":
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
        return LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))


def linear_baseline(X_train, y_train, X_test, y_test, X_val=None, y_val=None, seed: int = 0,
                    method: str = "lda") -> BaselineResult:
    """Fit a linear classifier on the training features, report top-1/top-3 on the test features.

    ``method="lda"`` (default): shrinkage LDA; the validation set, if given, is only reported.
    ``method="logreg"``: logistic regression, C chosen on the validation set (required) from
    ``LOGREG_C_GRID`` by top-1 accuracy (ties: the smaller C, i.e. the simpler model).
    Accuracies carry chance (k/10) and a Clopper-Pearson 95 % interval (helpers.stats).
    """
    if method not in ("lda", "logreg"):
        raise ValueError(f"method must be 'lda' or 'logreg'; got {method!r}")
    X_train, y_train = _check_xy(X_train, y_train, "train")
    X_test, y_test = _check_xy(X_test, y_test, "test")
    if X_test.shape[1] != X_train.shape[1]:
        raise ValueError(f"X_test has {X_test.shape[1]} features, X_train {X_train.shape[1]}")
    if len(np.unique(y_train)) < 2:
        raise ValueError("y_train must contain at least 2 different digits")
    has_val = X_val is not None or y_val is not None
    if has_val:
        if X_val is None or y_val is None:
            raise ValueError("give both X_val and y_val, or neither")
        X_val, y_val = _check_xy(X_val, y_val, "val")
        if X_val.shape[1] != X_train.shape[1]:
            raise ValueError(f"X_val has {X_val.shape[1]} features, X_train {X_train.shape[1]}")

    params: dict = {}
    if method == "lda":
        model = _make("lda", seed).fit(X_train, y_train)
        params["shrinkage"] = "ledoit-wolf"
    else:
        if not has_val:
            raise ValueError("method='logreg' chooses C on validation events: pass X_val and y_val")
        best = None
        val_acc = {}
        for C in LOGREG_C_GRID:
            m = _make("logreg", seed, C).fit(X_train, y_train)
            val_acc[C] = float((m.predict(X_val) == y_val).mean())
            if best is None or val_acc[C] > val_acc[best[0]]:
                best = (C, m)
        params.update(C=best[0], val_top1_by_C={str(c): a for c, a in val_acc.items()})
        model = best[1]

    scores = _scores10(model, X_test)
    # Same tie rule as helpers.stats.topk_correct (stable, lower digit first).
    predictions = np.argsort(-scores, axis=1, kind="stable")[:, 0]
    val_top1 = accuracy_report(_scores10(model, X_val), y_val, k=1, n_classes=N_CLASSES) if has_val else None
    return BaselineResult(method=method,
                          top1=accuracy_report(scores, y_test, k=1, n_classes=N_CLASSES),
                          top3=accuracy_report(scores, y_test, k=3, n_classes=N_CLASSES),
                          scores=scores, predictions=predictions, labels=y_test, n_train=int(len(y_train)),
                          val_top1=val_top1, params=params)


def features_baseline(train, test, val=None, seed: int = 0, method: str = "lda") -> BaselineResult:
    """:func:`linear_baseline` on FeatureSets (helpers.features), using only the events kept by
    artefact rejection (the project policy; the caller reports the rejected counts)."""
    train, test = train.kept(), test.kept()
    val = None if val is None else val.kept()
    return linear_baseline(train.X, train.labels, test.X, test.labels,
                           None if val is None else val.X, None if val is None else val.labels,
                           seed=seed, method=method)
