import numpy as np
import pytest

from helpers.stats import (accuracy_report, chance_interval, chance_level, chance_upper95, class_shares,
                           clopper_pearson, majority_class_scores, permutation_test, topk_accuracy)


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


def test_chance_upper_bound_holds_for_label_blind_guessers_by_simulation():
    # What the bound promises, checked by drawing: a guesser that ignores the EEG exceeds it in at most ~5 % of
    # test sets, and reaches it often enough that the bound is not absurdly loose.
    rng = np.random.default_rng(0)
    n, shares = 343, np.array([0.4] + [0.6 / 9] * 9)
    bound = chance_upper95(n, shares.max())
    draws = 4000
    labels = rng.choice(10, size=(draws, n), p=shares)
    majority_guess_acc = (labels == 0).mean(axis=1)  # always guess the majority digit
    exceed = (majority_guess_acc > bound).mean()
    assert exceed <= 0.06
    assert (majority_guess_acc > chance_upper95(n, 0.1)).mean() > 0.99  # the uniform bound would be fooled
    lo, hi = chance_interval(n, shares.max())
    inside = ((majority_guess_acc >= lo) & (majority_guess_acc <= hi)).mean()
    assert 0.93 <= inside <= 1.0


def test_chance_follows_the_class_mix_of_the_events():
    balanced = np.repeat(np.arange(10), 30)
    assert chance_level(balanced, 1, 10) == pytest.approx(0.1) and chance_level(balanced, 3, 10) == pytest.approx(0.3)
    skewed = np.r_[np.zeros(40, int), np.repeat(np.arange(1, 10), 5), [9] * 15]  # 40 zeros, 20 nines, 5 each
    assert chance_level(skewed, 1, 10) == pytest.approx(40 / 100)
    assert chance_level(skewed, 3, 10) == pytest.approx((40 + 20 + 5) / 100)
    assert class_shares(skewed, 10).sum() == pytest.approx(1.0)
    # a constant scorer naming the majority class scores exactly chance, and is not "above chance"
    acc = accuracy_report(np.eye(10)[np.zeros(100, int)], skewed, k=1)
    assert acc.value == pytest.approx(0.4) and acc.chance == pytest.approx(0.4) and not acc.above_chance
    with pytest.raises(ValueError, match="k=11"):
        chance_level(skewed, 11, 10)


def test_majority_class_scorer_uses_training_labels_only():
    train = np.r_[np.full(30, 7), np.arange(10)]
    test = np.repeat(np.arange(10), 3)
    scores = majority_class_scores(train, len(test), 10)
    assert scores.shape == (30, 10) and (scores.argmax(1) == 7).all()
    assert topk_accuracy(scores, test, 1) == pytest.approx(0.1)


def test_accuracy_report_carries_its_references():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 300)
    acc = accuracy_report(np.eye(10)[labels], labels, k=1)
    assert acc.value == 1.0 and acc.chance == pytest.approx(chance_level(labels, 1, 10)) and acc.above_chance
    assert set(acc.to_dict()) >= {"value", "n", "chance", "ci95_low", "ci95_high", "chance_upper95"}
    assert "chance" in str(acc)


def test_clopper_pearson_covers_the_true_rate_by_simulation():
    rng = np.random.default_rng(3)
    p, n = 0.23, 120
    hits = rng.binomial(n, p, size=2000)
    covered = np.mean([lo <= p <= hi for lo, hi in (clopper_pearson(int(h), n) for h in hits)])
    assert covered >= 0.95  # exact intervals are conservative: coverage at least the nominal level


def test_permutation_test_separates_signal_from_noise():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 200)
    informative = np.eye(10)[labels] + rng.normal(0, 0.8, (200, 10))
    noise = rng.normal(0, 1, (200, 10))
    assert permutation_test(informative, labels, n_permutations=200)["p_value"] < 0.01
    assert permutation_test(noise, labels, n_permutations=200)["p_value"] > 0.01
