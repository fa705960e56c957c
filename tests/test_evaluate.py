"""Metrics on hand-made inputs with known answers, and atomic plain-type JSON."""
import json
import math
import os

import numpy as np
import pytest
import torch

from helpers import evaluate as ev
from helpers import stats
from helpers.stimuli import render_digits, to_tensor

CONTRACT_KEYS = {"n_test_events", "semantic_top1", "semantic_top3", "judge_top1", "judge_top3",
                 "linear_baseline_top1", "chance_top1", "chance_top1_upper95", "clip_semantic"}


def balanced_labels(per_class=10):
    return np.repeat(np.arange(10), per_class)


def one_hot(pred, n_classes=10):
    s = np.zeros((len(pred), n_classes))
    s[np.arange(len(pred)), pred] = 1.0
    return s


def constant_scores(n, digit=3):
    return one_hot(np.full(n, digit))


# ---------------------------------------------------------------- semantic scores

def test_semantic_scores_are_cosines():
    stim = np.eye(3, 4)[[0, 1, 2]]  # 3 orthonormal "stimulus" embeddings in 4-D
    gen = np.array([[2.0, 0, 0, 0], [1.0, 1.0, 0, 0], [0, 0, 0, 5.0]])
    s = ev.semantic_scores(gen, stim)
    expected = np.array([[1, 0, 0], [1 / math.sqrt(2), 1 / math.sqrt(2), 0], [0, 0, 0]])
    np.testing.assert_allclose(s, expected, atol=1e-12)
    # Tensors and unnormalised inputs give the same answer.
    np.testing.assert_allclose(ev.semantic_scores(torch.tensor(gen) * 7, torch.tensor(stim)), expected, atol=1e-6)


def test_semantic_scores_bad_input():
    with pytest.raises(ValueError, match="embedding sizes differ"):
        ev.semantic_scores(np.ones((2, 4)), np.ones((10, 5)))
    with pytest.raises(ValueError, match="all-zero"):
        ev.semantic_scores(np.zeros((2, 4)), np.ones((10, 4)))
    with pytest.raises(ValueError, match="NaN"):
        ev.semantic_scores(np.full((2, 4), np.nan), np.ones((10, 4)))


def test_semantic_scores_accept_embedding_objects():
    class Emb:
        embeddings = torch.eye(10, 16)
    s = ev.semantic_scores(torch.eye(10, 16), Emb())
    np.testing.assert_allclose(s, np.eye(10), atol=1e-7)


# ---------------------------------------------------------------- confusion, histogram, top-k

