"""Metrics that tell the truth: every accuracy next to chance, a permutation test and a plain baseline.

Everything here takes arrays (scores, labels, images), never models, so each metric can be checked
on hand-made inputs. ``evaluation_metrics`` assembles the ``metrics.json`` dict whose top-level keys
are a contract (docs/DESIGN.md#metricsjson); ``write_json_atomic`` (:mod:`helpers.atomic`, re-exported here
with ``to_plain``) writes it so that a crash never leaves a half-written file. Accuracies, intervals and
permutation tests come from :mod:`helpers.stats`.

Scores are ``[n, 10]`` arrays, higher = more likely; column ``c`` is digit ``c``. Predictions are
the arg-max with ties broken towards the lower class index (as in :func:`helpers.stats.topk_correct`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats as _st
from skimage.metrics import structural_similarity

from . import stats
from .atomic import to_plain, write_json_atomic  # noqa: F401 - re-exported: evaluate.write_json_atomic (benchmarks)
from .stimuli import N_DIGITS

N_CLASSES = N_DIGITS  # one class per stimulus digit


# ----------------------------------------------------------------------------------------------
# Scores and their summaries
# ----------------------------------------------------------------------------------------------

def _as_2d(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(getattr(x, "embeddings", x), dtype=np.float64)  # accepts StimulusEmbeddings too
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def semantic_scores(gen_emb, stim_emb) -> np.ndarray:
    """Cosine similarity ``[n, 10]`` of each generated image's embedding to each stimulus embedding.

    Both inputs are L2-normalised here, so raw (unnormalised) embeddings give the same answer.
    """
    g, s = _as_2d(gen_emb, "gen_emb"), _as_2d(stim_emb, "stim_emb")
    if g.shape[1] != s.shape[1]:
        raise ValueError(f"embedding sizes differ: generated {g.shape[1]}, stimuli {s.shape[1]}")
    for name, x in (("gen_emb", g), ("stim_emb", s)):
        if (np.linalg.norm(x, axis=1) == 0).any():
            raise ValueError(f"{name} has an all-zero row; its cosine is undefined")
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    s = s / np.linalg.norm(s, axis=1, keepdims=True)
    return g @ s.T


def _check_labels(labels, n_classes: int, n: int | None = None, name: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer) and not np.all(np.equal(np.mod(labels, 1), 0)):
        raise ValueError(f"{name} must be integer class indices")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{name} must be in 0..{n_classes - 1}; got range {labels.min()}..{labels.max()}")
    if n is not None and labels.shape[0] != n:
        raise ValueError(f"{name} has {labels.shape[0]} entries, expected {n}")
    return labels


def _check_scores(scores, labels: np.ndarray, name: str, n_classes: int) -> np.ndarray:
    scores = _as_2d(scores, name)
    if scores.shape != (labels.shape[0], n_classes):
        raise ValueError(f"{name} must be [n={labels.shape[0]}, {n_classes}]; got {scores.shape}")
    return scores


def top_k_predictions(scores, k: int = 3) -> np.ndarray:
    """The k best classes per row, best first ``int64 [n, k]``; ties go to the lower class index."""
    return stats.top_k_classes(_as_2d(scores, "scores"), k)


def confusion(pred, labels, n_classes: int = N_CLASSES) -> np.ndarray:
    """Counts ``[true, predicted]`` (rows: true class, columns: predicted class), ``int64 [C, C]``."""
    labels = _check_labels(labels, n_classes)
    pred = _check_labels(pred, n_classes, n=labels.shape[0], name="pred")
    return stats.confusion_counts(pred, labels, n_classes)


def prediction_histogram(pred, n_classes: int = N_CLASSES) -> np.ndarray:
    """How often each class is predicted, ``int64 [C]``: a generator that always draws one digit has one bar."""
    pred = _check_labels(pred, n_classes, name="pred")
    return np.bincount(pred, minlength=n_classes).astype(np.int64)


def scorer_summary(scores, labels, n_classes: int = N_CLASSES, n_permutations: int = 1000,
                   seed: int = 0) -> dict:
    """Everything about one way of scoring the test events.

    Top-1 and top-3 with Clopper-Pearson intervals and chance, permutation tests (labels shuffled)
    for both, the confusion matrix, the prediction histogram, and per-class recall (None for a
    class absent from ``labels``).
    """
    labels = _check_labels(labels, n_classes)
    scores = _check_scores(scores, labels, "scores", n_classes)
    pred = top_k_predictions(scores, 1)[:, 0]
    cm = confusion(pred, labels, n_classes)
    support = cm.sum(1)
    recall = [float(cm[c, c] / support[c]) if support[c] else None for c in range(n_classes)]
    out = {"n": int(labels.shape[0])}
    for k in (1, 3):
        out[f"top{k}"] = stats.accuracy_report(scores, labels, k=k, n_classes=n_classes).to_dict()
        out[f"permutation_top{k}"] = stats.permutation_test(scores, labels, k=k, n_permutations=n_permutations,
                                                            seed=seed)
    out.update(confusion=cm.tolist(), prediction_histogram=prediction_histogram(pred, n_classes).tolist(),
               recall_per_class=recall, n_distinct_predictions=int((cm.sum(0) > 0).sum()))
    return out


# ----------------------------------------------------------------------------------------------
# Image similarity to the true stimulus
# ----------------------------------------------------------------------------------------------

def _images_nchw(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach().float().cpu()
    else:
        t = torch.from_numpy(np.asarray(x, dtype=np.float32))
    if t.ndim != 4 or t.shape[1] not in (1, 3):
        raise ValueError(f"{name} must be [n, 3, H, W] in [-1, 1]; got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all() or t.min() < -1.01 or t.max() > 1.01:
        raise ValueError(f"{name} must be finite and in [-1, 1]")
    return t


def _stimuli_nchw(stimuli, size: tuple[int, int]) -> torch.Tensor:
    """Stimuli as ``[10, 3, h, w]`` in [-1, 1] at the generated images' size (antialiased resize)."""
    arr = stimuli.detach().cpu().numpy() if isinstance(stimuli, torch.Tensor) else np.asarray(stimuli)
    if arr.ndim == 4 and arr.shape[-1] == 3 and arr.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    else:
        t = _images_nchw(arr, "stimuli")
    if tuple(t.shape[-2:]) != tuple(size):
        t = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(-1, 1)
    return t


