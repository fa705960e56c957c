"""The whole pipeline in stages that notebooks and ``python -m helpers run`` share.

file -> events -> digit events -> contiguous-block split -> features (fitted on train) -> linear baseline
     -> frozen CLIP + stimulus embeddings -> trainer (resumable) -> evaluation -> figures + metrics.json

Each stage is a function returning a plain object, so notebook 02 can stop after ``prepare_data``,
notebook 04 can build a trainer on it, and notebook 05 can evaluate the checkpoint notebook 04 left.

The data stage (``PreparedData``, ``load_events``, ``prepare_data`` and the fitted features saved with a run) lives
in :mod:`helpers.prepare` and is re-exported here; this module holds the CLIP setup, the trainer, the evaluation
and the run itself (``open_run``, ``run_pipeline``, ``python -m helpers run``).
"""
from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from helpers.config import UNTRAINED_CLIP_NOTE, Config, make_config, results_dir
from helpers.eeg_references import REFERENCE_LABELS, train_references
from helpers.log import logger
from helpers.prepare import (  # noqa: F401 - re-exported: pipeline.prepare_data etc. (notebooks, tests, benchmarks)
    PreparedData,
    load_events,
    load_features,
    prepare_data,
    save_features,
)


@dataclass
class SemanticSetup:
    """The frozen CLIP, the stimuli at both resolutions and their cached CLIP embeddings."""
    clip: object                 # helpers.semantic.FrozenClip
    stimuli_uint8: np.ndarray    # [10, 224, 224, 3], for figures
    stimuli: torch.Tensor        # [10, 3, image_size, image_size] in [-1, 1]: discriminator reals, L1 targets
    embeddings: object           # helpers.semantic.StimulusEmbeddings of those same stimuli
    source: str                  # where the stimuli came from

    @property
    def custom(self) -> bool:
        """The stimuli are a user's own images (``dataset/stimuli``), not the rendered default."""
        return self.source.startswith("folder")


def load_semantic(config: Config, out_dir: str | Path | None = None) -> SemanticSetup:
    from helpers.semantic import load_clip, stimulus_embeddings
    from helpers.stimuli import get_stimuli, stimuli_source, to_tensor
    from helpers.train import resolve_device

    device = resolve_device(config.device)
    clip = load_clip(config.clip_model, config.clip_weights, pretrained_tag=config.clip_pretrained,
                     device=str(device))
    images = get_stimuli(size=224)
    stimuli = to_tensor(images, size=config.image_size)
    # The semantic target is the stimulus as the generator can draw it (image_size, then CLIP's own resize):
    # a generator that reproduces its L1 target exactly then also has zero semantic loss.
    cache = None if out_dir is None else Path(out_dir) / "models" / "stimulus_embeddings.pt"
    emb = stimulus_embeddings(clip, stimuli.to(device), cache_path=cache)
    return SemanticSetup(clip=clip, stimuli_uint8=images, stimuli=stimuli, embeddings=emb, source=stimuli_source())


def run_identity(prepared: PreparedData, semantic: SemanticSetup) -> dict:
    """What a trained model depends on besides its config: the data, the fitted features and the CLIP."""
    import hashlib

    h = hashlib.sha1()
    for key, value in sorted(prepared.features.state_dict().items()):
        h.update(key.encode())
        h.update(value.numpy().tobytes() if torch.is_tensor(value) else repr(value).encode())
    return {"data_source": str(prepared.loaded.source), "n_train": len(prepared.train.X),
            "n_val": len(prepared.val.X), "n_test": len(prepared.test.X), "features_sha1": h.hexdigest(),
            "clip_weights": semantic.clip.weights, "clip_fingerprint": semantic.clip.fingerprint}


def build_trainer(config: Config, semantic: SemanticSetup, out_dir: str | Path | None = None,
                  prepared: PreparedData | None = None):
    """A Trainer for this config and CLIP; with ``prepared`` it records the run's identity, so that resuming
    on other data, other fitted features or another CLIP is refused."""
    from helpers.train import Trainer

    trainer = Trainer(config, semantic.stimuli, semantic.clip, semantic.embeddings.embeddings, out_dir=out_dir)
    if prepared is not None:
        trainer.identity = run_identity(prepared, semantic)
    return trainer


