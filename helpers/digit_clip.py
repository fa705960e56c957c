"""digit-CLIP: a small CLIP that this project trains itself, so that the semantic loss knows the ten digits.

Without a model hub every run used to fall back to an *untrained* CLIP, whose embeddings of the ten stimuli
have cosine ~0.996 to each other: the semantic loss carried no digit. digit-CLIP is open_clip's own ``CLIP``
(the eeg2img-tiny architecture: 64 px input, 16 px patches, 2 layers; open_clip's tokenizer) trained
contrastively on digit images and captions ("a photo of the digit seven", "a handwritten 7", ...). Its images
are never the stimuli nor the judge's: scikit-learn's ``load_digits`` handwriting (8 x 8, upsampled, black on
white; the last :data:`N_HELDOUT_HANDWRITTEN` held out) and the matplotlib fonts that neither the judge
(train or held-out fonts) nor the stimuli use (:data:`HELDOUT_FONT` held out), augmented every step.

Unlike the judge (helpers.judge: a CNN classifier trained with cross-entropy on 14 matplotlib fonts),
digit-CLIP is a vision + text transformer trained to match images with captions, on handwriting and 4 other
fonts. Its loss (:func:`digit_contrastive_loss`) counts every same-digit (image, caption) pair as a positive:
a batch of 128 holds ~13 images of each digit, and plain CLIP loss would push them apart. Each step contrasts
the images with all 130 captions (13 templates x 10 digits).

Training is seeded, single-threaded inside ``torch.random.fork_rng`` (global torch state is restored), shows a
tqdm bar and ends with checks: zero-shot accuracy from the text prompts on the ten stimuli (10/10 required by
the full recipe, else :class:`DigitClipCheckError`), on held-out handwriting and the held-out font, and the
stimuli's 10 x 10 image-embedding cosine matrix before and after. :func:`load_or_train` trains the next seed when
a network fails that check (up to :data:`SEED_ATTEMPTS`; at worst three trainings) and caches the weights under
``dataset_dir()/cache`` (``save_checkpoint``) with a JSON record of the recipe (and its version), the seed used,
the file's SHA-256 and the checks; another recipe or version, or a file that fails its checksum, is retrained.

Full recipe: ~100 s on one free core (115 CPU-s; 164 s wall on 2 cores shared with other jobs); 10/10 stimuli,
held-out handwriting 0.96, held-out font 1.0 as drawn (0.80 augmented); mean off-diagonal stimulus cosine
0.996 (untrained) -> 0.05. Byte-identical weights when retrained on the same machine (seed 0 passes here;
seed 1 names 9/10 stimuli at 64 px).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, write_text_atomic
from .digit_images import (HELDOUT_FONT, N_HELDOUT_HANDWRITTEN, SIZE, TRAIN_FONTS, augment,  # noqa: F401 (re-exported)
                           font_ink, handwritten_ink, stroke_variants)
from .stimuli import N_DIGITS
from helpers.log import logger

DIGIT_CLIP_NAME = "digit-clip"  # the clip_model contract value
# Bump when the architecture, data, augmentation, captions or training change: caches of another version retrain.
RECIPE_VERSION = 1
DIGIT_CLIP_CONFIG = {  # = eeg2img-tiny (helpers.semantic.TINY_CLIP_CONFIG), under its own name
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 96, "layers": 2, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEMPLATES = (
    "a photo of the digit {word}", "a photo of the number {n}", "the digit {n}", "the number {word}",
    "a handwritten {n}", "a handwritten digit {word}", "a printed {n}", "an image of the numeral {n}",
    "a black {n} on a white background", "the digit {word} written in ink", "a drawing of a {word}",
    "{n}", "{word}",
)


SEED_ATTEMPTS = 3  # seeds tried in turn until one passes the stimulus check (see _train_first_seed_that_passes)


class DigitClipCheckError(RuntimeError):
    """digit-CLIP failed its zero-shot check on the stimuli after training; ``checks`` holds the counts."""

    def __init__(self, message: str, checks: dict | None = None):
        super().__init__(message)
        self.checks = dict(checks or {})


@dataclass(frozen=True)
class Recipe:
    """What :func:`train` does. ``full`` is the one runs use; ``small`` trains in seconds for tests."""
    name: str = "full"
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3  # peak of a one-cycle schedule; 4e-3 collapsed to a constant embedding
    weight_decay: float = 0.05
    seed: int = 0
    # Geometric augmentation strength (see augment). 1.0 learned slowly (400 steps: 8/10 stimuli, handwriting
    # 0.49); 0.5 and 0.75 both gave 10/10 after 1000 steps (handwriting 0.98 and 0.96); 0.75 is kept because
    # the generator's training views (helpers.semantic.random_views) shift and rotate about that much.
    augment: float = 0.75
    threads: int = 1  # fixed, so that a rerun on the same machine gives the same weights
    min_stimuli_correct: int = 10  # out of 10, at both 64 px and 32 px (the ci generator's size, upsampled)

    def to_dict(self) -> dict:
        return {"version": RECIPE_VERSION, **dataclasses.asdict(self)}


FULL_RECIPE = Recipe()
SMALL_RECIPE = Recipe(name="small", steps=150, batch_size=32, augment=0.25, min_stimuli_correct=0)  # tests: ~10 s


# ----------------------------------------------------------------------------------------------- model

def create_model(seed: int = 0) -> nn.Module:
    """The digit-CLIP architecture with seeded random weights (global RNG untouched)."""
    from helpers.clip_registry import register_model_config

    register_model_config(DIGIT_CLIP_NAME, DIGIT_CLIP_CONFIG)
    # open_clip logs "No pretrained weights loaded ... initialized randomly" here; our weights follow at once
    # (or training does), so that line would only mislead the reader of a log.
    quiet = _DropMessage("No pretrained weights loaded")
    logging.getLogger().addFilter(quiet)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return open_clip.create_model(DIGIT_CLIP_NAME, pretrained=None)
    finally:
        logging.getLogger().removeFilter(quiet)


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def tokenize_templates() -> torch.Tensor:
    """Token ids ``[len(TEMPLATES), 10, context_length]`` of every caption (template x digit)."""
    tok = open_clip.SimpleTokenizer(context_length=DIGIT_CLIP_CONFIG["text_cfg"]["context_length"])
    return torch.stack([tok([t.format(n=d, word=WORDS[d]) for d in range(N_DIGITS)]) for t in TEMPLATES])


def class_text_embeddings(model: nn.Module, tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Zero-shot classifier ``[10, D]``: per digit, the normalised mean of its captions' normalised embeddings."""
    tokens = tokenize_templates() if tokens is None else tokens
    with torch.no_grad():
        emb = F.normalize(model.encode_text(tokens.reshape(-1, tokens.shape[-1])).float(), dim=-1)
    return F.normalize(emb.reshape(*tokens.shape[:2], -1).mean(0), dim=-1)


