"""Exact, faster forms of two pieces of open_clip's vision transformer, for the frozen CLIP of the loss.

The semantic term runs CLIP forward and backward (to its input) on every generated image of every step, and that
pass dominates a training step (docs/DESIGN.md#the-steps-speed). Two pieces of open_clip's ViT cost more than
their arithmetic, measured on a 2-core AMD EPYC (ViT-B-32, batch 16, forward + backward):

* ``nn.MultiheadAttention(batch_first=True)`` transposes its input to sequence-first, and the packed q/k/v
  projection of that non-contiguous tensor runs as a batched matmul against the weight expanded to every
  position: in bfloat16 PyTorch copies that expanded weight (50 x 768 x 2304 values per layer and pass), which
  made bf16 CLIP slower than float32. :class:`PackedSelfAttention` projects the contiguous batch-first tensor
  with one ``F.linear`` and calls ``F.scaled_dot_product_attention``: the same parameters and the same math.
* The patch embedding is a convolution whose kernel equals its stride; its input gradient went through
  oneDNN's general convolution backward (about 0.2 s). :class:`PatchEmbedding` computes it as the reshape
  plus matmul that it is.

:func:`speed_up_vision_tower` swaps them in place; the state dict keeps its keys and values, so checkpoints,
fingerprints and caches are unchanged. Outputs agree with open_clip's to float rounding (tests/test_fast_tower.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PackedSelfAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose self-attention without masks is one packed projection plus SDPA.

    Anything else (cross-attention, masks, attention weights, dropout in training) goes to the parent's forward.
    """

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        plain = (query is key and key is value and key_padding_mask is None and attn_mask is None
                 and not need_weights and not is_causal and self.batch_first and self._qkv_same_embed_dim
                 and self.bias_k is None and not self.add_zero_attn and query.dim() == 3
                 and (self.dropout == 0.0 or not self.training))
        if not plain:
            return super().forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                                   attn_mask=attn_mask, average_attn_weights=average_attn_weights,
                                   is_causal=is_causal)
        batch, length, width = query.shape
        heads = self.num_heads
        qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(batch, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)  # [batch, heads, length, head_width]
        out = out.transpose(1, 2).reshape(batch, length, width)
        return self.out_proj(out), None


class PatchEmbedding(nn.Conv2d):
    """A convolution with kernel = stride and no padding, computed as patches @ weight (any other use: Conv2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.kernel_size[0]
        if not _is_patch_conv(self) or x.dim() != 4 or x.shape[-2] % p or x.shape[-1] % p:
            return super().forward(x)
        b, c, h, w = x.shape
        gh, gw = h // p, w // p
        patches = x.reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * p * p)
        out = F.linear(patches, self.weight.reshape(self.out_channels, -1), self.bias)  # [b, gh*gw, out]
        return out.transpose(1, 2).reshape(b, self.out_channels, gh, gw)


def _packable(m: nn.Module) -> bool:
    return (type(m) is nn.MultiheadAttention and m._qkv_same_embed_dim and m.bias_k is None
            and not m.add_zero_attn and m.batch_first)


def _is_patch_conv(m: nn.Conv2d) -> bool:
    """Square kernel of at least 2 equal to the stride, no padding, dilation or groups: a ViT's patch embedding
    (1 x 1 convolutions, as in ResNet towers, are left alone: not measured faster)."""
    return (m.kernel_size == m.stride and m.kernel_size[0] == m.kernel_size[1] > 1 and m.padding == (0, 0)
            and m.dilation == (1, 1) and m.groups == 1 and m.padding_mode == "zeros")


def _patchable(m: nn.Module) -> bool:
    return type(m) is nn.Conv2d and _is_patch_conv(m)


def _replacement(m: nn.Module) -> nn.Module | None:
    if not (_packable(m) or _patchable(m)):
        return None
    w = next(m.parameters())
    if _packable(m):
        new = PackedSelfAttention(m.embed_dim, m.num_heads, dropout=m.dropout, bias=m.in_proj_bias is not None,
                                  batch_first=True, device=w.device, dtype=w.dtype)
    else:
        new = PatchEmbedding(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, bias=m.bias is not None,
                             device=w.device, dtype=w.dtype)
    new.load_state_dict(m.state_dict())
    new.train(m.training)
    for p_new, p_old in zip(new.parameters(), m.parameters()):
        p_new.requires_grad_(p_old.requires_grad)
    return new


def speed_up_vision_tower(tower: nn.Module) -> int:
    """Swap every plain self-attention and patch convolution under ``tower`` for its exact faster form.

    Returns how many modules were swapped (0 for a tower without them, e.g. a convolutional one).
    """
    swapped = 0
    for parent in list(tower.modules()):
        for name, child in list(parent.named_children()):
            new = _replacement(child)
            if new is not None:
                setattr(parent, name, new)
                swapped += 1
    return swapped