def train_data(prepared: PreparedData):
    from helpers.train import TrainData

    return (TrainData.from_numpy(prepared.train.X, prepared.train.labels),
            TrainData.from_numpy(prepared.val.X, prepared.val.labels))


def display_signals(events, idx, n_times: int) -> np.ndarray:
    """Events as the model reads them, before standardisation: band-passed, the first ``n_times`` samples (the
    features' crop, 1 s by default), demeaned (for figures: the signature grid shows what the model saw)."""
    from helpers.features import bandpass, demean, fix_length

    x = bandpass(events.signals[idx], events.sfreq, sizes=events.sizes[idx])
    return demean(fix_length(x, events.sizes[idx], n_times=n_times))


def class_mean_latents(trainer, prepared: PreparedData) -> torch.Tensor:
    """Per digit, the mean latent (mu) of its training events: what "feeding the generator the true class" means.

    The oracle-label generator draws from these: the same generator, told the right class perfectly. It is
    the upper bound of what this generator can show when the EEG decoding is perfect.
    """
    lat = trainer.latents(prepared.train.X)
    labels = torch.as_tensor(prepared.train.labels)
    means = torch.zeros(10, lat.shape[1])
    for c in range(10):
        if (labels == c).any():
            means[c] = lat[labels == c].mean(dim=0)
    return means


@torch.no_grad()
def oracle_label_images(trainer, class_means: torch.Tensor, labels: np.ndarray) -> torch.Tensor:
    trainer.generator.eval()
    z = class_means[torch.as_tensor(labels)].to(trainer.device)
    return torch.cat([trainer.generator(z[i:i + 64]).float().cpu() for i in range(0, len(z), 64)])


