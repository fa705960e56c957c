"""Frozen CLIP: loading modes, in-loss preprocessing, gradient flow, stimulus-embedding cache.

All offline with the tiny registered config (HF_HUB_OFFLINE=1, an empty HF cache).
"""
import subprocess
import sys
import time
import warnings

import open_clip
import pytest
import torch
import torch.nn.functional as F

from helpers import models, semantic
from helpers.config import UNTRAINED_CLIP_NOTE
from helpers.semantic import TINY_CLIP_NAME, ClipUnavailableError, StaleCacheError


@pytest.fixture(autouse=True)
def offline_empty_cache(monkeypatch, tmp_path_factory):
    # A developer's populated cache must not change what these tests see.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)


@pytest.fixture(scope="module")
def clip():
    return semantic.load_clip(TINY_CLIP_NAME, weights="untrained")


@pytest.fixture(scope="module")
def stimuli():
    # Ten distinct images in [-1, 1]: a dark bar at a different height per class on white.
    imgs = torch.ones(10, 3, 48, 48)
    for k in range(10):
        imgs[k, :, 4 * k:4 * k + 8, 8:40] = -1.0
    return imgs


def _perturbed_state(clip, scale=0.05, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {k: (v + scale * torch.randn(v.shape, generator=g)) if v.is_floating_point() else v
            for k, v in clip.model.state_dict().items()}


# --- the tiny config and the frozen wrapper ---------------------------------------------------

def test_tiny_config_is_registered_and_small(clip):
    assert TINY_CLIP_NAME in open_clip.list_models()
    n_image = sum(p.numel() for p in clip.model.visual.parameters())
    assert 0.2e6 < n_image < 0.45e6
    assert clip.image_size == 64 and clip.embed_dim == 64
    assert clip.trained is False and clip.weights == "untrained" and clip.model_name == TINY_CLIP_NAME


def test_clip_is_frozen_float32_and_train_keeps_it_in_eval(clip):
    assert all(not p.requires_grad for p in clip.parameters())
    assert all(p.dtype == torch.float32 for p in clip.parameters())
    clip.train()
    assert clip.training and not clip.model.training
    assert not any(m.training for m in clip.model.modules())
    clip.eval()


def test_untrained_clip_is_one_fixed_network():
    a = semantic.load_clip(TINY_CLIP_NAME, "untrained")
    b = semantic.load_clip(TINY_CLIP_NAME, "untrained")
    assert a.fingerprint == b.fingerprint
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_encode_images_is_normalised_embedding_for_sizes_32_64_224(clip):
    torch.manual_seed(0)
    for size in (32, 64, 224):
        e = clip.encode_images(torch.rand(3, 3, size, size) * 2 - 1)
        assert e.shape == (3, clip.embed_dim) and e.dtype == torch.float32
        assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)


def test_encode_images_applies_clip_mean_std(clip):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 2 - 1  # already at CLIP's input size: no resize
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    manual = F.normalize(clip.model.encode_image(((x + 1) / 2 - mean) / std), dim=-1)
    assert torch.allclose(clip.encode_images(x), manual, atol=1e-5)
    unnormalised = F.normalize(clip.model.encode_image(x), dim=-1)  # what the prototype fed CLIP
    assert not torch.allclose(clip.encode_images(x), unnormalised, atol=1e-3)


def test_encode_images_upsamples_32px_generator_output(clip):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    up = F.interpolate((x + 1) / 2, size=(64, 64), mode="bilinear", align_corners=False)
    manual = F.normalize(clip.model.encode_image((up - clip.mean) / clip.std), dim=-1)
    assert torch.allclose(clip.encode_images(x), manual, atol=1e-5)


def test_encode_images_rejects_bad_shapes(clip):
    with pytest.raises(ValueError, match="3, H, W"):
        clip.encode_images(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="3, H, W"):
        clip.encode_images(torch.zeros(3, 32, 32))


# --- gradients: the prototype's bug -----------------------------------------------------------

