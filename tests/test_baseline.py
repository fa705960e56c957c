"""Linear decodability baseline: known answers on constructed features, and the targets on the
project's synthetic data (>= 0.8 x oracle with a class signal; chance without one)."""
import json

import numpy as np
import pytest

from helpers import baseline as B
from helpers import features as F
from helpers.config import Config
from helpers.stats import chance_interval, chance_level


def clusters(n, sep, seed, dim=20):
    """10 Gaussian classes, unit noise, class means sep apart along their own axes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    X = rng.standard_normal((n, dim))
    X[np.arange(n), y] += sep
    return X, y


def test_separable_classes_are_perfect():
    Xtr, ytr = clusters(1000, 12.0, 0)
    Xte, yte = clusters(300, 12.0, 1)
    r = B.linear_baseline(Xtr, ytr, Xte, yte)
    assert r.top1.value == 1.0 and r.top3.value == 1.0
    # chance is the test events' own class mix, not an assumed 1/10
    assert r.top1.chance == pytest.approx(chance_level(yte, 1, 10)) and r.top3.chance == pytest.approx(chance_level(yte, 3, 10))
    assert r.scores.shape == (300, 10)
    np.testing.assert_array_equal(r.predictions, yte)
    np.testing.assert_array_equal(r.confusion, np.diag(np.bincount(yte, minlength=10)))


def test_known_accuracy_for_overlapping_classes():
    # Means sep=2 apart on orthogonal axes: the Bayes rule picks the largest coordinate; its accuracy
    # is P(N(2,1) > max of 9 N(0,1)), about 0.65 (computed here by Monte Carlo with the true means).
    rng = np.random.default_rng(2)
    z = rng.standard_normal((200_000, 10))
    z[:, 0] += 2.0
    bayes = float((z.argmax(1) == 0).mean())
    Xtr, ytr = clusters(5000, 2.0, 3, dim=10)
    Xte, yte = clusters(4000, 2.0, 4, dim=10)
    r = B.linear_baseline(Xtr, ytr, Xte, yte)
    assert r.top1.value == pytest.approx(bayes, abs=0.03)
    assert r.top1.ci95_low < bayes < r.top1.ci95_high + 0.02
    assert r.top3.value > r.top1.value


def test_logreg_chooses_c_on_validation_and_is_deterministic():
    Xtr, ytr = clusters(600, 3.0, 0)
    Xva, yva = clusters(300, 3.0, 1)
    Xte, yte = clusters(300, 3.0, 2)
    a = B.linear_baseline(Xtr, ytr, Xte, yte, Xva, yva, method="logreg")
    b = B.linear_baseline(Xtr, ytr, Xte, yte, Xva, yva, method="logreg")
    np.testing.assert_array_equal(a.scores, b.scores)
    by_c = a.params["val_top1_by_C"]
    assert a.params["C"] in B.LOGREG_C_GRID
    assert by_c[str(a.params["C"])] == max(by_c.values())
    assert a.val_top1.value == pytest.approx(by_c[str(a.params["C"])])
    assert a.top1.value > 0.8
    with pytest.raises(ValueError, match="X_val and y_val"):
        B.linear_baseline(Xtr, ytr, Xte, yte, method="logreg")


def test_to_dict_is_plain_json():
    Xtr, ytr = clusters(500, 3.0, 0)
    Xte, yte = clusters(200, 3.0, 1)
    r = B.linear_baseline(Xtr, ytr, Xte, yte, Xte, yte)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["n_test"] == 200 and d["n_train"] == 500 and d["method"] == "lda"
    assert d["top1"]["value"] == pytest.approx(r.top1.value) and d["top1"]["chance"] == pytest.approx(chance_level(yte, 1, 10))
    assert np.array(d["confusion"]).sum() == 200
    assert d["val_top1"]["n"] == 200


def test_digit_missing_from_training_gets_zero_score():
    Xtr, ytr = clusters(500, 8.0, 0)
    keep = ytr != 7
    Xte, yte = clusters(100, 8.0, 1)
    r = B.linear_baseline(Xtr[keep], ytr[keep], Xte, yte)
    assert r.scores.shape == (100, 10) and np.all(r.scores[:, 7] == 0)
    assert not np.any(r.predictions == 7)


def test_bad_input_is_a_clear_error():
    X, y = clusters(50, 3.0, 0)
    bad = y.copy()
    bad[0] = -1
    with pytest.raises(ValueError, match="digit_events"):
        B.linear_baseline(X, bad, X, y)
    with pytest.raises(ValueError, match=r"y_test must be \[n_events\]"):
        B.linear_baseline(X, y, X, y[:10])
    Xn = X.copy()
    Xn[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        B.linear_baseline(Xn, y, X, y)
    with pytest.raises(ValueError, match="features"):
        B.linear_baseline(X, y, X[:, :5], y)
    with pytest.raises(ValueError, match="method"):
        B.linear_baseline(X, y, X, y, method="svm")


# ---------------------------------------------------------------------------- synthetic targets

def synthetic_baseline(tmp_path, strength, n_events=2500, label_mode="signal"):
    """Write the project's synthetic file, parse it, split in contiguous blocks, features, baseline."""
    from helpers import mindbigdata, splits, synthetic

    spec = synthetic.SyntheticSpec(n_events=n_events, class_strength=strength, seed=0, label_mode=label_mode)
    info = synthetic.write_synthetic(tmp_path / f"syn_{label_mode}_{strength}.txt", spec)
    events, _ = mindbigdata.parse_file(info.path)
    events, n_random = F.digit_events(events)
    assert n_random > 0  # the generator writes a few code -1 captures; they are excluded
    split = splits.block_split(events.event_ids)
    pipe = F.FeaturePipeline(F.FeatureConfig()).fit(events, split.train)
    train, val, test = (pipe.transform(events, idx) for idx in (split.train, split.val, split.test))
    # Held-out blocks: every test event comes after every training event in time.
    assert events.event_ids[split.test].min() > events.event_ids[split.train].max()
    return info, B.features_baseline(train, test, val), test


def test_recovers_most_of_the_known_signal_and_never_beats_the_oracle(tmp_path):
    # Measured here: 0.566 against the Bayes oracle's 0.70 (0.81x). The bar is set far below that (0.6x), so another
    # CPU, BLAS or split gap cannot break it, yet a broken feature chain (chance, 0.12) cannot pass it; and no
    # classifier may beat the Bayes accuracy beyond its own sampling interval.
    strength = Config().synthetic_strength  # the project's default synthetic data
    info, r, test = synthetic_baseline(tmp_path, strength)
    assert r.top1.n == test.n_kept and test.n_rejected < 0.25 * test.n_events
    assert r.top1.value >= 0.6 * info.oracle_top1, (str(r), info.oracle_top1)
    assert r.top1.ci95_low <= info.oracle_top1, (str(r), info.oracle_top1)
    assert r.top1.ci95_low > r.top1.chance_upper95


def test_stays_at_chance_without_class_signal(tmp_path):
    _, r, _ = synthetic_baseline(tmp_path, 0.0, n_events=2000)
    # Without information no classifier beats the best label-blind guess (the majority share) beyond its 95 %
    # bound; it may well score below it (it does not know which class is the majority in the test block).
    assert r.top1.value <= r.top1.chance_upper95, str(r)
    assert r.top3.value <= r.top3.chance_upper95, str(r)
    lo, _ = chance_interval(r.top1.n, 0.1)
    assert r.top1.value >= lo / 2, str(r)  # and it is not broken (a broken scorer can sit far below chance)
