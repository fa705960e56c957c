"""digit-CLIP (helpers.digit_clip): the contrastive loss, training, the cache and its checks.

The cache tests use a few-step recipe (``QUICK``: its weights are barely trained, which they do not need), the
learning test the ``small`` recipe (seconds), both in temporary caches. ``test_the_full_recipe_...`` uses the
real one, cached under dataset/cache (or $EEG2IMG_CACHE_DIR): about two minutes once per checkout, then a load.
Thresholds compare with the untrained network of the same test, or keep wide margins.
"""
import json
import logging
import math

import pytest
import torch
import torch.nn.functional as F

from helpers import digit_clip as dc
from helpers.log import logger
from helpers.stimuli import get_stimuli, to_tensor


QUICK = dc.Recipe(name="quick", steps=5, batch_size=16, min_stimuli_correct=0)


@pytest.fixture(scope="session")
def quick_cache(tmp_path_factory):
    """A folder holding a QUICK-recipe digit-CLIP cache (copy it to reuse it without training)."""
    folder = tmp_path_factory.mktemp("digit_clip_quick")
    dc.load_or_train(QUICK, cache_dir=folder, progress=False)
    return folder


def _copy_cache(src, dst):
    for name in dc.cache_paths(QUICK, src):
        (dst / name.name).write_bytes(name.read_bytes())
    return dst


def _count_training(monkeypatch):
    calls = []
    original = dc.train

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(dc, "train", counting)
    return calls


# --- the loss ---------------------------------------------------------------------------------------

def _plain_clip_loss(img, txt, scale):
    logits = scale * img @ txt.T
    target = torch.arange(len(img))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def test_the_loss_counts_same_digit_pairs_as_positives():
    e = torch.eye(4)
    labels = torch.tensor([3, 3, 5, 5])
    # "clustered": both 3s share one embedding (and so do their captions); "spread": each pair on its own axis.
    clustered = e[[0, 0, 1, 1]]
    spread = e[[0, 1, 2, 3]]
    scale = 50.0
    ours = {k: float(dc.digit_contrastive_loss(v, v, labels, logit_scale=scale))
            for k, v in (("clustered", clustered), ("spread", spread))}
    plain = {k: float(_plain_clip_loss(v, v, scale)) for k, v in (("clustered", clustered), ("spread", spread))}
    # Plain CLIP loss wants the two 3s apart (a 3 must not match the other 3's caption); ours wants them together.
    assert ours["clustered"] < 1e-6 and plain["clustered"] == pytest.approx(math.log(2), abs=1e-3)
    assert plain["spread"] < 1e-6 and ours["spread"] > 1.0
    # With all digits distinct the targets are one-hot: exactly plain CLIP loss.
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    txt = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    assert float(dc.digit_contrastive_loss(img, txt, torch.arange(6), logit_scale=3.0)) == pytest.approx(
        float(_plain_clip_loss(img, txt, 3.0)), abs=1e-5)


def test_the_loss_against_a_separate_caption_set():
    # Images of digits 0 and 2 against captions of 0, 1, 2 (two templates each): a caption whose digit has no image
    # in the batch (1) is left out of the caption-to-image direction instead of dividing by zero.
    e = torch.eye(3)
    images, image_labels = e[[0, 2]], torch.tensor([0, 2])
    captions, caption_labels = e[[0, 1, 2, 0, 1, 2]], torch.tensor([0, 1, 2, 0, 1, 2])
    loss = dc.digit_contrastive_loss(images, captions, image_labels, caption_labels, logit_scale=50.0)
    assert torch.isfinite(loss) and float(loss) < 1e-6
    wrong = dc.digit_contrastive_loss(images.flip(0), captions, image_labels, caption_labels, logit_scale=50.0)
    assert float(wrong) > 10


# --- training and the cache ----------------------------------------------------------------------------

