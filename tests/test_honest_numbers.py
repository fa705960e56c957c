"""Numbers that stay honest on unbalanced data: chance follows the test events' class mix, every accuracy has a
label-blind reference, and SSIM / pixel correlation have references of their own."""
import numpy as np
import pytest

from helpers.config import make_config
from helpers.evaluate import evaluation_metrics, image_similarity
from helpers.pipeline import prepare_data
from helpers.stimuli import render_digits
from tests.quick_run import train_and_evaluate

SKEWED = (0.4,) + (0.6 / 9,) * 9  # 40 % zeros, like the unbalanced recording of the issue


def test_no_accuracy_rises_above_its_chance_band_on_unbalanced_no_signal_data(tmp_path, monkeypatch, judge):
    """No class information, 40 % zeros: a generator and a baseline that learn the class mix score ~0.4, which
    the old uniform chance (0.10, band up to ~0.13) would have called decoding. Every accuracy must now sit within
    the chance band computed from the test events' own class mix (the oracle-label rows are fed the true class
    on purpose and are excluded)."""
    from helpers.synthetic import SyntheticSpec, write_synthetic

    monkeypatch.setenv("EEG2IMG_DATA_DIR", str(tmp_path / "dataset"))
    path = tmp_path / "skewed.txt"
    write_synthetic(path, SyntheticSpec(n_events=1200, class_strength=0.0, seed=5, class_priors=SKEWED))
    cfg = make_config("ci", {"epochs": 2})
    prepared, m = train_and_evaluate(cfg, path, tmp_path / "out", judge)
    shares = np.bincount(prepared.test.labels, minlength=10) / len(prepared.test.labels)
    assert m["chance_top1"] == pytest.approx(shares.max()) and m["chance_top1"] > 0.3
    assert m["chance_top3"] == pytest.approx(np.sort(shares)[::-1][:3].sum())
    assert m["uniform_chance_top1"] == pytest.approx(0.1)
    accuracies = [k for k in m if k.endswith(("_top1", "_top3")) and not k.startswith(("chance", "uniform", "oracle"))]
    assert {"judge_top1", "semantic_top1", "linear_baseline_top1", "majority_class_top1", "eegnet_top1",
            "shallow_fbcsp_top1"} <= set(accuracies)
    for key in accuracies:
        bound = m["chance_top1_upper95"] if key.endswith("top1") else m["chance_top3_upper95"]
        assert m[key] <= bound, f"{key} = {m[key]:.3f} above the chance band {bound:.3f} of this class mix"
    # The plain references stand next to the generator in the per-scorer details too.
    assert m["scorers"]["majority_class"]["top1"]["chance"] == pytest.approx(m["chance_top1"])
    assert m["validation"]["chance_top1"] > 0.3


def test_majority_class_reference_is_fitted_on_training_labels():
    labels = np.repeat(np.arange(10), 5)
    informative = np.eye(10)[labels]
    train = np.r_[np.full(20, 3), np.arange(10)]
    m = evaluation_metrics(labels, informative, informative, informative, clip_semantic=True, synthetic=False,
                           n_permutations=50, train_labels=train)
    assert m["majority_class_top1"] == pytest.approx(0.1)  # always "3": right for the five 3s only
    assert m["chance_top1"] == pytest.approx(0.1) and m["judge_top1"] == 1.0
    assert m["majority_class_top1_ci95"][0] < 0.1 < m["majority_class_top1_ci95"][1]