def _ssim_and_corr(img: np.ndarray, ref: np.ndarray, win: int) -> tuple[float, float | None]:
    """SSIM and Pearson correlation of two grayscale [0, 1] images; correlation None when one is constant."""
    ssim = float(structural_similarity(img, ref, data_range=1.0, win_size=win))
    if np.ptp(img) == 0 or np.ptp(ref) == 0:
        return ssim, None
    return ssim, float(_st.pearsonr(img.ravel(), ref.ravel())[0])


def image_similarity(generated, stimuli, labels, train_labels=None) -> dict:
    """SSIM and Pearson pixel correlation of each generated image with its true stimulus, with references.

    ``generated``: ``[n, 3, h, w]`` in [-1, 1]; ``stimuli``: ``uint8 [10, H, W, 3]`` or ``[10, 3, H, W]``
    in [-1, 1], resized (antialiased) to ``h x w``; both compared as grayscale in [0, 1] with
    ``data_range=1`` (SSIM from scikit-image, correlation from SciPy). A constant image has no
    correlation; it counts as 0 and is tallied in ``n_constant_images``.

    SSIM and correlation mean little on their own (black-on-white digits share most of their pixels), so
    ``references`` holds what two images that know nothing score against the same true stimuli:

    * ``label_blind``: the average training digit (the stimuli weighted by the classes of ``train_labels``,
      or equally without them), the image an L1-trained generator drifts to when the EEG says nothing;
    * ``wrong_digit``: each of the nine other stimuli, averaged: a clean image of the wrong digit.

    A generator is only closer to the right digit than guessing when it beats both.
    """
    gen = _images_nchw(generated, "generated")
    labels = _check_labels(labels, N_CLASSES, n=gen.shape[0])
    h, w = gen.shape[-2:]
    stim = _stimuli_nchw(stimuli, (h, w))
    if stim.shape[0] != N_CLASSES:
        raise ValueError(f"stimuli must hold {N_CLASSES} images; got {stim.shape[0]}")
    g = ((gen.mean(1) + 1) / 2).clamp(0, 1).double().numpy()
    s = ((stim.mean(1) + 1) / 2).clamp(0, 1).double().numpy()
    win = min(7, h, w)
    win -= (win + 1) % 2  # SSIM needs an odd window no larger than the image
    if win < 3:
        raise ValueError(f"images of {h}x{w} are too small for SSIM")
    ssim, corr, n_const = [], [], 0
    for img, y in zip(g, labels):
        sv, cv = _ssim_and_corr(img, s[y], win)
        ssim.append(sv)
        corr.append(0.0 if cv is None else cv)
        n_const += cv is None
    n = len(ssim)

    shares = (stats.class_shares(_check_labels(train_labels, N_CLASSES, name="train_labels"), N_CLASSES)
              if train_labels is not None else np.full(N_CLASSES, 1.0 / N_CLASSES))
    average = np.tensordot(shares, s, axes=1)
    # One pair per stimulus is enough: every test event of digit y gets the same reference scores.
    blind = {y: _ssim_and_corr(average, s[y], win) for y in range(N_CLASSES)}
    wrong = {y: [_ssim_and_corr(s[o], s[y], win) for o in range(N_CLASSES) if o != y] for y in range(N_CLASSES)}

    def summary(pairs: list[tuple[float, float | None]]) -> dict:
        return {"ssim_mean": float(np.mean([p[0] for p in pairs])) if pairs else None,
                "pixel_corr_mean": float(np.mean([p[1] or 0.0 for p in pairs])) if pairs else None}

    references = {
        "label_blind": {**summary([blind[int(y)] for y in labels]),
                        "what": "the average training digit (class-weighted mean of the stimuli)"},
        "wrong_digit": {**summary([p for y in labels for p in wrong[int(y)]]),
                        "what": "each of the nine other stimuli"},
    }
    return {
        "ssim_mean": float(np.mean(ssim)) if n else None, "ssim_std": float(np.std(ssim)) if n else None,
        "pixel_corr_mean": float(np.mean(corr)) if n else None, "pixel_corr_std": float(np.std(corr)) if n else None,
        "ssim_per_event": ssim, "pixel_corr_per_event": corr, "n_constant_images": int(n_const),
        "compared_at": [int(h), int(w)], "grayscale": True, "data_range": 1.0, "references": references,
    }


