import numpy as np
import pytest
from scipy import stats as st

from helpers.stats import (accuracy_report, chance_interval, chance_upper95, clopper_pearson,
                           permutation_test, topk_accuracy)


def test_topk_on_known_scores():
    scores = np.array([[0.9, 0.1, 0.0], [0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    labels = np.array([0, 1, 2])
    assert topk_accuracy(scores, labels, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(scores, labels, 2) == pytest.approx(2 / 3)
    assert topk_accuracy(scores, labels, 3) == 1.0
    with pytest.raises(ValueError):
        topk_accuracy(scores, labels, 4)


def test_constant_scorer_is_at_chance_on_balanced_labels():
    labels = np.repeat(np.arange(10), 20)
    scores = np.zeros((200, 10))
    assert topk_accuracy(scores, labels, 1) == pytest.approx(0.1)
    assert topk_accuracy(scores, labels, 3) == pytest.approx(0.3)


def test_clopper_pearson_matches_known_values():
    lo, hi = clopper_pearson(5, 10)
    assert lo == pytest.approx(0.187086, abs=1e-5) and hi == pytest.approx(0.812914, abs=1e-5)
    assert clopper_pearson(0, 20)[0] == 0.0 and clopper_pearson(20, 20)[1] == 1.0


def test_chance_bounds():
    n = 500
    assert chance_upper95(n, 0.1) == pytest.approx(st.binom.ppf(0.95, n, 0.1) / n)
    lo, hi = chance_interval(n, 0.1)
    assert lo < 0.1 < hi


def test_accuracy_report_carries_its_references():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 300)
    acc = accuracy_report(np.eye(10)[labels], labels, k=1)
    assert acc.value == 1.0 and acc.chance == pytest.approx(0.1) and acc.above_chance
    assert set(acc.to_dict()) >= {"value", "n", "chance", "ci95_low", "ci95_high", "chance_upper95"}
    assert "chance" in str(acc)


def test_permutation_test_separates_signal_from_noise():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 200)
    informative = np.eye(10)[labels] + rng.normal(0, 0.8, (200, 10))
    noise = rng.normal(0, 1, (200, 10))
    assert permutation_test(informative, labels, n_permutations=200)["p_value"] < 0.01
    assert permutation_test(noise, labels, n_permutations=200)["p_value"] > 0.01