def test_image_similarity_has_label_blind_and_wrong_digit_references():
    stim = render_digits(size=32)
    s = stim.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
    labels = np.repeat(np.arange(10), 3)
    perfect = image_similarity(s[labels], stim, labels, train_labels=np.arange(10))
    average = np.repeat(s.mean(0, keepdims=True), len(labels), axis=0)
    blind = image_similarity(average, stim, labels, train_labels=np.arange(10))
    wrong = image_similarity(s[(labels + 1) % 10], stim, labels, train_labels=np.arange(10))
    refs = perfect["references"]
    # The references are what those images score, computed without them ...
    assert refs["label_blind"]["ssim_mean"] == pytest.approx(blind["ssim_mean"], abs=1e-6)
    assert abs(refs["wrong_digit"]["ssim_mean"] - wrong["ssim_mean"]) < 0.1  # one wrong digit vs all nine
    # ... and the right digit beats both, by construction of the metric.
    assert perfect["ssim_mean"] == pytest.approx(1.0) and perfect["ssim_mean"] > refs["label_blind"]["ssim_mean"]
    assert perfect["pixel_corr_mean"] > refs["wrong_digit"]["pixel_corr_mean"]
    # The training class mix weights the average digit: all-ones training data -> the "average" IS the stimulus 1.
    ones = image_similarity(s[labels], stim, labels, train_labels=np.ones(20, int))
    as_one = image_similarity(np.repeat(s[[1]], len(labels), axis=0), stim, labels)
    assert ones["references"]["label_blind"]["ssim_mean"] == pytest.approx(as_one["ssim_mean"], abs=1e-6)


def test_metrics_json_carries_image_references():
    stim = render_digits(size=32)
    s = stim.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
    labels = np.repeat(np.arange(10), 2)
    sc = np.eye(10)[labels]
    m = evaluation_metrics(labels, sc, sc, sc, clip_semantic=True, synthetic=False, n_permutations=20,
                           generated=s[labels], stimuli=stim, train_labels=labels)
    for ref in ("label_blind", "wrong_digit"):
        assert m[f"ssim_{ref}"] < m["ssim_mean"] and m[f"pixel_corr_{ref}"] < m["pixel_corr_mean"]
        assert m[f"ssim_{ref}"] == m["image_similarity"]["references"][ref]["ssim_mean"]


def test_a_runs_saved_features_are_applied_not_refitted(tmp_path, monkeypatch):
    """Evaluation and resume use the transform saved with the run: tampering with the saved one shows up in the
    features, so it was used; a transform of another recipe or other training events, or a damaged file, is never
    applied (the features are fitted afresh, with a warning, and open_run's identity check decides on resuming)."""
    import torch

    from helpers.checkpoint import load_checkpoint, save_checkpoint
    from helpers.pipeline import save_features

    monkeypatch.setenv("EEG2IMG_DATA_DIR", str(tmp_path / "dataset"))
    cfg = make_config("ci", {"synthetic_events": 600})
    first = prepare_data(cfg)
    path = save_features(first, tmp_path / "run")
    blob = load_checkpoint(path)
    blob["features"]["components"] = blob["features"]["components"] * 2.0  # a transform no refit would give
    save_checkpoint(blob, path)
    again = prepare_data(cfg, fitted_features=path)
    np.testing.assert_allclose(again.train.X, 2.0 * first.train.X, rtol=1e-4, atol=1e-4)
    assert torch.equal(again.features.state_dict()["components"], blob["features"]["components"])
    refit = prepare_data(cfg, fitted_features=tmp_path / "nowhere.pt")  # no saved run: fitted as usual
    np.testing.assert_allclose(refit.train.X, first.train.X, rtol=1e-5, atol=1e-5)
    # Another recipe, other training events or a damaged file: never applied; fitted afresh, and said.
    other = make_config("ci", {"synthetic_events": 600, "feature_dim": 64})
    with pytest.warns(UserWarning, match="feature recipe"):
        assert prepare_data(other, fitted_features=path).train.X.shape[1] == 64
    with pytest.warns(UserWarning, match="other training events"):
        moved = prepare_data(make_config("ci", {"synthetic_events": 600, "split_fractions": (0.6, 0.2, 0.2)}),
                             fitted_features=path)
    assert not np.allclose(moved.features.state_dict()["components"], blob["features"]["components"])
    path.write_bytes(path.read_bytes()[:-40])  # cut short
    with pytest.warns(UserWarning, match="fitting the features afresh"):
        np.testing.assert_allclose(prepare_data(cfg, fitted_features=path).train.X, first.train.X, rtol=1e-5, atol=1e-5)