def digit_contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, image_labels: torch.Tensor,
                           text_labels: torch.Tensor | None = None,
                           logit_scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """CLIP's symmetric contrastive loss in which every same-digit (image, caption) pair is a positive.

    ``image_emb`` ``[B, D]`` and ``text_emb`` ``[T, D]`` are L2-normalised, ``image_labels`` ``[B]`` and
    ``text_labels`` ``[T]`` their digits (``None``: the captions are paired with the images, T = B). Logits
    ``s * image_emb @ text_emb.T``; the target of image i is the uniform distribution over the captions of its
    digit, and that of caption j the uniform distribution over the images of its digit (a caption whose digit
    is not in the batch is left out). The loss is KL(target || softmax) averaged over the rows, and over the two
    directions: 0 exactly when every image gives all captions of its digit equal probability and none to other
    digits' (and vice versa). With all labels distinct it is plain CLIP loss minus nothing (the targets are
    one-hot, so KL = cross-entropy).
    """
    text_labels = image_labels if text_labels is None else text_labels
    positives = image_labels[:, None] == text_labels[None, :]  # [B, T]
    logits = logit_scale * image_emb @ text_emb.T

    def kl(lg: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        keep = pos.any(1)
        target = pos[keep].float() / pos[keep].sum(1, keepdim=True)
        return (target * (torch.log(target.clamp_min(1e-12)) - F.log_softmax(lg[keep], dim=1))).sum(1).mean()

    return 0.5 * (kl(logits, positives) + kl(logits.T, positives.T))


def _normaliser(model: nn.Module):
    pp = open_clip.get_model_preprocess_cfg(model)
    mean, std = (torch.tensor(pp[k], dtype=torch.float32).view(1, 3, 1, 1) for k in ("mean", "std"))
    return lambda images: ((images + 1.0) * 0.5 - mean) / std  # [-1, 1] -> CLIP input, as FrozenClip does


# ----------------------------------------------------------------------------------------------- checks

def _embed(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """L2-normalised image embeddings of [-1, 1] images, resized to 64 px as FrozenClip does."""
    if images.shape[-1] != SIZE:
        images = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False,
                               antialias=images.shape[-1] > SIZE)
    with torch.no_grad():
        return F.normalize(model.encode_image(_normaliser(model)(images)).float(), dim=-1)


def evaluate(model: nn.Module, tokens: torch.Tensor | None = None) -> dict:
    """Zero-shot accuracies (stimuli at 64 and 32 px, held-out handwriting, the held-out font as drawn and in
    200 fixed draws at augmentation strength 0.5) and the stimuli's image-embedding cosine matrix (64 px)."""
    from .stimuli import render_digits, to_tensor

    model.eval()
    text = class_text_embeddings(model, tokens)
    # The rendered stimuli, never a user's dataset/stimuli folder: the check is whether digit-CLIP knows the digits,
    # and its result (and the cache) must not depend on which images a user chose to show.
    raw = render_digits(size=224)
    stim64, stim32 = to_tensor(raw, size=SIZE), to_tensor(raw, size=32)
    hw, hw_y = handwritten_ink()
    hw, hw_y = 1.0 - 2.0 * hw[-N_HELDOUT_HANDWRITTEN:], hw_y[-N_HELDOUT_HANDWRITTEN:]
    font, font_y = font_ink((HELDOUT_FONT,))
    font_aug = augment(stroke_variants(font).repeat(20, 1, 1, 1), torch.Generator().manual_seed(12345), 0.5)

    def acc(images, labels):
        return float(((_embed(model, images) @ text.T).argmax(1) == labels).float().mean())

    e = _embed(model, stim64)
    cos = e @ e.T
    off = cos[~torch.eye(10, dtype=torch.bool)]
    digits = torch.arange(10)
    return {
        "stimuli_correct_64px": int(round(10 * acc(stim64, digits))),
        "stimuli_correct_32px": int(round(10 * acc(stim32, digits))),
        "heldout_handwritten_accuracy": acc(hw.expand(-1, 3, -1, -1), hw_y),
        "heldout_font_accuracy": acc(1.0 - 2.0 * font.expand(-1, 3, -1, -1), font_y),
        "heldout_font_augmented_accuracy": acc(font_aug, font_y.repeat(20)),
        "stimuli_cosine": [[round(float(v), 5) for v in row] for row in cos],
        "stimuli_cosine_offdiag_mean": float(off.mean()), "stimuli_cosine_offdiag_max": float(off.max()),
    }


# ----------------------------------------------------------------------------------------------- training

def train(recipe: Recipe = FULL_RECIPE, progress: bool | None = None) -> tuple[nn.Module, dict]:
    """Train digit-CLIP from scratch with ``recipe`` and check it; returns ``(model, metadata)``.

    Raises :class:`DigitClipCheckError` when fewer than ``recipe.min_stimuli_correct`` of the ten stimuli are
    recognised zero-shot. Global torch RNG and thread count are restored afterwards.
    """
    from tqdm.auto import tqdm

    if progress is None:  # bars for people, not for CI or a log file (helpers.log)
        from helpers.log import progress_enabled

        progress = progress_enabled()
    t0, c0, prev_threads = time.perf_counter(), time.process_time(), torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        tokens = tokenize_templates()
        hw, hw_y = handwritten_ink()
        hw, hw_y = stroke_variants(hw[:-N_HELDOUT_HANDWRITTEN]), hw_y[:-N_HELDOUT_HANDWRITTEN]
        fonts, fonts_y = font_ink(TRAIN_FONTS)
        fonts = stroke_variants(fonts)
        model = create_model(recipe.seed)
        before = evaluate(model, tokens)
        # The token embedding (49408 x 32) keeps its seeded random values: a fixed random code per token that the
        # text transformer learns to read. Training it cost a fifth of each step for ~50 distinct tokens.
        model.token_embedding.requires_grad_(False)
        all_captions, caption_digits = tokens.reshape(-1, tokens.shape[-1]), torch.arange(10).repeat(len(TEMPLATES))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            gen = torch.Generator().manual_seed(recipe.seed)
            decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
            rest = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
            opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                     {"params": rest, "weight_decay": 0.0}], lr=recipe.lr)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.steps,
                                                        pct_start=0.1)
            normalise, half = _normaliser(model), recipe.batch_size // 2
            bar = tqdm(range(recipe.steps), desc="training digit-CLIP", disable=not progress, leave=False)
            model.train()
            train_acc = 0.1  # running mean of the zero-shot accuracy on the training batches
            for _ in bar:
                # Half handwriting, half fonts, contrasted with all 130 captions (13 templates x 10 digits).
                i = torch.randint(0, len(hw), (half,), generator=gen)
                j = torch.randint(0, len(fonts), (recipe.batch_size - half,), generator=gen)
                ink, labels = torch.cat([hw[i], fonts[j]]), torch.cat([hw_y[i], fonts_y[j]])
                img_emb, txt_emb, scale = model(normalise(augment(ink, gen, recipe.augment)), all_captions)[:3]
                loss = digit_contrastive_loss(img_emb, txt_emb, labels, caption_digits, scale)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, math.log(100))
                    text = F.normalize(txt_emb.reshape(len(TEMPLATES), 10, -1).mean(0), dim=-1)
                    hits = (img_emb @ text.T).argmax(1) == labels
                    train_acc = 0.95 * train_acc + 0.05 * float(hits.float().mean())
                bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{train_acc:.2f}")
        model.eval()
        train_seconds = time.perf_counter() - t0
        after = evaluate(model, tokens)
    finally:
        torch.set_num_threads(prev_threads)
    meta = {
        "recipe": recipe.to_dict(), "architecture": DIGIT_CLIP_CONFIG, "train_fonts": list(TRAIN_FONTS),
        "heldout_font": HELDOUT_FONT, "templates": list(TEMPLATES),
        "n_handwritten_train": int(len(hw)), "n_handwritten_heldout": N_HELDOUT_HANDWRITTEN,
        "train_seconds": round(train_seconds, 2), "seconds_with_checks": round(time.perf_counter() - t0, 2),
        "cpu_seconds": round(time.process_time() - c0, 2), "torch_threads": recipe.threads,
        "torch_version": torch.__version__, "final_loss": float(loss.item()),
        "final_train_accuracy": round(train_acc, 4),
        "logit_scale": float(model.logit_scale.detach().exp()), "untrained": before, **after,
    }
    worst = min(after["stimuli_correct_64px"], after["stimuli_correct_32px"])
    if worst < recipe.min_stimuli_correct:
        raise DigitClipCheckError(
            f"digit-CLIP (recipe {recipe.name}, v{RECIPE_VERSION}) recognises only {after['stimuli_correct_64px']}/10 "
            f"stimuli at 64 px and {after['stimuli_correct_32px']}/10 at 32 px zero-shot (needs "
            f"{recipe.min_stimuli_correct}/10); its semantic loss would mislead the generator. Held-out handwriting: "
            f"{after['heldout_handwritten_accuracy']:.3f}. Nothing was cached. Use clip_weights=untrained or a "
            f"checkpoint, and report this (torch {torch.__version__}).",
            {k: after[k] for k in ("stimuli_correct_64px", "stimuli_correct_32px", "heldout_handwritten_accuracy")})
    return model, meta