# ----------------------------------------------------------------------------------------------
# metrics.json
# ----------------------------------------------------------------------------------------------

_VALIDATION_SCORES = {"semantic_scores": "semantic", "judge_scores": "judge", "baseline_scores": "linear_baseline"}


def _validation_block(validation: Mapping, n_classes: int) -> dict:
    """Accuracies from validation arrays (``labels`` + any ``*_scores``); other entries copied as they are."""
    out: dict[str, Any] = {}
    labels = None
    if "labels" in validation:
        labels = _check_labels(validation["labels"], n_classes, name="validation labels")
        n = int(labels.shape[0])
        out["n_events"] = n
        out["chance_top1"] = stats.chance_level(labels, 1, n_classes)
        out["chance_top1_upper95"] = stats.chance_upper95(n, out["chance_top1"])
        out["chance_top3"] = stats.chance_level(labels, 3, n_classes)
    for key, value in validation.items():
        if key == "labels":
            continue
        if key in _VALIDATION_SCORES:
            if value is None:  # a scorer that was not run on the validation events
                continue
            if labels is None:
                raise ValueError(f"validation[{key!r}] given without validation['labels']")
            sc = _check_scores(value, labels, f"validation {key}", n_classes)
            name = _VALIDATION_SCORES[key]
            for k in (1, 3):
                out[f"{name}_top{k}"] = stats.topk_accuracy(sc, labels, k)
        else:
            out[key] = value
    return out