def evaluate_trainer(trainer, prepared: PreparedData, semantic: SemanticSetup, out_dir: str | Path | None = None,
                     judge=None, log=None, n_permutations: int = 1000, figures: bool = True) -> dict:
    """Score the held-out test (and validation) events, write ``metrics.json`` and the figures.

    Semantic accuracy ranks the 10 stimulus CLIP embeddings by cosine to each generated image; the judge
    (a digit classifier trained on augmented renderings, not CLIP) referees the same images; both stand
    next to chance, the linear EEG baseline and the oracle-label generator on the same split.
    """
    from helpers import viz
    from helpers.atomic import write_json_atomic
    from helpers.evaluate import (confusion, evaluation_metrics, prediction_histogram, score_generated,
                                  top_k_predictions)
    from helpers.judge import load_or_train_judge

    log = log or logger.info
    out = Path(out_dir) if out_dir is not None else results_dir()
    # A user's own stimuli (dataset/stimuli) join the judge's training fonts: it must read what the subject saw.
    judge = judge or load_or_train_judge(out / "models", stimuli=semantic.stimuli_uint8 if semantic.custom else None)
    clip, emb = semantic.clip, semantic.embeddings.embeddings
    test, val = prepared.test, prepared.val

    generated = trainer.generate(test.X)
    scores = score_generated(generated, judge=judge, clip=clip, stimulus_embeddings=emb)
    val_scores = score_generated(trainer.generate(val.X), judge=judge, clip=clip, stimulus_embeddings=emb)
    oracle_images = oracle_label_images(trainer, class_mean_latents(trainer, prepared), test.labels)
    oracle_scores = score_generated(oracle_images, judge=judge, clip=clip, stimulus_embeddings=emb)
    baseline_val = prepared.baseline.val_top1
    references = {}
    if trainer.config.reference_epochs > 0:
        references = train_references(prepared, trainer.config.reference_epochs, seed=trainer.config.seed,
                                      device=trainer.device)
    metrics = evaluation_metrics(
        test.labels, scores["semantic_scores"], scores["judge_scores"], prepared.baseline.scores,
        clip_semantic=bool(clip.trained), synthetic=prepared.synthetic, oracle_top1=prepared.loaded.oracle_top1,
        generated=generated, stimuli=semantic.stimuli_uint8,
        oracle_label_semantic_scores=oracle_scores["semantic_scores"],
        oracle_label_judge_scores=oracle_scores["judge_scores"],
        validation={"labels": val.labels, **val_scores,
                    "linear_baseline_top1": None if baseline_val is None else baseline_val.value},
        n_permutations=n_permutations, seed=trainer.config.seed, train_labels=prepared.train.labels,
        reference_scores={name: r.scores for name, r in references.items()},
        extra={
            "eeg_references": {name: r.to_dict() for name, r in references.items()},
            "profile": trainer.config.profile,
            "world_size": int(trainer.config.world_size),
            "data_source": str(prepared.loaded.source),
            "epochs_trained": int(trainer.epoch),
            "clip": clip.describe(),
            "clip_model": clip.model_name,  # what was used: digit-clip when auto fell back to it
            "clip_weights": clip.weights,
            "stimuli": semantic.source,
            "judge_heldout_accuracy": float(judge.heldout_accuracy),
            "linear_baseline": prepared.baseline.to_dict(),
            "split": {"method": "contiguous event-id blocks", "gap_events": int(prepared.config.split_gap_events),
                      "n_train": len(prepared.train.X),
                      "n_val": len(val.X), "n_test": len(test.X), "artefact_rejected": prepared.rejected,
                      "code_minus1_events_excluded": int(prepared.n_non_digit)},
            "features_explained_variance": float(prepared.features.explained_variance_total),
        })
    write_json_atomic(out / "metrics.json", metrics)

    if figures:
        fig_dir = out / "figures"
        flags = dict(clip_trained=bool(clip.trained), synthetic=prepared.synthetic, out_dir=fig_dir)
        n_show = min(8, len(test.X))
        eeg = display_signals(prepared.digits, test.indices[:n_show], prepared.features.config.n_times)
        viz.signature_grid(eeg, prepared.digits.sfreq, test.labels[:n_show], semantic.stimuli_uint8,
                           generated[:n_show], top_k_predictions(scores["judge_scores"][:n_show], 3),
                           channel_names=prepared.digits.channels, n_total=len(test.X), **flags)
        from helpers.stats import chance_level
        from helpers.train import VAL_MAX_EVENTS

        scored = val.labels[:VAL_MAX_EVENTS]  # the events Trainer.validate scores each epoch, and their class mix
        viz.training_curves(trainer.history, chance=(chance_level(scored, 1, 10), chance_level(scored, 3, 10))
                            if len(scored) else None, **flags)
        judge_pred = scores["judge_scores"].argmax(axis=1)
        viz.confusion_matrix_figure(confusion(judge_pred, test.labels), "judge on generated images (test)", **flags)
        sc = metrics["scorers"]
        viz.accuracy_bars({"generator (judge)": sc["judge"]["top1"], "generator (CLIP)": sc["semantic"]["top1"],
                           "linear EEG baseline": sc["linear_baseline"]["top1"],
                           **{REFERENCE_LABELS[name]: sc[name]["top1"] for name in references},
                           "majority class (label-blind)": sc["majority_class"]["top1"],
                           "oracle label (judge)": sc["oracle_label_judge"]["top1"]},
                          chance=metrics["chance_top1"], chance_upper95=metrics["chance_top1_upper95"], **flags)
        viz.prediction_histogram_figure(
            {"generator (judge)": prediction_histogram(judge_pred),
             "linear EEG baseline": prediction_histogram(prepared.baseline.predictions)},
            true_counts=prediction_histogram(test.labels), **flags)
        import matplotlib.pyplot as plt

        plt.close("all")
    refs = "".join(f", {name} {metrics[name + '_top1']:.3f}" for name in references)
    log(f"test events {metrics['n_test_events']}: judge top-1 {metrics['judge_top1']:.3f}, semantic top-1 "
        f"{metrics['semantic_top1']:.3f}, linear baseline {metrics['linear_baseline_top1']:.3f}{refs}, majority class "
        f"{metrics['majority_class_top1']:.3f}, chance {metrics['chance_top1']:.3f} from the test events' class mix "
        f"(95% bound {metrics['chance_top1_upper95']:.3f})"
        + ("" if clip.trained else f"  [{UNTRAINED_CLIP_NOTE}]"))
    return metrics


