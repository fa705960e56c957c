"""The whole pipeline in stages that notebooks and ``python -m helpers run`` share.

file -> events -> digit events -> contiguous-block split -> features (fitted on train) -> linear baseline
     -> frozen CLIP + stimulus embeddings -> trainer (resumable) -> evaluation -> figures + metrics.json

Each stage is a function returning a plain object, so notebook 02 can stop after ``prepare_data``,
notebook 04 can build a trainer on it, and notebook 05 can evaluate the checkpoint notebook 04 left.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from helpers.config import Config, make_config, results_dir


@dataclass
class PreparedData:
    """Everything up to the features: the data, the split, the fitted feature pipeline and the baseline."""
    config: Config
    loaded: object            # helpers.datasets.LoadedData (events incl. code -1, source, synthetic, oracle)
    digits: object            # mindbigdata.Events with codes 0..9 only, in file (time) order
    n_non_digit: int          # code -1 events left out of the 10-class task
    split: object             # helpers.splits.Split, indices into `digits`
    features: object          # helpers.features.FeaturePipeline, fitted on the training events only
    train: object             # helpers.features.FeatureSet of kept (not artefact-rejected) events
    val: object
    test: object
    rejected: dict            # split -> number of events rejected as artefacts (left out of training/metrics)
    baseline: object          # helpers.baseline.BaselineResult on the test events

    @property
    def synthetic(self) -> bool:
        return bool(self.loaded.synthetic)

    def summary(self) -> str:
        s = self.split
        return (f"{len(self.digits)} digit events ({self.n_non_digit} code -1 events left out) from "
                f"{self.loaded.source}{' [SYNTHETIC]' if self.synthetic else ''}; contiguous blocks: "
                f"train {len(s.train)}, val {len(s.val)}, test {len(s.test)}; artefact-rejected "
                f"{self.rejected}; features {self.train.X.shape[1]}-dim.\n{self.baseline}")


def feature_config(config: Config, sfreq: float):
    from helpers.features import FeatureConfig

    return FeatureConfig(sfreq=sfreq, feature_dim=config.feature_dim, seed=config.seed)


def prepare_data(config: Config, data_path: str | Path | None = None) -> PreparedData:
    """Load (or generate) the data, split by contiguous event-id blocks, fit features and the baseline."""
    from helpers.baseline import features_baseline
    from helpers.datasets import load_dataset
    from helpers.features import FeaturePipeline, digit_events
    from helpers.splits import assert_disjoint, block_split

    loaded = load_dataset(data_path, n_events=config.synthetic_events, strength=config.synthetic_strength,
                          seed=config.seed)
    digits, n_non_digit = digit_events(loaded.events)
    if len(digits) < 30:
        raise ValueError(f"only {len(digits)} digit events in {loaded.source}: too few to split and train")
    split = block_split(digits.event_ids, fractions=tuple(config.split_fractions))
    assert_disjoint(split, digits.event_ids)
    pipe = FeaturePipeline(feature_config(config, digits.sfreq)).fit(digits, split.train)
    sets = {name: pipe.transform(digits, getattr(split, name)) for name in ("train", "val", "test")}
    rejected = {name: fs.n_rejected for name, fs in sets.items()}
    kept = {name: fs.kept() for name, fs in sets.items()}
    baseline = features_baseline(kept["train"], kept["test"], kept["val"], seed=config.seed)
    return PreparedData(config=config, loaded=loaded, digits=digits, n_non_digit=n_non_digit, split=split,
                        features=pipe, train=kept["train"], val=kept["val"], test=kept["test"],
                        rejected=rejected, baseline=baseline)


@dataclass
class SemanticSetup:
    """The frozen CLIP, the stimuli at both resolutions and their cached CLIP embeddings."""
    clip: object                 # helpers.semantic.FrozenClip
    stimuli_uint8: np.ndarray    # [10, 224, 224, 3], for figures
    stimuli: torch.Tensor        # [10, 3, image_size, image_size] in [-1, 1]: discriminator reals, L1 targets
    embeddings: object           # helpers.semantic.StimulusEmbeddings of the full-resolution stimuli
    source: str                  # where the stimuli came from


def load_semantic(config: Config, out_dir: str | Path | None = None) -> SemanticSetup:
    from helpers.semantic import load_clip, stimulus_embeddings
    from helpers.stimuli import get_stimuli, stimuli_source, to_tensor
    from helpers.train import resolve_device

    device = resolve_device(config.device)
    clip = load_clip(config.clip_model, config.clip_weights, pretrained_tag=config.clip_pretrained,
                     device=str(device))
    images = get_stimuli(size=224)
    full = to_tensor(images)
    cache = None if out_dir is None else Path(out_dir) / "models" / "stimulus_embeddings.pt"
    emb = stimulus_embeddings(clip, full.to(device), cache_path=cache)
    return SemanticSetup(clip=clip, stimuli_uint8=images, stimuli=to_tensor(images, size=config.image_size),
                         embeddings=emb, source=stimuli_source())


def build_trainer(config: Config, semantic: SemanticSetup, out_dir: str | Path | None = None):
    from helpers.train import Trainer

    return Trainer(config, semantic.stimuli, semantic.clip, semantic.embeddings.embeddings, out_dir=out_dir)


def train_data(prepared: PreparedData):
    from helpers.train import TrainData

    return (TrainData.from_numpy(prepared.train.X, prepared.train.labels),
            TrainData.from_numpy(prepared.val.X, prepared.val.labels))


def save_features(prepared: PreparedData, out_dir: str | Path) -> Path:
    """The fitted feature transform goes next to the model: evaluation re-applies it unchanged."""
    from helpers.checkpoint import save_checkpoint

    return save_checkpoint({"features": prepared.features.state_dict()},
                           Path(out_dir) / "models" / "features.pt")


def run_pipeline(config: Config, data_path: str | Path | None = None, out_dir: str | Path | None = None,
                 resume: bool = False, progress: bool | None = None, log=print) -> dict:
    """prepare -> features -> split -> train -> evaluate -> figures; returns the metrics dict."""
    out = Path(out_dir) if out_dir is not None else results_dir()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    config.save(out / "config.json")
    log(f"[1/4] data and features (profile {config.profile})")
    prepared = prepare_data(config, data_path)
    log(prepared.summary())
    save_features(prepared, out)
    log("[2/4] frozen CLIP and stimulus embeddings")
    semantic = load_semantic(config, out)
    log(semantic.clip.describe())
    trainer = build_trainer(config, semantic, out)
    if resume and trainer.resume_from(out):
        log(f"resumed from {out / 'models' / 'last.pt'} after epoch {trainer.epoch}")
    elif resume:
        log(f"--resume: no checkpoint in {out / 'models'}, starting from scratch")
    log(f"[3/4] training {config.epochs} epochs, batch {config.batch_size}, "
        f"{len(prepared.train.X)} training events")
    train, val = train_data(prepared)
    trainer.fit(train, val, progress=progress)
    log("[4/4] evaluation on the held-out test events")
    metrics = evaluate_trainer(trainer, prepared, semantic, out, log=log)
    log(f"done in {time.perf_counter() - t0:.0f} s; metrics in {out / 'metrics.json'}")
    return metrics


def cli_run(args) -> int:
    from helpers.checkpoint import CheckpointError
    from helpers.semantic import ClipUnavailableError
    from helpers.train import TrainingDivergedError

    try:
        config = make_config(args.profile, args.overrides)
        run_pipeline(config, data_path=args.data, out_dir=args.out, resume=args.resume)
    except (ValueError, FileNotFoundError, CheckpointError, ClipUnavailableError, TrainingDivergedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
