"""Frozen CLIP as a semantic loss: loading, in-loss preprocessing, the stimulus-embedding cache.

See docs/DESIGN.md#clip-and-the-semantic-loss. The prototype this project replaces computed both CLIP embeddings under
``torch.no_grad()`` (so ``lambda_clip`` trained nothing) and fed CLIP unnormalised pixels. Here:

* CLIP is frozen with ``requires_grad_(False)`` + ``eval()`` and its weights kept in float32, never ``no_grad``:
  gradients flow through it into the generator (tests/test_semantic.py proves it). Under mixed precision the
  training pass on generated images runs in bfloat16 autocast (never float16); targets and metrics stay float32.
  Its vision tower's attention and patch embedding are swapped for exact faster forms (helpers.fast_tower).
* :meth:`FrozenClip.encode_images` maps [-1, 1] -> [0, 1], resizes to CLIP's input size and applies
  CLIP's mean/std, all as differentiable tensor ops inside the loss.
* The 10 stimulus embeddings are computed once (no grad: they are targets) and cached on disk together
  with the model name, weights and a fingerprint of the weights, so a cache is never reused across models.

``clip_weights`` (config) / ``weights`` (here): ``auto`` | ``pretrained`` | ``untrained`` | a checkpoint path.
``clip_model="digit-clip"`` is the project's own small CLIP (helpers.digit_clip), trained on first use and
cached; ``auto`` falls back to it (not to an untrained network) when pretrained weights cannot be had.
:func:`random_views` makes the random differentiable views that the training loss averages over
(``clip_views``).
"""
from __future__ import annotations

import difflib
import hashlib
import numbers
import warnings
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from helpers.clip_hub import ClipUnavailableError, load_pretrained
from helpers.clip_registry import register_model_config
from helpers.config import UNTRAINED_CLIP_NOTE
from helpers.digit_clip import DIGIT_CLIP_CONFIG, DIGIT_CLIP_NAME
from helpers.fast_tower import speed_up_vision_tower
from helpers.log import logger

TINY_CLIP_NAME = "eeg2img-tiny"
# About 0.3 M image parameters, 64 x 64 input (so the ci profile's 32 x 32 images are upsampled, as the
# cpu profile's 64 x 64 are for ViT-B-32). The text tower keeps CLIP's vocabulary so the stock tokenizer
# works, but is one narrow layer: this project never trains or needs text.
TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 96, "layers": 2, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
WEIGHT_KEYWORDS = ("auto", "pretrained", "untrained")
# Random views for the training loss (random_views): shift up to VIEW_SHIFT in affine_grid units (the side spans
# 2, so 0.25 = 12.5 % of the side), scale, rotation, and Gaussian pixel noise (std, in [-1, 1] units).
VIEW_SHIFT = 0.25
VIEW_SCALE = (0.8, 1.2)
VIEW_ROTATION_DEG = 12.0
VIEW_NOISE = 0.03
UNTRAINED_SEED = 0  # untrained CLIP = one fixed random network, so its embeddings are reproducible


class StaleCacheError(ValueError):
    """A stimulus-embedding cache was made with another model, other weights or other stimuli."""


def _register_project_models() -> None:
    """eeg2img-tiny and digit-clip, the two architectures defined by this project rather than by open_clip."""
    register_model_config(TINY_CLIP_NAME, TINY_CLIP_CONFIG)
    register_model_config(DIGIT_CLIP_NAME, DIGIT_CLIP_CONFIG)


# ----------------------------------------------------------------------------------------------
# The frozen wrapper


def _fingerprint(model: nn.Module) -> str:
    """A cheap identity of the image tower's weights (per-tensor float64 sums), to validate caches."""
    h = hashlib.sha1()
    for name, p in model.visual.state_dict().items():
        if p.is_floating_point():
            t = p.detach()
            h.update(f"{name}:{tuple(t.shape)}:{torch.sum(t, dtype=torch.float64).item():.12e}:"
                     f"{torch.sum(t.abs(), dtype=torch.float64).item():.12e};".encode())
    return h.hexdigest()[:16]