class RunExistsError(ValueError):
    """The output folder already holds a run and neither resuming nor replacing it was asked for."""


# What makes a folder hold a run: a checkpoint (the last or the previous one) or its metrics.
RUN_MARKERS = ("models/last.pt", "models/previous.pt", "metrics.json")
# What replacing a run (force) removes before the fresh run writes its own files; figures are overwritten, and
# the caches (judge, stimulus embeddings) are checked against what they were made with, so they stay.
RUN_FILES = RUN_MARKERS + ("history.json", "history.csv")


def run_markers(out_dir: str | Path) -> list[str]:
    """The files in ``out_dir`` that show it already holds a run (empty: a new or cache-only folder)."""
    return [m for m in RUN_MARKERS if (Path(out_dir) / m).is_file()]


def check_run_folder(out_dir: str | Path, resume: bool = False, force: bool = False) -> None:
    """Refuse to start a run over an existing one unless it is resumed or replaced on purpose.

    Runs at the very start of ``python -m helpers run`` (before any data or CLIP work), so that a refusal is
    instant and changes nothing; :func:`open_run` applies it again for the notebooks.
    """
    found = run_markers(out_dir)
    if found and not (resume or force):
        raise RunExistsError(f"{out_dir} already holds a run ({', '.join(found)}); pass --resume to continue it "
                             f"or --force to replace it (nothing was changed)")


def open_run(config: Config, prepared: PreparedData, semantic: SemanticSetup, out_dir: str | Path, *,
             resume: bool, force: bool = False, log=None):
    """The one rule for starting a run in a folder, shared by ``python -m helpers run`` and the notebooks'
    :func:`helpers.notebook_support.train_or_resume`. Returns ``(trainer, resumed)``.

    * a folder that holds a run (:data:`RUN_MARKERS`) is refused unless ``resume`` or ``force``;
    * ``resume``: continue (or reuse, when finished) the checkpoint when it matches this config, data,
      features and CLIP; a damaged ``last.pt`` falls back to ``previous.pt``, said through ``log``; a
      checkpoint that cannot be resumed is a CheckpointError, unless ``force``;
    * ``force``: whatever cannot be resumed (or everything, without ``resume``) is replaced: the old run's
      checkpoints, metrics and history are removed and a fresh run starts.

    All of this is decided before anything is written: only then do ``config.json`` and ``features.pt`` go to
    the folder, so a refusal leaves it exactly as it was.
    """
    from helpers.checkpoint import CheckpointError

    say = log or logger.info
    out = Path(out_dir)
    check_run_folder(out, resume, force)
    trainer = build_trainer(config, semantic, out, prepared)
    resumed = False
    if resume:
        try:
            resumed = trainer.resume_from(out, log=log)  # None: a checkpoint fallback is a warning
        except CheckpointError as e:
            if not force:
                raise CheckpointError(f"{e} To replace the run in {out} instead, pass --force (in a notebook: "
                                      f"train_or_resume(..., force=True)).") from None
            warnings.warn(f"the run in {out} cannot be resumed and WILL BE REPLACED (force): {e} Training a fresh "
                          f"run from epoch 0 in the same folder now.", UserWarning, stacklevel=2)
            trainer = build_trainer(config, semantic, out, prepared)
    if not resumed and force:
        removed = [f for f in RUN_FILES if (out / f).is_file()]
        for f in removed:
            (out / f).unlink()
        if removed:
            say(f"--force: replacing the run in {out} (removed {', '.join(removed)})")
    elif resume and not resumed:
        say(f"--resume: no checkpoint in {out / 'models'}, starting from scratch")
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "config.json")
    save_features(prepared, out)
    return trainer, resumed