def test_small_recipe_learns_and_the_cache_records_its_checksum_and_checks(tmp_path):
    dc.load_or_train(dc.SMALL_RECIPE, cache_dir=tmp_path, progress=False)
    pt, record = dc.cache_paths(dc.SMALL_RECIPE, tmp_path)
    rec = json.loads(record.read_text())
    assert rec["sha256"] == dc._sha256(pt) and rec["recipe"] == dc.SMALL_RECIPE.to_dict()
    meta = rec["metadata"]
    assert meta["recipe"]["version"] == dc.RECIPE_VERSION
    for part in (meta, meta["untrained"]):  # after training and before (the same network at its seeded init)
        assert 0 <= part["stimuli_correct_64px"] <= 10 and 0 <= part["heldout_handwritten_accuracy"] <= 1
        cos = torch.tensor(part["stimuli_cosine"])
        assert cos.shape == (10, 10) and torch.allclose(cos.diagonal(), torch.ones(10), atol=1e-3)
    # Before training every stimulus looks alike to the network and it reads digits at chance; 150 small steps
    # already pull the stimuli apart and read unseen handwriting well above the untrained network.
    before = meta["untrained"]
    assert before["stimuli_cosine_offdiag_mean"] > 0.9
    assert meta["stimuli_cosine_offdiag_mean"] < before["stimuli_cosine_offdiag_mean"] - 0.1
    assert meta["heldout_handwritten_accuracy"] > before["heldout_handwritten_accuracy"] + 0.15


def test_a_second_load_uses_the_cache_without_training(quick_cache, tmp_path, monkeypatch):
    folder = _copy_cache(quick_cache, tmp_path)
    calls = _count_training(monkeypatch)
    a = dc.load_or_train(QUICK, cache_dir=folder)
    b = dc.load_or_train(QUICK, cache_dir=folder)
    assert calls == [] and a.sha256 == b.sha256
    assert a.weights == f"digit-clip:v{dc.RECIPE_VERSION}-quick:{a.sha256[:12]}"
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_damaged_cache_is_retrained_with_a_notice_and_training_is_repeatable(quick_cache, tmp_path, monkeypatch):
    folder = _copy_cache(quick_cache, tmp_path)
    pt, record = dc.cache_paths(QUICK, folder)
    good = dc.load_or_train(QUICK, cache_dir=folder)
    data = bytearray(pt.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    pt.write_bytes(bytes(data))
    calls = _count_training(monkeypatch)
    with pytest.warns(UserWarning, match="damaged"):
        again = dc.load_or_train(QUICK, cache_dir=folder, progress=False)
    assert calls == [1]
    assert json.loads(record.read_text())["sha256"] == dc._sha256(pt)  # rebuilt and recorded afresh
    # Same recipe, same seed, same thread count: the same weights as before the damage, to the byte (so a run's
    # recorded clip_weights, digit-clip:v1:<sha12>, still matches after a rebuild on the same machine).
    sg, sa = good.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(sg[k], sa[k]) for k in sg)
    assert again.sha256 == good.sha256 and again.weights == good.weights


def test_a_new_recipe_version_or_a_lost_record_retrains(quick_cache, tmp_path, monkeypatch):
    folder = _copy_cache(quick_cache, tmp_path)
    calls = _count_training(monkeypatch)
    monkeypatch.setattr(dc, "RECIPE_VERSION", dc.RECIPE_VERSION + 1)
    with pytest.warns(UserWarning, match="recipe"):
        bumped = dc.load_or_train(QUICK, cache_dir=folder, progress=False)
    assert calls == [1] and bumped.metadata["recipe"]["version"] == dc.RECIPE_VERSION
    assert bumped.weights.startswith(f"digit-clip:v{dc.RECIPE_VERSION}-quick:")
    dc.cache_paths(QUICK, folder)[1].unlink()
    with pytest.warns(UserWarning, match="record"):
        dc.load_or_train(QUICK, cache_dir=folder, progress=False)
    assert calls == [1, 1]