def test_gradients_flow_through_clip_into_the_generator_but_not_into_clip(clip):
    torch.manual_seed(0)
    gen = models.Generator(latent_dim=16, image_size=32)
    target = F.normalize(torch.randn(4, clip.embed_dim), dim=-1)
    loss = semantic.semantic_loss(clip.encode_images(gen(torch.randn(4, 16))), target)
    loss.backward()
    for name, p in gen.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in clip.parameters())


def test_clip_weights_are_bit_identical_after_an_optimiser_step(clip):
    torch.manual_seed(0)
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    gen = models.Generator(latent_dim=16, image_size=32)
    opt = torch.optim.Adam(gen.parameters(), lr=1e-2)
    g0 = {k: v.clone() for k, v in gen.state_dict().items()}
    target = F.normalize(torch.randn(4, clip.embed_dim), dim=-1)
    clip.train()  # as a training loop would
    semantic.semantic_loss(clip.encode_images(gen(torch.randn(4, 16))), target).backward()
    opt.step()
    after = clip.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(not torch.equal(g0[k], v) for k, v in gen.state_dict().items())  # the generator did move


# --- the loss and cosine matrix on hand-made embeddings ----------------------------------------

def test_semantic_loss_is_one_minus_cosine():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [4.0, 3.0]])
    # 1 - cos per row: 0 (same), 1 (orthogonal), 2 (opposite), 1 - 24/25 (scale does not matter)
    expected = (0 + 1 + 2 + (1 - 24 / 25)) / 4
    assert semantic.semantic_loss(a, b).item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError):
        semantic.semantic_loss(a, b[:3])


def test_cosine_matrix_known_answer():
    a = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    b = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    r = 2 ** -0.5
    expected = torch.tensor([[1.0, r, 0.0], [0.0, r, -1.0]])
    assert torch.allclose(semantic.cosine_matrix(a, b), expected, atol=1e-6)
    with pytest.raises(ValueError):
        semantic.cosine_matrix(a, torch.zeros(3, 4))


# --- stimulus embeddings and their cache --------------------------------------------------------

def test_stimulus_embeddings_match_a_fresh_encoding_and_labels(clip, stimuli):
    emb = semantic.StimulusEmbeddings.compute(clip, stimuli)
    assert emb.embeddings.shape == (10, clip.embed_dim) and not emb.embeddings.requires_grad
    assert torch.allclose(emb.embeddings, clip.encode_images(stimuli), atol=1e-6)
    assert torch.equal(emb.for_labels(torch.tensor([3, 3, 0])), emb.embeddings[[3, 3, 0]])
    with pytest.raises(ValueError, match="0..9"):
        emb.for_labels([10])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        semantic.StimulusEmbeddings.compute(clip, (stimuli + 1) * 127.5)  # 0..255 pixels by mistake


def test_cached_stimulus_embeddings_equal_fresh_ones(clip, stimuli, tmp_path):
    path = tmp_path / "stim.pt"
    first = semantic.stimulus_embeddings(clip, stimuli, cache_path=path)
    assert path.is_file()
    again = semantic.stimulus_embeddings(clip, stimuli, cache_path=path)
    assert torch.equal(again.embeddings, first.embeddings)
    fresh = clip.encode_images(stimuli).detach()
    assert torch.allclose(again.embeddings, fresh, atol=1e-6)
    assert (again.model_name, again.weights) == (TINY_CLIP_NAME, "untrained")


def test_a_cache_from_other_weights_or_stimuli_is_refused_and_recomputed(clip, stimuli, tmp_path):
    path = tmp_path / "stim.pt"
    semantic.StimulusEmbeddings.compute(clip, stimuli).save(path)
    ckpt = tmp_path / "other.pt"
    torch.save(_perturbed_state(clip), ckpt)
    other = semantic.load_clip(TINY_CLIP_NAME, weights=str(ckpt))
    with pytest.raises(StaleCacheError, match="weights"):
        semantic.StimulusEmbeddings.load(path, other)
    with pytest.raises(StaleCacheError, match="stimuli"):
        semantic.StimulusEmbeddings.load(path, clip, stimuli.flip(0))
    redone = semantic.stimulus_embeddings(other, stimuli, cache_path=path)
    assert torch.allclose(redone.embeddings, other.encode_images(stimuli), atol=1e-6)
    assert semantic.StimulusEmbeddings.load(path, other).weights == other.weights  # cache now belongs to it


