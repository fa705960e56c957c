"""Splits: the default is contiguous in time and disjoint; the leaky demonstrations leak as advertised."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import splits


def test_block_split_is_contiguous_in_time_and_disjoint():
    rng = np.random.default_rng(0)
    ids = np.cumsum(rng.integers(1, 4, 1000)) + 5000  # increasing with gaps, like the file
    shuffled = rng.permutation(1000)  # the events array need not be in time order
    s = splits.block_split(ids[shuffled])
    assert s.sizes == {"train": 700, "val": 150, "test": 150}
    t_train, t_val, t_test = (ids[shuffled][getattr(s, k)] for k in ("train", "val", "test"))
    assert t_train.max() < t_val.min() and t_val.max() < t_test.min()  # whole blocks of time
    splits.assert_disjoint(s, ids[shuffled])
    assert not s.leaky and "block" in s.method


def test_block_split_sizes_and_gap():
    ids = np.arange(100)
    s = splits.block_split(ids, fractions=(0.6, 0.2, 0.2), gap=3)  # 3 events out around each boundary
    assert s.train.tolist() == list(range(0, 59))
    assert s.val.tolist() == list(range(62, 79))
    assert s.test.tolist() == list(range(82, 100))
    s0 = splits.block_split(ids, fractions=(0.8, 0.0, 0.2))
    assert s0.val.size == 0 and s0.train.tolist() == list(range(80)) and s0.test.tolist() == list(range(80, 100))


@pytest.mark.parametrize("gap", [0, 1, 2, 3, 7])
def test_blocks_are_separated_by_at_least_the_gap_in_event_id_order(gap):
    rng = np.random.default_rng(gap)
    ids = np.cumsum(rng.integers(1, 4, 500)) + 10**9  # increasing with holes, then shuffled like any array
    ids = ids[rng.permutation(500)]
    s = splits.block_split(ids, gap=gap)
    assert f"gap {gap}" in s.method
    rank = np.empty(500, np.int64)
    rank[np.argsort(ids)] = np.arange(500)  # position of each event on the time line
    train, val, test = (rank[getattr(s, k)] for k in ("train", "val", "test"))
    assert val.min() - train.max() - 1 >= gap and test.min() - val.max() - 1 >= gap  # events left between
    assert val.min() - train.max() - 1 == gap == test.min() - val.max() - 1  # and no more than that
    assert s.train.size + s.val.size + s.test.size == 500 - 2 * gap


def test_a_gap_that_empties_a_block_is_refused():
    ids = np.arange(20)  # val and test have 3 events each
    assert splits.block_split(ids, gap=2).sizes == {"train": 13, "val": 1, "test": 2}
    for gap in (3, 6, 40):
        with pytest.raises(ValueError, match=rf"the (val|test|train) block is empty.*split_gap_events={gap}"):
            splits.block_split(ids, gap=gap)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="split_gap_events"):
            splits.block_split(ids, gap=bad)


@pytest.mark.parametrize("fractions", [(0.7, 0.2, 0.2), (0.0, 0.5, 0.5), (0.5, -0.1, 0.6), (0.5, 0.5)])
def test_bad_fractions_are_refused(fractions):
    with pytest.raises(ValueError, match="fractions"):
        splits.block_split(np.arange(10), fractions=fractions)


def test_duplicate_event_ids_are_refused():
    with pytest.raises(ValueError, match="duplicates"):
        splits.block_split(np.array([1, 2, 2, 3]))


def test_assert_disjoint_names_the_offending_ids():
    ids = np.array([10, 11, 12, 13, 14, 15])
    bad = splits.Split(np.array([0, 1, 2]), np.array([3]), np.array([4, 5]), method="hand-made")
    splits.assert_disjoint(bad, ids)  # fine
    ids_dup = np.array([10, 11, 12, 13, 14, 11])  # event 11 appears in train (index 1) and test (index 5)
    with pytest.raises(ValueError, match=r"train & test: 1 event ids, e.g. \[11\]"):
        splits.assert_disjoint(bad, ids_dup)
    overlapping = splits.Split(np.array([0, 1]), np.array([1]), np.array([2]), method="hand-made")
    with pytest.raises(ValueError, match="overlap"):
        overlapping.check(3)


def test_subset_keeps_membership():
    s = splits.block_split(np.arange(20))
    codes = np.where(np.arange(20) % 5 == 0, -1, 1)
    d = s.subset(codes >= 0)
    assert (codes[d.train] >= 0).all() and d.train.size == 14 - 3
    assert set(d.test.tolist()) <= set(s.test.tolist())


def test_random_event_split_is_labelled_leaky_and_interleaves_time():
    ids = np.arange(1000)
    s = splits.random_event_split(ids, seed=1)
    assert s.leaky and "LEAKY" in s.method
    splits.assert_disjoint(s, ids)
    # Test events have time neighbours in training: the leak a block split prevents.
    neighbours = np.isin(s.test + 1, s.train) | np.isin(s.test - 1, s.train)
    assert neighbours.mean() > 0.8
    b = splits.block_split(ids)
    assert (np.isin(b.test + 1, b.train) | np.isin(b.test - 1, b.train)).sum() == 0


def test_random_row_split_leaks_sibling_channels():
    ids = np.arange(500)
    r = splits.random_row_split(ids, n_channels=14, seed=0)
    assert r.train.size + r.val.size + r.test.size == 500 * 14
    assert len(np.intersect1d(r.train, r.test)) == 0  # disjoint as rows...
    assert r.leaked_fraction > 0.99  # ...but nearly every test row's event is also in training
    assert abs(r.mean_siblings_in_train - 0.7 * 13) < 0.3  # about 9 of its 13 sibling channels
    assert "LEAKY" in r.method


def test_class_counts():
    s = splits.block_split(np.arange(10), fractions=(0.6, 0.2, 0.2))
    codes = np.array([0, 1, 0, 1, 0, 1, 2, 2, -1, 3])
    assert splits.class_counts(s, codes) == {"train": {0: 3, 1: 3}, "val": {2: 2}, "test": {-1: 1, 3: 1}}
