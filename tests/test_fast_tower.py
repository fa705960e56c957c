"""The frozen CLIP's faster attention and patch embedding compute what open_clip's own modules compute."""
import copy

import open_clip
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import semantic
from helpers.fast_tower import PackedSelfAttention, PatchEmbedding, speed_up_vision_tower
from helpers.semantic import TINY_CLIP_NAME


@pytest.fixture(scope="module")
def towers():
    """open_clip's tiny ViT as built, and the same weights as FrozenClip holds them (faster modules swapped in)."""
    clip = semantic.load_clip(TINY_CLIP_NAME, weights="untrained")
    torch.manual_seed(0)
    plain = open_clip.create_model(TINY_CLIP_NAME).visual.eval()
    plain.load_state_dict(clip.model.visual.state_dict())
    return plain, clip


def test_frozen_clip_swaps_every_attention_and_the_patch_embedding_and_keeps_the_state_dict(towers):
    plain, clip = towers
    layers = len(plain.transformer.resblocks)
    assert clip.fast_modules == layers + 1
    assert all(isinstance(b.attn, PackedSelfAttention) for b in clip.model.visual.transformer.resblocks)
    assert isinstance(clip.model.visual.conv1, PatchEmbedding)
    ours, theirs = clip.model.visual.state_dict(), plain.state_dict()
    assert list(ours) == list(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not any(p.requires_grad for p in clip.model.parameters())  # still frozen after the swap


def test_outputs_and_input_gradients_match_open_clips_modules(towers):
    plain, clip = towers
    x = torch.rand(6, 3, 64, 64)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = plain(xa), clip.model.visual(xb)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    (a * torch.arange(a.shape[1])).sum().backward()
    (b * torch.arange(b.shape[1])).sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-4, atol=1e-6)


def test_open_clips_blocks_take_the_fast_path(towers, monkeypatch):
    """The vision blocks call attention in the one form PackedSelfAttention computes itself: PyTorch's forward is
    never reached (else the swap would be correct but buy nothing)."""
    _, clip = towers

    def refuse(*args, **kwargs):
        raise AssertionError("nn.MultiheadAttention.forward was called: the fast path was not taken")

    monkeypatch.setattr(nn.MultiheadAttention, "forward", refuse)
    monkeypatch.setattr(nn.Conv2d, "forward", refuse)
    assert clip.encode_images(torch.rand(2, 3, 64, 64) * 2 - 1).shape == (2, clip.embed_dim)


def test_uses_it_does_not_cover_go_to_the_original_modules():
    """Masks, cross-attention, attention weights and odd image sizes fall back to PyTorch's own forward."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    wrapper = nn.Sequential(copy.deepcopy(mha))
    assert speed_up_vision_tower(wrapper) == 1 and isinstance(wrapper[0], PackedSelfAttention)
    fast = wrapper[0]
    q, kv = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    mask = torch.zeros(5, 5).masked_fill(torch.triu(torch.ones(5, 5, dtype=torch.bool), 1), float("-inf"))
    torch.testing.assert_close(fast(q, kv, kv, need_weights=False)[0], mha(q, kv, kv, need_weights=False)[0])
    torch.testing.assert_close(fast(q, q, q, attn_mask=mask, need_weights=False)[0],
                               mha(q, q, q, attn_mask=mask, need_weights=False)[0])
    out, weights = fast(q, q, q)  # need_weights defaults to True: PyTorch's path, with the weights
    torch.testing.assert_close(out, mha(q, q, q)[0])
    assert weights is not None and weights.shape == (2, 5, 5)
    torch.testing.assert_close(fast(q, q, q, need_weights=False)[0], mha(q, q, q, need_weights=False)[0],
                               rtol=1e-5, atol=1e-6)

    conv = nn.Conv2d(3, 8, 4, stride=4, bias=True)
    holder = nn.Sequential(copy.deepcopy(conv), nn.Conv2d(3, 3, 3, padding=1))  # the second is no patch conv
    assert speed_up_vision_tower(holder) == 1 and type(holder[1]) is nn.Conv2d
    for size in (16, 18):  # 18 is not a multiple of the patch: Conv2d's own forward (it drops the remainder)
        img = torch.randn(2, 3, size, size)
        torch.testing.assert_close(holder[0](img), conv(img), rtol=1e-5, atol=1e-5)


def test_low_precision_pass_is_bfloat16_close_to_float32_and_differentiable(towers):
    _, clip = towers
    images = torch.rand(8, 3, 64, 64) * 2 - 1
    ref = clip.encode_images(images)
    x = images.clone().requires_grad_(True)
    low = clip.encode_images(x, low_precision=True)
    assert low.dtype == torch.float32
    assert not torch.equal(low, ref), "low_precision changed nothing: not in bfloat16?"
    assert F.cosine_similarity(low, ref.detach()).min() > 0.99
    (1 - (low * ref.detach()).sum(-1)).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a caller's autocast does not reach the float32 pass
        torch.testing.assert_close(clip.encode_images(images), ref)


def test_modules_the_swap_must_not_touch_are_left_as_they_are():
    """add_zero_attn attention (another computation), 1 x 1 convolutions (ResNet towers: not measured faster), and a
    PatchEmbedding built with a stride other than its kernel computes as the Conv2d it is."""
    holder = nn.Sequential(nn.MultiheadAttention(16, 4, batch_first=True, add_zero_attn=True), nn.Conv2d(8, 8, 1),
                           nn.Conv2d(3, 8, 4, stride=2))
    assert speed_up_vision_tower(holder) == 0
    odd = PatchEmbedding(3, 8, 4, stride=2)
    conv = nn.Conv2d(3, 8, 4, stride=2)
    conv.load_state_dict(odd.state_dict())
    img = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(odd(img), conv(img))
