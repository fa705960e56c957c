"""Notebook 02's demonstration of leakage: the same digit events split three ways (random channel rows as the
broken prototype did, random events, contiguous blocks of the recording), each scored by a linear classifier on
held-out data, and the table that says which splits leak. The notebooks call these as ``ns.<name>`` through
:mod:`helpers.notebook_support`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


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