def test_confusion_and_histogram_known_answer():
    labels = np.array([0, 0, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 2, 0, 2])
    cm = ev.confusion(pred, labels, n_classes=3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_array_equal(ev.prediction_histogram(pred, n_classes=3), [2, 2, 2])
    assert cm.sum() == len(labels) and cm.dtype == np.int64


def test_confusion_rejects_bad_labels():
    with pytest.raises(ValueError, match="0..9"):
        ev.confusion([0, 10], [0, 1])
    with pytest.raises(ValueError, match="entries"):
        ev.confusion([0, 1, 2], [0, 1])


def test_top_k_predictions_ties_go_to_lower_class():
    s = np.array([[0.1, 0.5, 0.5, 0.2], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(ev.top_k_predictions(s, 3), [[1, 2, 3], [0, 1, 2]])


def test_constant_generator_scores_chance_and_shows_one_bar():
    labels = balanced_labels(10)
    block = ev.scorer_summary(constant_scores(100, digit=3), labels, n_permutations=200)
    assert block["top1"]["value"] == pytest.approx(0.1)
    hist = block["prediction_histogram"]
    assert hist == [0, 0, 0, 100, 0, 0, 0, 0, 0, 0]
    assert block["n_distinct_predictions"] == 1
    # Its top-3 (ties broken by class index: 3, then 0, 1) is exactly 3/10 on a balanced set.
    assert block["top3"]["value"] == pytest.approx(0.3)
    # A shuffled-label test cannot find anything: every permutation also scores 0.1.
    assert block["permutation_top1"]["p_value"] == pytest.approx(1.0)
    assert block["recall_per_class"][3] == 1.0 and block["recall_per_class"][0] == 0.0


def test_perfect_generator_scores_one():
    labels = balanced_labels(10)
    block = ev.scorer_summary(one_hot(labels), labels, n_permutations=200)
    assert block["top1"]["value"] == 1.0 and block["top3"]["value"] == 1.0
    np.testing.assert_array_equal(block["confusion"], np.diag([10] * 10))
    assert block["permutation_top1"]["p_value"] == pytest.approx(1 / 201)
    assert block["top1"]["ci95_high"] == 1.0


# ---------------------------------------------------------------- image similarity

def test_ssim_and_correlation_of_stimulus_with_itself_is_one():
    stim = render_digits(size=32)
    labels = np.array([0, 5, 9])
    gen = to_tensor(stim)[labels]
    sim = ev.image_similarity(gen, stim, labels)
    assert sim["ssim_mean"] == pytest.approx(1.0, abs=1e-9)
    assert sim["pixel_corr_mean"] == pytest.approx(1.0, abs=1e-9)
    assert len(sim["ssim_per_event"]) == 3 and sim["n_constant_images"] == 0


def test_similarity_known_answers():
    stim = render_digits(size=32)
    t = to_tensor(stim)
    # An inverted stimulus has correlation exactly -1 with the original.
    sim = ev.image_similarity(-t[[2]], stim, [2])
    assert sim["pixel_corr_per_event"][0] == pytest.approx(-1.0, abs=1e-9)
    # A wrong digit is less similar than the right one.
    right = ev.image_similarity(t[[1]], stim, [1])["ssim_mean"]
    wrong = ev.image_similarity(t[[1]], stim, [8])["ssim_mean"]
    assert wrong < right - 0.2
    # A blank (constant) image: correlation counted as 0, and tallied.
    blank = torch.ones(1, 3, 32, 32)
    sim = ev.image_similarity(blank, stim, [0])
    assert sim["pixel_corr_per_event"] == [0.0] and sim["n_constant_images"] == 1


def test_similarity_resizes_stimuli_to_generated_size():
    stim = render_digits(size=64)
    gen = to_tensor(stim, size=32)[[4]]
    sim = ev.image_similarity(gen, stim, [4])
    assert sim["compared_at"] == [32, 32]
    assert sim["ssim_mean"] > 0.99 and sim["pixel_corr_mean"] > 0.999


def test_similarity_bad_input():
    stim = render_digits(size=16)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        ev.image_similarity(torch.full((1, 3, 16, 16), 3.0), stim, [0])
    with pytest.raises(ValueError, match="entries"):
        ev.image_similarity(torch.zeros(2, 3, 16, 16), stim, [0])


# ---------------------------------------------------------------- metrics.json

def _metrics(**kw):
    labels = balanced_labels(5)
    args = dict(labels=labels, semantic_scores=one_hot(labels), judge_scores=constant_scores(50, 7),
                baseline_scores=one_hot((labels + 1) % 10), clip_semantic=False, synthetic=True,
                oracle_top1=0.42, n_permutations=100)
    args.update(kw)
    return ev.evaluation_metrics(**args)


def _all_plain(x):
    if isinstance(x, dict):
        return all(isinstance(k, str) and _all_plain(v) for k, v in x.items())
    if isinstance(x, list):
        return all(_all_plain(v) for v in x)
    return x is None or type(x) in (bool, int, float, str)


def test_evaluation_metrics_contract_and_values(tmp_path):
    m = _metrics()
    assert CONTRACT_KEYS | {"oracle_top1"} <= set(m)
    assert _all_plain(m)
    assert m["n_test_events"] == 50
    assert m["semantic_top1"] == 1.0 and m["judge_top1"] == pytest.approx(0.1) and m["linear_baseline_top1"] == 0.0
    assert m["chance_top1"] == pytest.approx(0.1)
    assert m["chance_top1_upper95"] == pytest.approx(stats.chance_upper95(50, 0.1))
    assert m["clip_semantic"] is False and m["oracle_top1"] == 0.42
    assert m["scorers"]["judge"]["prediction_histogram"][7] == 50
    assert m["semantic_top1_ci95"][1] == 1.0 and m["semantic_top1_p_value"] < 0.02
    path = ev.write_json_atomic(tmp_path / "metrics.json", m)
    assert json.loads(path.read_text()) == m  # strict JSON, round-trips exactly


def test_evaluation_metrics_optional_parts():
    labels = balanced_labels(5)
    stim = render_digits(size=32)
    gen = to_tensor(stim)[labels]
    m = _metrics(synthetic=False, oracle_top1=None, generated=gen, stimuli=stim,
                 oracle_label_judge_scores=one_hot(labels), oracle_label_semantic_scores=one_hot(labels),
                 validation={"labels": labels[:20], "judge_scores": one_hot(labels[:20]), "semantic_scores": None,
                             "val_loss": np.float32(1.5)},
                 extra={"profile": "ci"})
    assert "oracle_top1" not in m
    assert m["ssim_mean"] == pytest.approx(1.0) and m["pixel_corr_mean"] == pytest.approx(1.0)
    assert m["oracle_label_judge_top1"] == 1.0 and m["oracle_label_semantic_top3"] == 1.0
    assert m["validation"]["judge_top1"] == 1.0 and m["validation"]["n_events"] == 20
    assert m["validation"]["val_loss"] == 1.5 and type(m["validation"]["val_loss"]) is float
    assert "semantic_scores" not in m["validation"] and "semantic_top1" not in m["validation"]
    assert m["profile"] == "ci" and _all_plain(m)


def test_evaluation_metrics_errors():
    with pytest.raises(ValueError, match="oracle_top1"):
        _metrics(oracle_top1=None)
    with pytest.raises(ValueError, match=r"\[n=50, 10\]"):
        _metrics(judge_scores=np.ones((49, 10)))
    with pytest.raises(ValueError, match="overwrite"):
        _metrics(extra={"judge_top1": 1.0})
    with pytest.raises(ValueError, match="stimuli"):
        _metrics(generated=torch.zeros(50, 3, 16, 16))


# ---------------------------------------------------------------- JSON

def test_to_plain_converts_numpy_and_refuses_nan():
    out = ev.to_plain({"a": np.float32(0.5), "b": np.int64(3), "c": np.arange(3), "d": (np.bool_(True),),
                       "e": torch.tensor([1.0])})
    assert out == {"a": 0.5, "b": 3, "c": [0, 1, 2], "d": [True], "e": [1.0]}
    assert type(out["a"]) is float and type(out["b"]) is int and type(out["d"][0]) is bool
    with pytest.raises(ValueError, match=r"\$\.x\.y\[1\].*nan"):
        ev.to_plain({"x": {"y": [1.0, float("nan")]}})
    with pytest.raises(TypeError, match="object"):
        ev.to_plain({"z": object()})


def test_write_json_atomic_round_trip(tmp_path):
    p = ev.write_json_atomic(tmp_path / "sub" / "metrics.json", {"v": np.float64(0.25), "n": np.int32(4)})
    assert json.loads(p.read_text()) == {"v": 0.25, "n": 4}
    assert os.listdir(tmp_path / "sub") == ["metrics.json"]


def test_write_json_atomic_crash_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    ev.write_json_atomic(path, {"run": 1})
    before = path.read_text()
    # Bad content: refused before the disk is touched.
    with pytest.raises(ValueError):
        ev.write_json_atomic(path, {"run": 2, "bad": float("inf")})
    assert path.read_text() == before

    # A crash after part of the new file was written (here: fsync fails) leaves the old file intact
    # and no temporary file behind.
    def boom(fd):
        raise OSError("disk on fire")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk on fire"):
        ev.write_json_atomic(path, {"run": 3})
    assert path.read_text() == before
    assert os.listdir(tmp_path) == ["metrics.json"]


# ---------------------------------------------------------------- convenience wrapper

def test_score_generated_with_stub_models():
    class StubJudge:
        def predict_scores(self, images):
            return one_hot(np.full(len(images), 2))

    class StubClip:
        def encode_images(self, images):  # "embedding" = mean of each channel, normalised
            e = images.mean(dim=(2, 3))
            return e / e.norm(dim=1, keepdim=True)

    images = torch.rand(5, 3, 8, 8) * 2 - 1
    stim = torch.randn(10, 3)
    out = ev.score_generated(images, judge=StubJudge(), clip=StubClip(), stimulus_embeddings=stim, batch_size=2)
    assert out["judge_scores"].shape == (5, 10) and (out["judge_scores"].argmax(1) == 2).all()
    np.testing.assert_allclose(out["semantic_scores"], ev.semantic_scores(images.mean(dim=(2, 3)), stim), atol=1e-6)
    with pytest.raises(ValueError, match="stimulus_embeddings"):
        ev.score_generated(images, clip=StubClip())