class FrozenClip(nn.Module):
    """A CLIP model that can only be used as a fixed, differentiable image embedder.

    Attributes: ``model_name``, ``weights`` (description, e.g. ``pretrained:laion2b_s34b_b79k``),
    ``trained`` (False for random weights), ``image_size`` (CLIP input resolution), ``embed_dim``,
    ``fingerprint`` (identity of the weights). Do not give its parameters to an optimiser: they are
    frozen, and ``train()`` leaves CLIP in eval mode.
    """

    def __init__(self, model: nn.Module, model_name: str, weights: str, trained: bool, note: str = "",
                 fast: bool = True):
        super().__init__()
        self.note = note  # e.g. that this CLIP stands in for another whose weights were unavailable
        self.model = model.float()  # never fp16 (NaN gradients): docs/DESIGN.md#frozen-float32-differentiable
        self.model.requires_grad_(False)
        self.model.eval()
        # Same parameters and math, less time (docs/DESIGN.md#the-steps-speed); the state dict is unchanged.
        # fast=False keeps open_clip's own modules (the benchmark's seed-faithful step runs those).
        self.fast_modules = speed_up_vision_tower(self.model.visual) if fast else 0
        self.model_name, self.weights, self.trained = model_name, weights, bool(trained)
        pp = open_clip.get_model_preprocess_cfg(model)
        size = getattr(model.visual, "image_size", pp.get("size"))
        size = (size, size) if isinstance(size, int) else tuple(size)
        self.input_size: tuple[int, int] = (int(size[0]), int(size[1]))
        self.image_size = self.input_size[0] if size[0] == size[1] else self.input_size
        self.embed_dim = int(model.visual.output_dim)
        # Buffers move with .to(device); not persistent, since they come from the model's config.
        self.register_buffer("mean", torch.tensor(pp["mean"], dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pp["std"], dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.fingerprint = _fingerprint(self.model)

    def train(self, mode: bool = True) -> "FrozenClip":
        """Keep CLIP in eval mode whatever the caller asks (dropout etc. would make the loss noisy)."""
        super().train(mode)
        self.model.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images [B, 3, H, W] -> CLIP input: [0, 1], resized to ``input_size``, mean/std normalised.

        Bilinear resize (antialiased when shrinking) as a differentiable op; the generated images are
        square, so CLIP's own resize-shortest-side + centre-crop reduces to this resize.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"encode_images expects RGB images [batch, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
        x = (images.float().to(self.device) + 1.0) * 0.5
        if tuple(x.shape[-2:]) != self.input_size:
            shrink = x.shape[-2] > self.input_size[0] or x.shape[-1] > self.input_size[1]
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=shrink)
        return (x - self.mean) / self.std

    def encode_images(self, images: torch.Tensor, low_precision: bool = False) -> torch.Tensor:
        """L2-normalised float32 CLIP embeddings [B, embed_dim] of images in [-1, 1]; differentiable.

        ``low_precision=True`` (the training loss under ``mixed_precision``) runs the tower in bfloat16 autocast,
        on any CPU (emulated, so slower, where the CPU lacks bf16 instructions) and on GPUs that support bf16
        (others stay float32): about 1.6x faster forward + backward on a CPU with avx512_bf16, embeddings' cosine to
        float32 0.99995 (docs/DESIGN.md#the-steps-speed). Never float16, whose range gave NaN gradients; any
        other caller's autocast is switched off here, so targets and metrics are float32.
        """
        bf16 = low_precision and (self.device.type != "cuda" or torch.cuda.is_bf16_supported())
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=bf16):
            emb = self.model.encode_image(self.preprocess(images))
        return F.normalize(emb.float(), dim=-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_images(images)

    def describe(self) -> str:
        """One line for logs, notebooks and figure captions; says loudly when CLIP is untrained."""
        note = (f"  [{self.note}]" if self.note else "") + ("" if self.trained else f"  [{UNTRAINED_CLIP_NOTE}]")
        return f"CLIP {self.model_name} ({self.weights}), input {self.image_size}, embed {self.embed_dim}{note}"

    def extra_repr(self) -> str:
        return self.describe()


class UntrainedClipWarning(UserWarning):
    """CLIP has random weights: its semantic loss and metrics reflect image likeness, not meaning."""


def untrained_banner(clip: FrozenClip) -> str:
    """The banner that every result made with an untrained CLIP carries (empty for a trained one)."""
    if clip.trained:
        return ""
    line = "!" * 78
    return (f"{line}\n!! UNTRAINED CLIP ({clip.model_name}, random weights): the semantic loss and the semantic\n"
            f"!! metrics reflect image likeness to a random network, not meaning. Use pretrained weights\n"
            f"!! (clip_weights=pretrained with a populated cache, or a checkpoint path), or the project's own\n"
            f"!! digit-CLIP (clip_model={DIGIT_CLIP_NAME}) for real results.\n{line}")


# ----------------------------------------------------------------------------------------------
# Loading


def _resolve_model_name(model_name: str, pretrained_tag: str | None) -> str:
    """Check the name; OpenAI's weights were trained with QuickGELU, so use the -quickgelu variant."""
    _register_project_models()
    known = open_clip.list_models()
    if model_name not in known:
        close = difflib.get_close_matches(model_name, known, n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown CLIP model {model_name!r}.{hint} The tiny test model is {TINY_CLIP_NAME!r}, the "
                         f"project's own trained one {DIGIT_CLIP_NAME!r}; "
                         f"open_clip.list_models() lists all {len(known)} architectures.")
    if (pretrained_tag or "").lower() == "openai" and not model_name.endswith("-quickgelu"):
        variant = f"{model_name}-quickgelu"
        if variant in known:
            return variant
    return model_name


def _create_untrained(model_name: str) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        return open_clip.create_model(model_name, pretrained=None)


def _load_checkpoint(model_name: str, path: str) -> tuple[nn.Module, bool]:
    """The named architecture with a state_dict file's weights; also says whether they differ from init."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"clip_weights={path!r} is none of {', '.join(WEIGHT_KEYWORDS)} and no checkpoint file exists at "
            f"{p.resolve()}")
    model = _create_untrained(model_name)
    init = _fingerprint(model)
    try:
        open_clip.load_checkpoint(model, str(p), strict=True)
    except Exception as e:
        raise ValueError(f"checkpoint {p} does not load into CLIP {model_name!r} (is it a state_dict of this "
                         f"architecture?): {e}") from e
    # Identical to our seeded random init means someone saved an untrained model: say so, never hide it.
    return model, _fingerprint(model) != init


def _load_digit_clip() -> tuple[nn.Module, str]:
    """The project's trained digit-CLIP (trained and cached on first use) and its weights description."""
    from helpers import digit_clip

    trained = digit_clip.load_or_train()
    return trained.model, trained.weights


def load_clip(model_name: str = "ViT-B-32", weights: str = "auto", pretrained_tag: str = "laion2b_s34b_b79k",
              device: str | torch.device = "cpu") -> FrozenClip:
    """Load a frozen, float32 CLIP for the semantic loss.

    weights: ``"pretrained"`` (the tag's weights from the cache or hub; ClipUnavailableError within
    seconds when they cannot be had), ``"auto"`` (pretrained when obtainable, else digit-CLIP, with a
    warning saying so), ``"untrained"`` (a fixed random network, mechanics only) or a path to a state_dict
    file for ``model_name``. Tag ``"openai"`` selects the ``-quickgelu`` architecture variant.
    ``model_name="digit-clip"`` with ``auto``/``pretrained``: the project's own trained digit-CLIP
    (:mod:`helpers.digit_clip`; about two minutes of training on first use, then cached; the tag is ignored).
    ``device`` may be ``"auto"`` (CUDA when available).
    """
    if not isinstance(weights, str) or not weights.strip():
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_KEYWORDS)} or a checkpoint path, got {weights!r}")
    key = weights.strip().lower()
    name = _resolve_model_name(model_name, pretrained_tag if key in ("auto", "pretrained") else None)
    note = ""
    if name == DIGIT_CLIP_NAME and key in ("auto", "pretrained"):
        (model, desc), trained = _load_digit_clip(), True
    elif key == "untrained":
        model, desc, trained = _create_untrained(name), "untrained", False
    elif key in ("auto", "pretrained"):
        try:
            model, desc, trained = load_pretrained(name, pretrained_tag), f"pretrained:{pretrained_tag}", True
        except ClipUnavailableError as e:
            if key == "pretrained":
                raise
            msg = (f"clip_weights=auto: pretrained weights for CLIP {name} / {pretrained_tag} are unavailable, so "
                   f"the semantic loss uses DIGIT-CLIP instead (not {name}): a small CLIP this project trains on "
                   f"handwritten digits and fonts (helpers.digit_clip; about two minutes on first use, then cached). "
                   f"Logs, figures and metrics.json name digit-clip. Reason: {e}")
            warnings.warn(msg, UserWarning, stacklevel=2)  # once: a warning, not also a log line
            from helpers.digit_clip import DigitClipCheckError

            try:
                (model, desc), trained = _load_digit_clip(), True
                note = f"stands in for {name} / {pretrained_tag}, whose pretrained weights are unavailable"
                name = DIGIT_CLIP_NAME
            except DigitClipCheckError as err:  # digit-CLIP failed its own check on this machine: say so, go on
                warnings.warn(f"clip_weights=auto: digit-CLIP failed its zero-shot check ({err}); falling back to an "
                              f"UNTRAINED {name}", UserWarning, stacklevel=2)
                model, desc, trained = _create_untrained(name), "untrained", False
    else:  # anything else is a checkpoint path
        model, trained = _load_checkpoint(name, weights)
        desc = f"checkpoint:{Path(weights).expanduser().resolve()}"
    if str(device) == "auto":  # as Config.device
        device = "cuda" if torch.cuda.is_available() else "cpu"
    clip = FrozenClip(model, name, desc, trained, note=note).to(device)
    if not clip.trained:  # a user must act on this: a warning, shown by default (helpers.log)
        warnings.warn(untrained_banner(clip), UntrainedClipWarning, stacklevel=2)
    return clip