def test_training_leaves_global_torch_state_alone(tmp_path):
    threads, rng = torch.get_num_threads(), torch.random.get_rng_state()
    dc.train(dc.Recipe(name="tiny", steps=3, batch_size=16, min_stimuli_correct=0), progress=False)
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), rng)


def test_failing_the_stimulus_check_is_a_clear_error_and_caches_nothing(tmp_path):
    recipe = dc.Recipe(name="hopeless", steps=2, batch_size=16, min_stimuli_correct=10)
    with pytest.raises(dc.DigitClipCheckError, match=r"no seed passed \(seed 0: \d+/10 and \d+/10, seed 1: .*, seed 2: .* at "
                                                     r"64 / 32 px\).*recognises only \d+/10 stimuli.*Nothing was cached"):
        dc.load_or_train(recipe, cache_dir=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_a_seed_that_fails_the_check_is_followed_by_the_next_and_the_record_says_which(tmp_path, monkeypatch):
    """Another CPU can round its way to a network that misses a stimulus: the next seed is trained instead of
    falling back to an untrained CLIP, and the record names the seed that passed."""
    original, seeds = dc.train, []

    def seed0_fails(recipe, progress=None):
        seeds.append(recipe.seed)
        if recipe.seed == QUICK.seed:
            raise dc.DigitClipCheckError("digit-CLIP (recipe quick, v1) recognises only 9/10 stimuli. Nothing was cached.",
                                         {"stimuli_correct_64px": 9, "stimuli_correct_32px": 10})
        return original(recipe, progress=progress)

    monkeypatch.setattr(dc, "train", seed0_fails)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        trained = dc.load_or_train(QUICK, cache_dir=tmp_path, progress=False)
    finally:
        logger.removeHandler(handler)
    assert seeds == [QUICK.seed, QUICK.seed + 1]
    failed = [{"seed": QUICK.seed, "stimuli_correct_64px": 9, "stimuli_correct_32px": 10}]
    assert trained.metadata["seed_used"] == QUICK.seed + 1 and trained.metadata["seeds_failed"] == failed
    assert trained.metadata["recipe"] == QUICK.to_dict()  # the recipe asked for; the seed that passed is seed_used
    assert any("seed 0 named 9/10 stimuli" in r.getMessage() and "seed 1" in r.getMessage() for r in records)
    again = dc.load_or_train(QUICK, cache_dir=tmp_path, progress=False)  # the cache of QUICK, not retrained
    assert seeds == [QUICK.seed, QUICK.seed + 1] and again.sha256 == trained.sha256
    assert again.metadata["seed_used"] == QUICK.seed + 1


# --- the real recipe --------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_full_recipe_knows_the_ten_stimuli_and_unseen_handwriting():
    model = dc.load_or_train(progress=False)  # cached once per checkout
    meta = model.metadata
    before = meta["untrained"]
    # The training's own check (it raises below 10/10), recomputed here from the cached weights.
    text = dc.class_text_embeddings(model.model)
    for size in (64, 32):
        stim = to_tensor(get_stimuli(size=224), size=size)
        pred = (dc._embed(model.model, stim) @ text.T).argmax(1)
        assert pred.tolist() == list(range(10)), (size, pred.tolist())
    assert meta["stimuli_correct_64px"] == meta["stimuli_correct_32px"] == 10
    # Handwriting and a font it never saw: far above the untrained network of the same architecture (chance).
    assert meta["heldout_handwritten_accuracy"] >= max(0.8, before["heldout_handwritten_accuracy"] + 0.5)
    assert meta["heldout_font_accuracy"] >= max(0.7, before["heldout_font_accuracy"] + 0.4)
    # The stimuli no longer look alike: untrained ~1.0 off the diagonal, trained far below.
    assert before["stimuli_cosine_offdiag_mean"] > 0.9
    assert meta["stimuli_cosine_offdiag_mean"] < before["stimuli_cosine_offdiag_mean"] - 0.5