# ----------------------------------------------------------------------------------------------- cache

@dataclass
class DigitClip:
    """Trained digit-CLIP weights with their record: ``weights`` is the description ``digit-clip:v1:<sha12>``."""
    model: nn.Module
    metadata: dict
    sha256: str
    path: Path

    @property
    def weights(self) -> str:
        name = self.metadata["recipe"]["name"]
        return f"{DIGIT_CLIP_NAME}:v{RECIPE_VERSION}{'' if name == 'full' else '-' + name}:{self.sha256[:12]}"


def default_cache_dir() -> Path:
    """``$EEG2IMG_CACHE_DIR`` if set (tests point every process at one cache), else ``dataset_dir()/cache``."""
    from .config import dataset_dir

    return Path(os.environ["EEG2IMG_CACHE_DIR"]) if os.environ.get("EEG2IMG_CACHE_DIR") else dataset_dir() / "cache"


def cache_paths(recipe: Recipe = FULL_RECIPE, cache_dir: str | Path | None = None) -> tuple[Path, Path]:
    """(weights file, JSON record) of ``recipe`` in ``cache_dir``."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    stem = f"digit_clip_{recipe.name}_seed{recipe.seed}"
    return folder / f"{stem}.pt", folder / f"{stem}.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load_cached(recipe: Recipe, pt: Path, record: Path) -> DigitClip:
    """The cached model; ValueError saying why when it cannot be used as is."""
    try:
        rec = json.loads(record.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"its record {record.name} is missing or unreadable ({type(e).__name__})") from None
    if rec.get("recipe") != recipe.to_dict():
        raise ValueError(f"it was made by recipe {rec.get('recipe')}, now {recipe.to_dict()}")
    sha = _sha256(pt)
    if sha != rec.get("sha256"):
        raise ValueError(f"the file is damaged (SHA-256 {sha[:12]}..., recorded {str(rec.get('sha256'))[:12]}...)")
    try:
        state = load_checkpoint(pt)
        model = create_model(recipe.seed)
        model.load_state_dict(state["state_dict"])
    except (CheckpointError, KeyError, RuntimeError) as e:
        raise ValueError(f"it does not load ({str(e).splitlines()[0]})") from None
    return DigitClip(model.eval(), rec["metadata"], sha, pt)


def _train_first_seed_that_passes(recipe: Recipe, progress: bool | None) -> tuple[nn.Module, dict]:
    """Train ``recipe``; if the model fails the stimulus check, train again with the next seed, up to
    :data:`SEED_ATTEMPTS` seeds. Why: training is deterministic on one machine, but another CPU or BLAS build
    rounds differently and, over 1,000 steps, ends at what is in effect another draw of the network. Seed 0 names
    the ten stimuli here, seed 1 names 9/10 at 64 px: one draw is not a guarantee. The metadata keeps the requested
    recipe, the seed used and each failed seed's check."""
    failed, last = [], None
    for k in range(SEED_ATTEMPTS):
        attempt = dataclasses.replace(recipe, seed=recipe.seed + k)
        try:
            model, meta = train(attempt, progress=progress)
        except DigitClipCheckError as e:
            failed.append({"seed": attempt.seed, **e.checks})
            last = e
            if k + 1 < SEED_ATTEMPTS:  # a user waits another training for this: say so
                logger.warning(f"digit-CLIP seed {attempt.seed} named {e.checks['stimuli_correct_64px']}/10 stimuli at 64 "
                               f"px and {e.checks['stimuli_correct_32px']}/10 at 32 px (needs "
                               f"{recipe.min_stimuli_correct}/10); training again with seed {attempt.seed + 1} "
                               f"(attempt {k + 2} of {SEED_ATTEMPTS})")
            continue
        return model, {**meta, "recipe": recipe.to_dict(), "seed_used": attempt.seed, "seeds_failed": failed}
    tried = ", ".join(f"seed {f['seed']}: {f['stimuli_correct_64px']}/10 and {f['stimuli_correct_32px']}/10" for f in failed)
    raise DigitClipCheckError(f"no seed passed ({tried} at 64 / 32 px); the last: {last}", last.checks)


