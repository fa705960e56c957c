"""The combined-loss training loop: VAE encoder + generator against a discriminator and a frozen CLIP.

One step (docs/DESIGN.md#training):

1. discriminator on (stimulus images, generated.detach());
2. encoder + generator on ``adv * GAN + rec * L1 + kl * KL + clip * (1 - cos(CLIP(generated), CLIP(stimulus)))``
   (``+ cls * CE(label_head(mu), digit)`` when ``lambda_cls > 0``).

In the first ``adv_warmup_epochs`` epochs step 1 is skipped and the GAN term is left out (logged as NaN, like
a term of weight 0). The encoder has its own learning rate when ``encoder_learning_rate > 0``.

Why it is faster than the seed's step: the 10 stimulus embeddings are computed once (the seed re-encoded the
targets every step), and CLIP's weights are frozen with ``requires_grad_(False)`` so backward computes only
the gradient that flows to the generator, never CLIP's own weight gradients. Gradients still flow through
CLIP: there is no ``no_grad`` around the generated branch.

Repeatability: each epoch reseeds torch from (seed, epoch), so a run resumed from the checkpoint of epoch k
continues exactly as the uninterrupted run would have (CPU; tested with a SIGKILL mid-epoch).
"""
from __future__ import annotations

import math
import numbers
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from helpers import distributed
from helpers.checkpoint import CheckpointError, load_checkpoint_or_previous, save_checkpoint
from helpers.config import Config, clip_is_the_only_image_term
from helpers.device import configure_backends, resolve_device  # noqa: F401 (resolve_device re-exported)
from helpers.history import epoch_line, write_history
from helpers.log import logger, progress_enabled
from helpers.losses import discriminator_loss, generator_losses, kl_divergence, loss_weights
from helpers.models import build_models, reparameterise
from helpers.semantic import random_views