def run_pipeline(config: Config, data_path: str | Path | None = None, out_dir: str | Path | None = None,
                 resume: bool = False, progress: bool | None = None, log=None, force: bool = False) -> dict:
    """prepare -> features -> split -> train -> evaluate -> figures; returns the metrics dict.

    ``resume``: continue the run in ``out_dir``; ``force``: replace it (see :func:`open_run`). Without either,
    a folder that already holds a run is refused before anything runs.
    """
    from helpers import distributed
    from helpers.train import resolve_device

    given_log, log = log, log or logger.info  # open_run gets the caller's own: None makes a fallback a warning
    out = Path(out_dir) if out_dir is not None else results_dir()
    t0 = time.perf_counter()
    # Under torchrun: rank 0 checks, builds the caches and opens the run first; the others then read what it
    # wrote, load the same checkpoint when it resumed, and all train together (helpers.distributed).
    world = distributed.setup(resolve_device(config.device).type)  # a missing GPU is reported now
    config = dataclasses.replace(config, world_size=world)
    main = distributed.is_main()
    if not main:
        log = _quiet
        # Wait for rank 0 to open the run (or to fail: then stop too, rather than wait at a barrier forever).
        if not distributed.broadcast_flag(False):
            raise RuntimeError("rank 0 stopped before training (its error is above)")
        resumed = distributed.broadcast_flag(False)
    else:
        try:
            check_run_folder(out, resume, force)  # before any work: a refusal is instant and changes nothing
        except BaseException:
            distributed.broadcast_flag(False)
            raise
    log(f"[1/4] data and features (profile {config.profile}{f', {world} processes' if world > 1 else ''})")
    # A resumed run keeps the feature transform it was trained with (models/features.pt), never a refit; the
    # other ranks always read the one rank 0 wrote, so that every process trains on the same features.
    fitted = out / "models" / "features.pt" if (resume or not main) else None
    try:
        prepared = prepare_data(config, data_path, fitted_features=fitted)
        log(prepared.summary())
        log("[2/4] frozen CLIP and stimulus embeddings")
        semantic = load_semantic(config, out)  # caches the stimulus embeddings under out/models
        log(semantic.clip.describe())
        if main:
            # Checks the checkpoint before writing anything: a refused resume leaves the run's folder as it was.
            trainer, resumed = open_run(config, prepared, semantic, out, resume=resume, force=force, log=given_log)
    except BaseException:
        if main:
            distributed.broadcast_flag(False)
        raise
    if main:
        distributed.broadcast_flag(True)  # the run is open
        distributed.broadcast_flag(resumed)
    else:
        trainer = build_trainer(config, semantic, out, prepared)
        if resumed:
            trainer.resume_from(out)
    if resumed:
        log(f"resumed from {out / 'models'} after epoch {trainer.epoch}")
    log(f"[3/4] training {config.epochs} epochs, batch {config.batch_size}, "
        f"{len(prepared.train.X)} training events")
    train, val = train_data(prepared)
    trainer.fit(train, val, progress=progress)
    if not main:
        return {}  # rank 0 evaluates and writes
    log("[4/4] evaluation on the held-out test events")
    metrics = evaluate_trainer(trainer, prepared, semantic, out, log=log)
    log(f"done in {time.perf_counter() - t0:.0f} s; metrics in {out / 'metrics.json'}")
    return metrics


def cli_run(args) -> int:
    from helpers.checkpoint import CheckpointError
    from helpers.semantic import ClipUnavailableError

    try:
        config = make_config(args.profile, args.overrides)
        run_pipeline(config, data_path=args.data, out_dir=args.out, resume=args.resume,
                     force=getattr(args, "force", False))
    except (ValueError, OSError, RuntimeError, CheckpointError, ClipUnavailableError) as e:
        # RuntimeError covers a missing GPU, a judge below its accuracy floor and TrainingDivergedError;
        # OSError a missing file or a full disk (the atomic writers name the file and keep the previous one).
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        from helpers import distributed

        distributed.teardown()
    return 0


def _quiet(*_args, **_kwargs) -> None:
    """The log of ranks other than 0: one process speaks for the run."""