def load_or_train(recipe: Recipe = FULL_RECIPE, cache_dir: str | Path | None = None, retrain: bool = False,
                  progress: bool | None = None) -> DigitClip:
    """The cached digit-CLIP of ``recipe``, trained (about two minutes for the full recipe) and cached if
    absent, of another recipe version, or damaged (with a warning saying which). A network that fails the
    stimulus check is replaced by the next seed's (up to :data:`SEED_ATTEMPTS`); DigitClipCheckError when none
    passes, and nothing is cached."""
    pt, record = cache_paths(recipe, cache_dir)
    if pt.exists() and not retrain:
        try:
            return _load_cached(recipe, pt, record)
        except ValueError as e:
            warnings.warn(f"digit-CLIP cache {pt} is not used: {e}. Retraining.", UserWarning, stacklevel=2)
    logger.info(f"training digit-CLIP (recipe {recipe.name}, v{RECIPE_VERSION}, {recipe.steps} steps); cached in {pt}")
    model, meta = _train_first_seed_that_passes(recipe, progress)
    save_checkpoint({"state_dict": model.state_dict(), "recipe": recipe.to_dict()}, pt)
    sha = _sha256(pt)
    write_text_atomic(record, json.dumps({"recipe": recipe.to_dict(), "sha256": sha, "metadata": meta}, indent=1))
    logger.info(f"digit-CLIP: {meta['train_seconds']:.0f} s training; zero-shot {meta['stimuli_correct_64px']}/10 stimuli, "
          f"held-out handwriting {meta['heldout_handwritten_accuracy']:.3f}, held-out font "
          f"{meta['heldout_font_augmented_accuracy']:.3f}; stimulus cosine off-diagonal mean "
          f"{meta['untrained']['stimuli_cosine_offdiag_mean']:.3f} untrained -> "
          f"{meta['stimuli_cosine_offdiag_mean']:.3f}")
    return DigitClip(model, meta, sha, pt)