def evaluation_metrics(labels, semantic_scores, judge_scores, baseline_scores, *, clip_semantic: bool,
                       synthetic: bool, oracle_top1: float | None = None, generated=None, stimuli=None,
                       oracle_label_semantic_scores=None, oracle_label_judge_scores=None,
                       validation: Mapping | None = None, n_permutations: int = 1000, seed: int = 0,
                       extra: Mapping | None = None, n_classes: int = N_CLASSES, train_labels=None,
                       reference_scores: Mapping | None = None) -> dict:
    """The ``metrics.json`` dict for the held-out test events (plain Python types only).

    Inputs: true ``labels`` [n]; ``semantic_scores`` (cosines to the 10 stimulus CLIP embeddings),
    ``judge_scores`` (the independent digit classifier) and ``baseline_scores`` (the linear EEG
    classifier), each [n, 10]. ``oracle_label_*_scores`` [n, 10] score images the same generator
    drew when fed the true class (the upper bound); ``oracle_top1`` is the Bayes accuracy of the
    synthetic data (required when ``synthetic``). ``generated`` [n, 3, h, w] in [-1, 1] with
    ``stimuli`` adds SSIM and pixel correlation. ``validation`` (see :func:`_validation_block`) is
    nested under ``"validation"``; ``extra`` entries are added at the top level (no overwriting).
    ``train_labels`` [n_train] adds the label-blind references: the majority-class classifier (the training
    events' most frequent digit, ``majority_class_top1``) and, for SSIM and pixel correlation, the average
    training digit (``ssim_label_blind``); a wrong digit (``ssim_wrong_digit``) is always added.
    ``reference_scores`` ({name: [n, 10]}) adds other classifiers of the same test events as scorers, each with
    ``<name>_top1`` and its interval and p-value (the deep EEG references: ``eegnet``, ``shallow_fbcsp``).

    Chance (``chance_top1``, ``chance_top3`` and their 95 % bounds) is computed from the test events' own class
    mix (:func:`helpers.stats.chance_level`), not assumed to be 1 / n_classes.

    Top-level contract keys (docs/DESIGN.md#metricsjson): ``n_test_events``, ``semantic_top1``,
    ``semantic_top3``, ``judge_top1``, ``judge_top3``, ``linear_baseline_top1``, ``chance_top1``,
    ``chance_top1_upper95``, ``clip_semantic``, ``majority_class_top1`` (with ``train_labels``), and
    ``oracle_top1`` when synthetic. Details per
    scorer (intervals, permutation tests, confusion, histogram) are under ``"scorers"``.
    """
    labels = _check_labels(labels, n_classes)
    n = int(labels.shape[0])
    if n == 0:
        raise ValueError("no test events: cannot evaluate")
    if synthetic and oracle_top1 is None:
        raise ValueError("synthetic data: pass oracle_top1 (the Bayes accuracy the generator's parameters allow)")
    scorers = {"semantic": semantic_scores, "judge": judge_scores, "linear_baseline": baseline_scores}
    for name, sc in (reference_scores or {}).items():
        if name in scorers:
            raise ValueError(f"reference scorer {name!r} would replace a built-in one")
        scorers[name] = sc
    # The plainest real classifier: always the training events' most frequent digit (without train_labels, the
    # test events' own: then it equals chance_top1).
    if train_labels is not None:
        train_labels = _check_labels(train_labels, n_classes, name="train_labels")
    majority_from = labels if train_labels is None else train_labels
    scorers["majority_class"] = stats.majority_class_scores(majority_from, n, n_classes)
    if oracle_label_semantic_scores is not None:
        scorers["oracle_label_semantic"] = oracle_label_semantic_scores
    if oracle_label_judge_scores is not None:
        scorers["oracle_label_judge"] = oracle_label_judge_scores
    blocks = {}
    for name, sc in scorers.items():
        _check_scores(sc, labels, f"{name} scores", n_classes)
        blocks[name] = scorer_summary(sc, labels, n_classes, n_permutations=n_permutations, seed=seed)

    # Chance follows the test events' own class mix: the best label-blind guess names the most frequent class.
    p1, p3 = stats.chance_level(labels, 1, n_classes), stats.chance_level(labels, 3, n_classes)
    lo1, hi1 = stats.chance_interval(n, p1)
    m: dict[str, Any] = {
        "n_test_events": n,
        "n_classes": int(n_classes),
        "clip_semantic": bool(clip_semantic),
        "synthetic": bool(synthetic),
        "chance_top1": p1,
        "chance_top1_upper95": stats.chance_upper95(n, p1),
        "chance_top1_interval95": [lo1, hi1],
        "chance_top3": p3,
        "chance_top3_upper95": stats.chance_upper95(n, p3),
        "uniform_chance_top1": 1.0 / n_classes,
        "test_class_shares": stats.class_shares(labels, n_classes).tolist(),
    }
    for name, block in blocks.items():
        for k in (1, 3):
            m[f"{name}_top{k}"] = block[f"top{k}"]["value"]
            m[f"{name}_top{k}_ci95"] = [block[f"top{k}"]["ci95_low"], block[f"top{k}"]["ci95_high"]]
            m[f"{name}_top{k}_p_value"] = block[f"permutation_top{k}"]["p_value"]
    if synthetic or oracle_top1 is not None:
        m["oracle_top1"] = float(oracle_top1)
    if generated is not None:
        if stimuli is None:
            raise ValueError("generated images given without the stimuli to compare them with")
        sim = image_similarity(generated, stimuli, labels, train_labels=train_labels)
        m["ssim_mean"], m["pixel_corr_mean"] = sim["ssim_mean"], sim["pixel_corr_mean"]
        for ref in ("label_blind", "wrong_digit"):
            m[f"ssim_{ref}"], m[f"pixel_corr_{ref}"] = sim["references"][ref]["ssim_mean"], \
                sim["references"][ref]["pixel_corr_mean"]
        m["image_similarity"] = sim
    m["scorers"] = blocks
    if validation is not None:
        m["validation"] = _validation_block(validation, n_classes)
    for key, value in (extra or {}).items():
        if key in m:
            raise ValueError(f"extra key {key!r} would overwrite a computed metric")
        m[key] = value
    return to_plain(m)


# ----------------------------------------------------------------------------------------------
# Convenience: from generated images to scores (takes models, so it is a thin wrapper)
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def score_generated(images, *, judge=None, clip=None, stimulus_embeddings=None, batch_size: int = 64) -> dict:
    """Judge and/or semantic scores of generated images ``[n, 3, h, w]`` in [-1, 1].

    ``judge`` needs ``predict_scores(images)``; ``clip`` needs ``encode_images(images)`` and comes
    with ``stimulus_embeddings`` ([10, D] or an object with ``.embeddings``). Returns a dict with
    ``judge_scores`` and/or ``semantic_scores`` as ``[n, 10]`` numpy arrays.
    """
    images = torch.as_tensor(images).float()
    out = {}
    if judge is not None:
        out["judge_scores"] = np.asarray(judge.predict_scores(images), dtype=np.float64)
    if clip is not None:
        if stimulus_embeddings is None:
            raise ValueError("clip given without stimulus_embeddings")
        emb = torch.cat([torch.as_tensor(clip.encode_images(images[i:i + batch_size])).detach().float().cpu()
                         for i in range(0, images.shape[0], batch_size)])
        out["semantic_scores"] = semantic_scores(emb, stimulus_embeddings)
    return out