# ----------------------------------------------------------------------------------------------
# Stimulus embeddings (the targets) and the loss


def _stimuli_hash(stimuli: torch.Tensor) -> str:
    return hashlib.sha1(stimuli.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()[:16]


def _check_stimuli(stimuli: torch.Tensor) -> None:
    if not isinstance(stimuli, torch.Tensor) or stimuli.ndim != 4 or stimuli.shape[1] != 3 or len(stimuli) < 1:
        shape = tuple(stimuli.shape) if isinstance(stimuli, torch.Tensor) else type(stimuli).__name__
        raise ValueError(f"stimuli must be a float tensor [n_classes, 3, H, W] in [-1, 1], got {shape}")
    lo, hi = float(stimuli.min()), float(stimuli.max())
    if lo < -1.0 - 1e-4 or hi > 1.0 + 1e-4:
        raise ValueError(f"stimuli must lie in [-1, 1] (as the generator's output does), got [{lo:.3g}, {hi:.3g}]; "
                         "map [0, 1] images with x * 2 - 1")


@dataclass
class StimulusEmbeddings:
    """CLIP embeddings of the stimulus images, one row per class (digit): ``embeddings`` [n_classes, D].

    Computed once without gradients (they are targets); ``model_name``, ``weights``, ``fingerprint``
    and ``stimuli_hash`` record what made them, so a cache from another CLIP or other images is refused.
    """
    embeddings: torch.Tensor
    model_name: str
    weights: str
    fingerprint: str = ""
    stimuli_hash: str = ""

    @classmethod
    def compute(cls, clip: FrozenClip, stimuli: torch.Tensor) -> "StimulusEmbeddings":
        """Encode ``stimuli`` ([n_classes, 3, H, W] in [-1, 1], row i = class i) with ``clip``."""
        _check_stimuli(stimuli)
        with torch.no_grad():  # targets only: the generated branch never goes through here
            emb = clip.encode_images(stimuli.to(clip.device))
        return cls(emb.detach(), clip.model_name, clip.weights, clip.fingerprint, _stimuli_hash(stimuli))

    @property
    def n_classes(self) -> int:
        return int(self.embeddings.shape[0])

    def to(self, device) -> "StimulusEmbeddings":
        return StimulusEmbeddings(self.embeddings.to(device), self.model_name, self.weights,
                                  self.fingerprint, self.stimuli_hash)

    def for_labels(self, labels) -> torch.Tensor:
        """Target embeddings [B, D] for class labels [B] (ints in 0..n_classes-1), on the embeddings' device."""
        labels = torch.as_tensor(labels, device=self.embeddings.device).long().reshape(-1)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.n_classes):
            raise ValueError(f"labels must be in 0..{self.n_classes - 1}, got {labels.min().item()}..{labels.max().item()}")
        return self.embeddings[labels]

    def save(self, path: str | Path) -> None:
        """Write the cache atomically (a crash never leaves half a file that looks valid)."""
        from .checkpoint import save_checkpoint

        save_checkpoint({"embeddings": self.embeddings.detach().cpu(), "model_name": self.model_name,
                         "weights": self.weights, "fingerprint": self.fingerprint,
                         "stimuli_hash": self.stimuli_hash}, path)

    @classmethod
    def load(cls, path: str | Path, clip: FrozenClip, stimuli: torch.Tensor | None = None) -> "StimulusEmbeddings":
        """Read a cache; StaleCacheError if it was made by another model/weights (or other ``stimuli``)."""
        try:
            d = torch.load(Path(path), map_location="cpu", weights_only=True)
            cached = cls(d["embeddings"], d["model_name"], d["weights"], d.get("fingerprint", ""),
                         d.get("stimuli_hash", ""))
        except FileNotFoundError:
            raise
        except Exception as e:
            raise StaleCacheError(f"stimulus-embedding cache {path} is unreadable: {e}") from e
        wanted = {"model_name": clip.model_name, "weights": clip.weights, "fingerprint": clip.fingerprint}
        if stimuli is not None:
            wanted["stimuli_hash"] = _stimuli_hash(stimuli)
        diff = [f"{k}: cache {getattr(cached, k)!r} vs now {v!r}" for k, v in wanted.items() if getattr(cached, k) != v]
        if diff:
            raise StaleCacheError(f"stimulus-embedding cache {path} was made differently ({'; '.join(diff)})")
        return cached.to(clip.device)