# --- loading: checkpoints, offline failure, auto fallback, names ------------------------------

def test_a_local_checkpoint_loads_back_identical_weights(clip, tmp_path):
    path = tmp_path / "tiny_untrained.pt"
    torch.save(clip.model.state_dict(), path)
    loaded = semantic.load_clip(TINY_CLIP_NAME, weights=str(path))
    sa, sb = clip.model.state_dict(), loaded.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert loaded.weights.startswith("checkpoint:")
    assert loaded.trained is False  # identical to the seeded random init: never passed off as trained

    trained_path = tmp_path / "tiny_changed.pt"
    state = _perturbed_state(clip)
    torch.save(state, trained_path)
    changed = semantic.load_clip(TINY_CLIP_NAME, weights=str(trained_path))
    assert changed.trained is True
    assert all(torch.equal(changed.model.state_dict()[k], state[k]) for k in state)


def test_missing_checkpoint_path_and_unknown_name_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        semantic.load_clip(TINY_CLIP_NAME, weights=str(tmp_path / "nope.pt"))
    with pytest.raises(ValueError, match="unknown CLIP model 'ViT-B-3'.*ViT-B-32"):
        semantic.load_clip("ViT-B-3", weights="untrained")


def test_a_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    path = tmp_path / "wrong.pt"
    torch.save(models.Generator(8, 32).state_dict(), path)
    with pytest.raises(ValueError, match="does not load into CLIP"):
        semantic.load_clip(TINY_CLIP_NAME, weights=str(path))


def test_pretrained_offline_fails_fast_with_the_ways_out():
    t0 = time.perf_counter()
    with pytest.raises(ClipUnavailableError) as err:
        semantic.load_clip("ViT-B-32", weights="pretrained", pretrained_tag="laion2b_s34b_b79k")
    assert time.perf_counter() - t0 < 10
    msg = str(err.value)
    assert "untrained" in msg and "clip_weights=/path/to/file" in msg and "cache" in msg
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in msg


def test_openai_weights_select_the_quickgelu_variant():
    with pytest.raises(ClipUnavailableError, match="ViT-B-32-quickgelu"):
        semantic.load_clip("ViT-B-32", weights="pretrained", pretrained_tag="openai")


@pytest.fixture
def small_digit_clip(monkeypatch, tmp_path_factory):
    """A few-step digit-CLIP recipe (seconds) in a temporary cache stands in for the full one in these tests:
    they check what is loaded and how it is labelled, not what it knows (tests/test_digit_clip.py does)."""
    from helpers import digit_clip

    folder = tmp_path_factory.getbasetemp() / "digit_clip_quick_semantic"
    quick = digit_clip.Recipe(name="quick", steps=5, batch_size=16, min_stimuli_correct=0)
    original = digit_clip.load_or_train
    monkeypatch.setattr(digit_clip, "load_or_train",
                        lambda *a, **k: original(quick, cache_dir=folder, progress=False))
    return folder


def test_auto_falls_back_to_digit_clip_and_says_so(small_digit_clip):
    with pytest.warns(UserWarning, match="DIGIT-CLIP instead .*not ViT-B-32"):
        clip = semantic.load_clip("ViT-B-32", weights="auto", pretrained_tag="laion2b_s34b_b79k")
    assert clip.trained is True and clip.model_name == semantic.DIGIT_CLIP_NAME
    assert clip.weights.startswith("digit-clip:v") and clip.image_size == 64
    text = clip.describe()
    assert text.startswith("CLIP digit-clip (digit-clip:v") and "stands in for ViT-B-32 / laion2b_s34b_b79k" in text
    assert UNTRAINED_CLIP_NOTE not in text and semantic.untrained_banner(clip) == ""
    # Asked for by name it is the same network, without a warning or a stand-in note.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        direct = semantic.load_clip("digit-clip", weights="auto")
    assert direct.weights == clip.weights and direct.fingerprint == clip.fingerprint and direct.note == ""
    # The stimulus-embedding cache knows them apart from the untrained architecture of the same name.
    untrained = semantic.load_clip("digit-clip", weights="untrained")
    assert untrained.trained is False and untrained.fingerprint != clip.fingerprint
    assert UNTRAINED_CLIP_NOTE in untrained.describe()