CHECKPOINT_NAME = "last.pt"
# The checkpoint before last.pt, kept at each save: if last.pt is later found damaged (a flipped byte, a cut
# copy), --resume falls back to it and says so instead of losing the run.
PREVIOUS_CHECKPOINT_NAME = "previous.pt"
# Per-epoch validation uses at most this many events for the CLIP-based numbers (CPU time).
VAL_MAX_EVENTS = 128


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is left untouched."""


def epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7919) % (2**31 - 1)


@dataclass
class TrainData:
    """Features and digit labels of one split, on the CPU."""
    x: torch.Tensor  # float32 [n, feature_dim]
    y: torch.Tensor  # int64 [n], 0..9

    @classmethod
    def from_numpy(cls, x: np.ndarray, y: np.ndarray) -> "TrainData":
        if len(x) != len(y):
            raise ValueError(f"features ({len(x)}) and labels ({len(y)}) differ in length")
        if len(y) and (np.min(y) < 0 or np.max(y) > 9):
            raise ValueError("labels must be digit codes 0..9 (drop code -1 events first)")
        return cls(torch.as_tensor(np.asarray(x, dtype=np.float32)), torch.as_tensor(np.asarray(y, dtype=np.int64)))

    def __len__(self) -> int:
        return len(self.y)


class _EncoderStep(torch.nn.Module):
    """The encoder and, when the label term is on, its label head in one forward: (mu, logvar, logits or None).
    One module, so that DistributedDataParallel sees every parameter the step uses in one forward pass."""

    def __init__(self, encoder: torch.nn.Module, with_head: bool):
        super().__init__()
        self.encoder, self.with_head = encoder, with_head

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encoder(x)
        if not self.with_head:
            return mu, logvar, None
        with torch.autocast(x.device.type, enabled=False):  # the head reads mu in float32, as the loss does
            return mu, logvar, self.encoder.label_head(mu.float())


@dataclass
class Trainer:
    """Owns the three networks, their optimisers and the history; CLIP and the stimuli are inputs."""
    config: Config
    stimuli: torch.Tensor  # [10, 3, image_size, image_size] in [-1, 1]: real images and L1 targets
    clip: torch.nn.Module  # FrozenClip: encode_images(images in [-1, 1], low_precision) -> L2-normalised embeddings
    stimulus_embeddings: torch.Tensor  # [10, D], computed once from the stimuli
    out_dir: Path | None = None
    history: list[dict] = field(default_factory=list)
    # What the networks were trained on (data, fitted features, CLIP weights): set by pipeline.build_trainer
    # and saved in the checkpoint, so a resume on other data or another CLIP is refused, not silently mixed.
    identity: dict = field(default_factory=dict)

    def __post_init__(self):
        c = self.config
        self.device = resolve_device(c.device)
        configure_backends(self.device)
        torch.manual_seed(c.seed)
        self.encoder, self.generator, self.discriminator = build_models(c)
        for m in (self.encoder, self.generator, self.discriminator):
            m.to(self.device)
        self.clip = self.clip.to(self.device)
        self.stimuli = self.stimuli.to(self.device, torch.float32)
        if self.stimuli.shape[-1] != c.image_size:
            raise ValueError(f"stimuli are {tuple(self.stimuli.shape[-2:])} but image_size is {c.image_size}")
        self.stimulus_embeddings = self.stimulus_embeddings.to(self.device, torch.float32).detach()
        betas = (c.adam_beta1, c.adam_beta2)
        self._check_schedule(c)
        if c.world_size > 1 and (c.batch_size % c.world_size or c.batch_size // c.world_size < 2):
            # Here, before the run's folder is written: each process trains on an equal slice of every batch.
            raise ValueError(f"batch_size={c.batch_size} must split into {c.world_size} equal slices of at least 2 "
                             f"events (one per process; BatchNorm needs two)")
        enc_lr = float(c.encoder_learning_rate)
        self.opt_g = torch.optim.Adam([{"params": list(self.encoder.parameters()), "lr": enc_lr or c.learning_rate},
                                       {"params": list(self.generator.parameters())}],
                                      lr=c.learning_rate, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=c.learning_rate, betas=betas)
        self.epoch = 0  # epochs completed
        self.step = 0  # optimiser steps completed
        self._encode = _EncoderStep(self.encoder, with_head=c.lambda_cls > 0)
        self._generate, self._discriminate = self.generator, self.discriminator
        self.world_size = 1  # becomes torchrun's number of processes when fit() wraps the networks
        # Mixed precision: bfloat16 autocast on CPU and on GPUs that have it (no loss scaling needed: bf16 has
        # float32's range); float16 with a gradient scaler on older GPUs. CLIP's pass on the generated images
        # runs in bfloat16 too (never float16: NaN gradients), its targets in float32; the networks' weights and
        # optimiser state stay float32.
        self.amp_dtype, self.scaler = None, None
        if c.mixed_precision:
            if self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
                self.amp_dtype, self.scaler = torch.float16, torch.amp.GradScaler("cuda")
            else:
                self.amp_dtype = torch.bfloat16
        if self.out_dir is not None:
            self.out_dir = Path(self.out_dir)

    def _distribute(self) -> None:
        """Under torchrun, make train_step call DistributedDataParallel wrappers of the networks (same parameters;
        checkpoints keep saving the unwrapped modules, so their format is unchanged). Done at the start of fit, by
        every process at the same point: wrapping is collective (rank 0's weights are broadcast to the others)."""
        world = distributed.world_size()
        if world == 1 or self.world_size == world:
            return
        c = self.config
        self.world_size = world
        from torch.nn.parallel import DistributedDataParallel as DDP

        if c.lambda_cls <= 0:  # the label head is then never used: DDP must not wait for its gradients
            self.encoder.label_head.requires_grad_(False)
        ids = [torch.cuda.current_device()] if self.device.type == "cuda" else None  # cuda:LOCAL_RANK
        self._encode = DDP(self._encode, device_ids=ids)
        self._generate = DDP(self.generator, device_ids=ids)
        self._discriminate = DDP(self.discriminator, device_ids=ids)

    @staticmethod
    def _check_schedule(c: Config) -> None:
        """Clear errors for the warm-up and the encoder's learning rate, before any step is taken."""
        warmup, enc_lr = c.adv_warmup_epochs, c.encoder_learning_rate
        if isinstance(warmup, bool) or not isinstance(warmup, numbers.Integral) or warmup < 0:
            raise ValueError(f"adv_warmup_epochs must be an int >= 0, got {warmup!r}")
        if isinstance(enc_lr, bool) or not isinstance(enc_lr, numbers.Real) or not math.isfinite(enc_lr) or enc_lr < 0:
            raise ValueError(f"encoder_learning_rate must be a finite number >= 0 (0 = learning_rate), got {enc_lr!r}")
        if warmup > 0 and c.lambda_adv > 0 and not any(v > 0 for n, v in loss_weights(c).items() if n != "lambda_adv"):
            raise ValueError(f"adv_warmup_epochs={warmup} turns the adversarial term off for the first epochs, and "
                             f"every other loss weight is 0: nothing would train then. Set adv_warmup_epochs=0 "
                             f"or give another term a weight.")
        views = c.clip_views
        if isinstance(views, bool) or not isinstance(views, numbers.Integral) or views < 0:
            raise ValueError(f"clip_views must be an int >= 0 (0 or 1 = the plain CLIP loss), got {views!r}")
        if 0 < c.clip_batch < c.batch_size and clip_is_the_only_image_term(c):
            warnings.warn(f"clip_batch={c.clip_batch} with CLIP as the only image term: the other "
                          f"{c.batch_size - c.clip_batch} samples of each batch get no image gradient at all (measured: "
                          f"judge top-1 at chance). Set clip_batch=0 (docs/DESIGN.md#clip-alone-what-limits-it-measured).",
                          stacklevel=4)
        if warmup > 0 and c.lambda_adv > 0 and warmup >= c.epochs:
            warnings.warn(f"adv_warmup_epochs={warmup} >= epochs={c.epochs}: the adversarial term (lambda_adv="
                          f"{c.lambda_adv:g}) is never switched on in this run.", stacklevel=4)

    # ----------------------------------------------------------------------------------------- steps
    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        c = self.config
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        real = self.stimuli[y]
        with self._autocast():
            mu, logvar, logits = self._encode(x)
            fake = self._generate(reparameterise(mu, logvar))
        fake = fake.float()

        # Phase 1: discriminator on real stimuli vs generated.detach(), except in the warm-up epochs, when
        # the adversarial term is off (weights below), and when lambda_adv is 0: the discriminator is then
        # left alone (no forward, backward or optimiser step).
        adversarial = self.epoch >= c.adv_warmup_epochs and c.lambda_adv > 0
        weights = loss_weights(c)
        d_loss_value = float("nan")
        if adversarial:
            self.opt_d.zero_grad(set_to_none=True)
            with self._autocast():
                d_loss = discriminator_loss(self._discriminate(real), self._discriminate(fake.detach()))
            self._check_finite({"disc": d_loss})
            self._backward_step(d_loss, self.opt_d)
            d_loss_value = float(d_loss.detach())
        else:
            weights["lambda_adv"] = 0.0

        # Phase 2: encoder + generator on the combined loss; CLIP only on the generated branch, against
        # the cached stimulus embeddings. clip_batch > 0 sends only the first clip_batch samples of the
        # (randomly shuffled) batch through CLIP: an unbiased estimate of the batch's semantic loss, though only
        # those images get a CLIP gradient this step. clip_views > 1: the term is the mean over that many random
        # views of each of them (helpers.semantic.random_views; training only, never in validate/generate).
        self.opt_g.zero_grad(set_to_none=True)
        d_fake = None
        if adversarial:
            with self._autocast():
                d_fake = self._discriminate(fake).float()
        gen_emb = target_emb = None
        if c.lambda_clip > 0:
            # Under torchrun each process holds a slice of the batch: clip_batch is shared out between them.
            per_rank = math.ceil(c.clip_batch / self.world_size) if c.clip_batch > 0 else 0
            k = per_rank if 0 < per_rank < len(y) else len(y)
            images, target_emb = fake[:k], self.stimulus_embeddings[y[:k]]
            if c.clip_views > 1:
                images, target_emb = random_views(images, c.clip_views), target_emb.repeat(c.clip_views, 1)
            gen_emb = self.clip.encode_images(images, low_precision=self.amp_dtype is torch.bfloat16)
        total, terms = generator_losses(d_fake, fake, real, mu.float(), logvar.float(), gen_emb,
                                        target_emb, weights, class_logits=logits, labels=y)
        # A term left out (weight 0) is logged as NaN on purpose; only the weighted ones must be finite.
        self._check_finite({k: v for k, v in terms.items() if k == "total" or weights[f"lambda_{k}"] > 0})
        self._backward_step(total, self.opt_g)
        if self.scaler is not None:
            self.scaler.update()
        self.step += 1
        return {**terms, "disc": d_loss_value}

    def _backward_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            loss.backward()
            opt.step()
        else:  # float16: scale the loss so small gradients survive; skipped (and the scale lowered) on overflow
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)

    def _check_finite(self, terms: dict) -> None:
        for name, value in terms.items():
            v = float(value.detach()) if torch.is_tensor(value) else float(value)
            if not math.isfinite(v):
                raise TrainingDivergedError(
                    f"loss term '{name}' became {v} at epoch {self.epoch + 1}, step {self.step + 1}; training "
                    f"stopped. The last good checkpoint (epoch {self.epoch}) is intact. Lower learning_rate or the "
                    f"lambda of that term, then --resume.")

    # ----------------------------------------------------------------------------------------- epochs
    def train_epoch(self, data: TrainData, progress: bool = False) -> dict[str, float]:
        c = self.config
        torch.manual_seed(epoch_seed(c.seed, self.epoch))
        order = torch.randperm(len(data))
        batches = [order[i:i + c.batch_size] for i in range(0, len(order), c.batch_size)]
        if len(batches) > 1 and len(batches[-1]) < 2:  # BatchNorm needs two samples
            batches = batches[:-1]
        if self.world_size > 1:  # every process drew the same batches: each trains on its slice of every one
            rank, w = distributed.rank(), self.world_size
            batches = [b[rank::w] for b in batches if len(b) >= 2 * w]
        for m in (self.encoder, self.generator, self.discriminator):
            m.train()
        sums: dict[str, float] = {}
        n_seen = 0
        bar = _progress(batches, progress, desc=f"epoch {self.epoch + 1}/{c.epochs}")
        for idx in bar:
            terms = self.train_step(data.x[idx], data.y[idx])
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
            n_seen += len(idx)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(total=f"{terms['total']:.3f}", clip=f"{terms['clip']:.3f}")
        if self.world_size > 1:  # the epoch's means over every process's events
            keys = sorted(sums)
            *totals, n_seen = distributed.all_reduce_sum([sums[k] for k in keys] + [float(n_seen)])
            sums = dict(zip(keys, totals))
        return {f"train_{k}": v / max(n_seen, 1) for k, v in sums.items()}

    @torch.no_grad()
    def generate(self, x: torch.Tensor | np.ndarray, sample: bool = False, batch_size: int = 64) -> torch.Tensor:
        """Images for features x ([n, feature_dim]); the latent mean unless sample=True. Returns CPU [n,3,S,S]."""
        x = _as_features(x)
        self.encoder.eval()
        self.generator.eval()
        out = []
        for i in range(0, len(x), batch_size):
            mu, logvar = self.encoder(x[i:i + batch_size].to(self.device))
            z = reparameterise(mu, logvar) if sample else mu
            out.append(self.generator(z).float().cpu())
        return torch.cat(out) if out else torch.empty(0, 3, self.config.image_size, self.config.image_size)

    @torch.no_grad()
    def latents(self, x: torch.Tensor | np.ndarray, batch_size: int = 256) -> torch.Tensor:
        x = _as_features(x)
        self.encoder.eval()
        return torch.cat([self.encoder(x[i:i + batch_size].to(self.device))[0].cpu()
                          for i in range(0, len(x), batch_size)])

    @torch.no_grad()
    def validate(self, data: TrainData) -> dict[str, float]:
        """Reconstruction, KL and semantic loss, semantic top-1 (and the label head's top-1 when lambda_cls > 0)
        on (at most VAL_MAX_EVENTS) validation events."""
        if len(data) == 0:
            return {}
        n = min(len(data), VAL_MAX_EVENTS)
        x, y = data.x[:n], data.y[:n].to(self.device)
        self.encoder.eval()
        self.generator.eval()
        mu, logvar = self.encoder(x.to(self.device))
        images = self.generator(mu).float()  # the latent mean, as generate() and the evaluation use
        cos = self.clip.encode_images(images) @ self.stimulus_embeddings.T
        row = {
            "val_rec": float((images - self.stimuli[y]).abs().mean()),
            "val_kl": float(kl_divergence(mu, logvar)),
            "val_clip": float((1 - cos[torch.arange(n), y]).mean()),
            "val_semantic_top1": float((cos.argmax(dim=1) == y).float().mean()),
        }
        if self.config.lambda_cls > 0:  # what the encoder itself decodes; an untrained head would mean nothing
            row["val_label_head_top1"] = float((self.encoder.label_head(mu).argmax(dim=1) == y).float().mean())
        return row

    def fit(self, train: TrainData, val: TrainData | None = None, epochs: int | None = None,
            progress: bool | None = None, on_epoch_end: Callable[["Trainer", dict], None] | None = None) -> list[dict]:
        """Train until `epochs` epochs are complete in total (resumed epochs count), checkpointing each one."""
        epochs = self.config.epochs if epochs is None else epochs
        progress = (progress_enabled() if progress is None else progress) and distributed.is_main()
        if len(train) < 2:
            raise ValueError(f"need at least 2 training events, got {len(train)}")
        self._distribute()
        while self.epoch < epochs:
            t0 = time.perf_counter()
            row = {"epoch": self.epoch + 1, **self.train_epoch(train, progress=progress)}
            if val is not None and distributed.is_main():  # validation and files: rank 0 alone
                row.update(self.validate(val))
            self.epoch += 1
            row["seconds"] = round(time.perf_counter() - t0, 3)
            self.history.append(row)
            if self.out_dir is not None and distributed.is_main():
                self.save(self.out_dir)
            if distributed.is_main():
                logger.info(epoch_line(row, epochs))
            if on_epoch_end is not None:
                on_epoch_end(self, row)
        return self.history

    # ----------------------------------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        return {
            "format": "eeg2img-trainer-v1",
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "identity": self.identity,
            "encoder": self.encoder.state_dict(),
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != "eeg2img-trainer-v1":
            raise CheckpointError("not a trainer checkpoint of this project (format tag missing)")
        try:
            saved = Config.from_dict(state["config"])
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"cannot resume: the checkpoint's configuration is of another version ({e})") from None
        # Everything that shapes the result must match; only how long and where to run may differ.
        free = {"epochs", "device", "num_workers", "profile", "mixed_precision", "world_size", "reference_epochs"}
        mismatched = {k: (v, getattr(self.config, k)) for k, v in saved.to_dict().items()
                      if k not in free and v != self.config.to_dict()[k]}
        mismatched.update({f"identity.{k}": (v, self.identity[k]) for k, v in state.get("identity", {}).items()
                           if k in self.identity and v != self.identity[k]})
        if mismatched:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in mismatched.items())
            raise CheckpointError(f"cannot resume: the checkpoint was made with another configuration, other data "
                                  f"or another CLIP ({detail}). Use another --out, or the same settings.")
        try:
            self.encoder.load_state_dict(state["encoder"])
            self.generator.load_state_dict(state["generator"])
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
        except (RuntimeError, KeyError, ValueError) as e:  # another version of the networks
            raise CheckpointError(f"cannot resume: the checkpoint's networks do not match this version of the "
                                  f"models ({str(e).splitlines()[0]}). Use another --out or delete it.") from None
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(state["history"])

    def save(self, out_dir: str | Path) -> Path:
        """``models/last.pt`` (atomic, checksummed); the one it replaces becomes ``models/previous.pt``."""
        models = Path(out_dir) / "models"
        path = save_checkpoint(self.state_dict(), models / CHECKPOINT_NAME,
                               previous=models / PREVIOUS_CHECKPOINT_NAME)
        write_history(self.history, out_dir)
        return path

    def resume_from(self, out_dir: str | Path, log: Callable[[str], None] | None = None) -> bool:
        """Load ``out_dir/models/last.pt`` if there is one; returns whether it did.

        A damaged ``last.pt`` (checksum, truncation) falls back to ``previous.pt``, said through ``log`` (a
        warning when None). Neither good, or one of another configuration/data/CLIP: CheckpointError, and
        nothing on disk is changed.
        """
        models = Path(out_dir) / "models"
        path, previous = models / CHECKPOINT_NAME, models / PREVIOUS_CHECKPOINT_NAME
        if not path.exists() and not previous.exists():
            return False
        state, _ = load_checkpoint_or_previous(path, previous, map_location=self.device, log=log)
        self.load_state_dict(state)
        return True


def _as_features(x) -> torch.Tensor:
    return x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x, dtype=np.float32))


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)