def stimulus_embeddings(clip: FrozenClip, stimuli: torch.Tensor,
                        cache_path: str | Path | None = None) -> StimulusEmbeddings:
    """The stimulus embeddings for ``clip``: from ``cache_path`` when it matches, else computed (and cached)."""
    if cache_path is not None and Path(cache_path).is_file():
        try:
            return StimulusEmbeddings.load(cache_path, clip, stimuli)
        except StaleCacheError as e:
            logger.info(f"recomputing stimulus embeddings: {e}")
    emb = StimulusEmbeddings.compute(clip, stimuli)
    if cache_path is not None:
        emb.save(cache_path)
    return emb


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every row of ``a`` [n, D] with every row of ``b`` [m, D]: [n, m]."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"cosine_matrix expects [n, D] and [m, D], got {tuple(a.shape)} and {tuple(b.shape)}")
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T


def random_views(images: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` random differentiable views of each image ``[B, C, H, W]`` in [-1, 1]: ``[k * B, C, H, W]``, view-major
    (row ``v * B + i`` is a view of image ``i``, so targets repeat with ``targets.repeat(k, 1)``).

    Each view is an affine warp (shift up to :data:`VIEW_SHIFT`, scale :data:`VIEW_SCALE`, rotation up to
    :data:`VIEW_ROTATION_DEG`) with white fill (+1) where the warp leaves the image, plus Gaussian pixel noise of
    std :data:`VIEW_NOISE`. Made with ``F.affine_grid``/``F.grid_sample``, so gradients reach every pixel. A CLIP
    loss averaged over such views cannot be lowered by a texture that works only at one position on CLIP's patch
    grid. Random numbers come from torch's global RNG (on the images' device), which the training loop seeds each
    epoch: runs are reproducible and a resume is exact. For training only: evaluation never uses views.
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"random_views needs k >= 1 views, got {k!r}")
    k = int(k)
    if images.ndim != 4:
        raise ValueError(f"random_views expects images [batch, C, H, W], got {tuple(images.shape)}")
    x = images.float().repeat(k, 1, 1, 1)
    n, dev = x.shape[0], x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, device=dev)

    scale = u(*VIEW_SCALE)
    angle = u(-VIEW_ROTATION_DEG, VIEW_ROTATION_DEG) * (torch.pi / 180.0)
    tx, ty = u(-VIEW_SHIFT, VIEW_SHIFT), u(-VIEW_SHIFT, VIEW_SHIFT)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale  # affine_grid maps output to input: 1 / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Sample (x - 1) with zero padding, then add 1 back: outside the image is +1, white paper.
    x = F.grid_sample(x - 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 1.0
    return x + VIEW_NOISE * torch.randn_like(x)


def semantic_loss(gen_emb: torch.Tensor, target_emb: torch.Tensor) -> torch.Tensor:
    """mean over the batch of 1 - cos(gen_emb[i], target_emb[i]): 0 when aligned, 1 orthogonal, 2 opposite."""
    if gen_emb.ndim != 2 or gen_emb.shape != target_emb.shape:
        raise ValueError(f"semantic_loss expects two [batch, D] tensors of one shape, got "
                         f"{tuple(gen_emb.shape)} and {tuple(target_emb.shape)}")
    return (1.0 - F.cosine_similarity(gen_emb.float(), target_emb.float(), dim=-1)).mean()