def test_a_tiny_model_with_auto_also_falls_back_to_digit_clip(small_digit_clip):
    with pytest.warns(UserWarning, match="DIGIT-CLIP"):
        clip = semantic.load_clip(TINY_CLIP_NAME, weights="auto")  # no pretrained tag exists for it
    assert clip.trained and clip.model_name == "digit-clip" and f"stands in for {TINY_CLIP_NAME}" in clip.describe()


def test_importing_the_losses_registers_nothing():
    code = ("import open_clip, helpers.losses, helpers.train; "
            "print(sorted({'eeg2img-tiny', 'digit-clip'} & set(open_clip.list_models())))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --- random views (the training loss's augmentation) ---------------------------------------------

def test_random_views_are_view_major_white_filled_and_differentiable():
    torch.manual_seed(0)
    x = (torch.rand(3, 3, 32, 32) * 2 - 1).requires_grad_()
    v = semantic.random_views(x, 4)
    assert v.shape == (12, 3, 32, 32)
    v.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    white = semantic.random_views(torch.ones(2, 3, 32, 32), 4)  # a blank page stays blank: the fill is white
    assert (white - 1).abs().max() < 6 * semantic.VIEW_NOISE
    # A centred black square: every view keeps it roughly (views are mild), and views differ from each other.
    sq = torch.ones(1, 3, 32, 32)
    sq[:, :, 12:20, 12:20] = -1
    torch.manual_seed(1)
    views = semantic.random_views(sq, 4)
    assert all((views[i] < 0).float().mean() > 0.02 for i in range(4))
    assert not torch.allclose(views[0], views[1], atol=0.1)
    torch.manual_seed(1)
    assert torch.equal(semantic.random_views(sq, 4), views)  # from torch's RNG: reproducible under a seed
    with pytest.raises(ValueError, match="k >= 1"):
        semantic.random_views(sq, 0)


def test_pretrained_comes_from_a_populated_cache_offline(clip, tmp_path, monkeypatch):
    # Simulate a hub cache holding weights for a (fake) tag of the tiny model.
    state = _perturbed_state(clip, seed=7)
    repo = "eeg2img/tiny-test"
    snap = tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    torch.save(state, snap / "open_clip_pytorch_model.bin")
    (tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "refs").mkdir()
    (tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    fake = {"hf_hub": f"{repo}/", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    monkeypatch.setattr(open_clip, "get_pretrained_cfg",
                        lambda name, tag: fake if (name, tag) == (TINY_CLIP_NAME, "fake") else {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: the cache was used
        loaded = semantic.load_clip(TINY_CLIP_NAME, weights="pretrained", pretrained_tag="fake")
    assert loaded.trained and loaded.weights == "pretrained:fake"
    assert all(torch.equal(loaded.model.state_dict()[k], state[k]) for k in state)
    assert torch.allclose(loaded.mean.flatten(), torch.tensor([0.5, 0.5, 0.5]))  # the tag's preprocessing
    assert torch.allclose(loaded.std.flatten(), torch.tensor([0.25, 0.25, 0.25]))


def test_bad_weights_value_is_a_clear_error():
    with pytest.raises(ValueError, match="untrained"):
        semantic.load_clip(TINY_CLIP_NAME, weights="")


def test_pretrained_without_network_fails_fast_even_when_not_flagged_offline(monkeypatch):
    # HF_HUB_OFFLINE unset, hub endpoint unreachable (a closed local port): the probe answers, not 45 s of retries.
    from huggingface_hub import constants
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://127.0.0.1:9")
    t0 = time.perf_counter()
    with pytest.raises(ClipUnavailableError, match="cannot be reached") as err:
        semantic.load_clip("ViT-B-32", weights="pretrained")
    assert time.perf_counter() - t0 < 10
    assert "untrained" in str(err.value)
