"""Train / validation / test splits by event, in contiguous blocks of time (docs/DESIGN.md#splits).

File order is time order in MindBigData, and a single subject was recorded over two years: adjacent
events share the headset's state. So the default split cuts the time line into three contiguous blocks
(70 / 15 / 15), and no event, nor any stretch of adjacent events, sits on both sides.

``random_event_split`` and ``random_row_split`` exist only to *demonstrate* leakage: the second one is
what the original prototype did (single channels split at random, so most of the sibling channels of
every test event were in training).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


def _check_fractions(fractions) -> tuple[float, float, float]:
    f = tuple(float(x) for x in fractions)
    if len(f) != 3:
        raise ValueError(f"fractions must be (train, val, test); got {fractions!r}")
    if min(f) < 0 or f[0] <= 0 or abs(sum(f) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be >= 0 with train > 0 and sum to 1; got {fractions!r}")
    return f


@dataclass
class Split:
    """Indices into the events array (not event ids). ``method`` says how they were made."""
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    method: str

    def check(self, n_events: int | None = None) -> "Split":
        """Raise ValueError unless the three parts are integer, in range and pairwise disjoint."""
        parts = {"train": self.train, "val": self.val, "test": self.test}
        for name, idx in parts.items():
            if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
                raise ValueError(f"split {name}: expected a 1-d integer index array, got {idx.dtype} {idx.shape}")
            if idx.size and (idx.min() < 0 or (n_events is not None and idx.max() >= n_events)):
                raise ValueError(f"split {name}: indices outside 0..{n_events}")
            if np.unique(idx).size != idx.size:
                raise ValueError(f"split {name}: an index appears twice")
        allidx = np.concatenate(list(parts.values()))
        if np.unique(allidx).size != allidx.size:
            shared = np.intersect1d(self.train, self.test)
            raise ValueError(f"split parts overlap (e.g. train & test share indices {shared[:10].tolist()})")
        return self

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": int(self.train.size), "val": int(self.val.size), "test": int(self.test.size)}

    @property
    def leaky(self) -> bool:
        """True for the demonstration splits that leak by construction."""
        return "LEAKY" in self.method

    def subset(self, mask: np.ndarray) -> "Split":
        """Keep only the events where ``mask`` (over all events) is true, e.g. ``codes >= 0``."""
        mask = np.asarray(mask, bool)
        return Split(self.train[mask[self.train]], self.val[mask[self.val]], self.test[mask[self.test]], self.method)

    def to_dict(self) -> dict:
        return {"method": self.method, **self.sizes}


def block_split(event_ids, fractions=DEFAULT_FRACTIONS, gap: int = 0) -> Split:
    """Contiguous blocks of events in time order (sorted by event id): first ``fractions[0]`` of the
    time line for training, the next part for validation, the last for testing.

    ``gap`` (config ``split_gap_events``) events are left out between consecutive blocks, centred on each
    boundary, so that the last event of one block and the first of the next are at least ``gap + 1``
    positions apart in event-id order: adjacent events share the headset's state, and a guard band keeps
    that shared state from linking training to evaluation. A gap that would leave a requested block (share
    > 0) empty is refused. A share of 0 gives an empty part (the run's config refuses it; demos may use it).
    """
    f = _check_fractions(fractions)
    ids = np.asarray(event_ids)
    if ids.ndim != 1:
        raise ValueError(f"event_ids must be 1-d, got shape {ids.shape}")
    if np.unique(ids).size != ids.size:
        raise ValueError("event_ids contain duplicates: an event id must name one event")
    if isinstance(gap, bool) or int(gap) != gap or gap < 0:
        raise ValueError(f"split_gap_events (gap) must be a whole number >= 0, got {gap!r}")
    gap = int(gap)
    order = np.argsort(ids, kind="stable")
    n = ids.size
    a, b = int(round(f[0] * n)), int(round((f[0] + f[1]) * n))
    start, end = [0, a, b], [a, b, n]  # train, val, test; a share of 0 is an empty block
    present = [k for k in range(3) if f[k] > 0]
    for p, q in zip(present, present[1:]):  # each boundary between two requested blocks gets the gap
        boundary = end[p]
        end[p], start[q] = boundary - gap // 2, boundary + gap - gap // 2
    parts = [order[max(0, s):max(0, min(n, e))] for s, e in zip(start, end)]
    for k, name in enumerate(("train", "val", "test")):
        if f[k] > 0 and parts[k].size == 0:
            why = f"split_gap_events={gap} leaves no {name} event" if gap else f"no {name} event is left"
            raise ValueError(f"the {name} block is empty: with {n} events and split_fractions {f}, {why}; "
                             f"use a smaller split_gap_events or more events")
    return Split(*(np.sort(p) for p in parts), method=f"block (contiguous in time, gap {gap})").check(n)


def assert_disjoint(split: Split, event_ids) -> None:
    """Raise ValueError naming the event ids that are in more than one part of the split."""
    ids = np.asarray(event_ids)
    parts = {"train": ids[split.train], "val": ids[split.val], "test": ids[split.test]}
    problems = []
    for x, y in (("train", "val"), ("train", "test"), ("val", "test")):
        both = np.intersect1d(parts[x], parts[y])
        if both.size:
            problems.append(f"{x} & {y}: {both.size} event ids, e.g. {both[:10].tolist()}")
    for name, p in parts.items():
        u, c = np.unique(p, return_counts=True)
        if (c > 1).any():
            problems.append(f"{name} repeats event ids {u[c > 1][:10].tolist()}")
    if problems:
        raise ValueError("split is not disjoint by event id: " + "; ".join(problems))


def random_event_split(event_ids, fractions=DEFAULT_FRACTIONS, seed: int = 0) -> Split:
    """LEAKAGE DEMONSTRATION: events shuffled at random. Each test event has its time neighbours in
    training, so anything that drifts slowly (headset, session) helps to 'decode' it."""
    f = _check_fractions(fractions)
    n = len(event_ids)
    order = np.random.default_rng(seed).permutation(n)
    a, b = int(round(f[0] * n)), int(round((f[0] + f[1]) * n))
    return Split(np.sort(order[:a]), np.sort(order[a:b]), np.sort(order[b:]),
                 method="random_event (LEAKY demonstration)").check(n)


@dataclass
class RowSplit:
    """LEAKAGE DEMONSTRATION: indices of rows (row = event * n_channels + channel)."""
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    n_channels: int
    leaked_fraction: float  # share of test rows whose event has at least one other channel in training
    mean_siblings_in_train: float  # per test row: how many of its event's other channels are in training
    method: str = "random_row (LEAKY demonstration, as in the original prototype)"

    def events_of(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows) // self.n_channels


def random_row_split(event_ids, n_channels: int = 14, fractions=DEFAULT_FRACTIONS, seed: int = 0) -> RowSplit:
    """LEAKAGE DEMONSTRATION: what the original prototype did. Each row is one channel of one event,
    rows are shuffled, so about 70 % of the 13 sibling channels of every test row are in training."""
    f = _check_fractions(fractions)
    n_rows = len(event_ids) * n_channels
    order = np.random.default_rng(seed).permutation(n_rows)
    a, b = int(round(f[0] * n_rows)), int(round((f[0] + f[1]) * n_rows))
    train, val, test = np.sort(order[:a]), np.sort(order[a:b]), np.sort(order[b:])
    in_train = np.bincount(train // n_channels, minlength=len(event_ids))
    sib = in_train[test // n_channels]  # a test row is never in training itself, so these are siblings
    return RowSplit(train, val, test, n_channels,
                    leaked_fraction=float((sib > 0).mean()) if test.size else 0.0,
                    mean_siblings_in_train=float(sib.mean()) if test.size else 0.0)


def class_counts(split: Split, codes) -> dict[str, dict[int, int]]:
    """Per part, how many events of each code: a quick look at balance after a block split."""
    codes = np.asarray(codes)
    out = {}
    for name in ("train", "val", "test"):
        u, c = np.unique(codes[getattr(split, name)], return_counts=True)
        out[name] = {int(k): int(v) for k, v in zip(u, c)}
    return out
