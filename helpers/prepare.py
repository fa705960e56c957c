"""The data stage of the pipeline: events -> digit events -> contiguous-block split -> features fitted on the
training events -> the linear baseline, as one :class:`PreparedData`.

``prepare_data`` is what notebooks 02-05 and ``python -m helpers run`` start from (re-exported by
:mod:`helpers.pipeline`); ``load_events`` is the data it reads (notebook 01 shows the same). The fitted feature
transform is saved with a run (``save_features``) and re-applied unchanged on evaluation and resume
(``load_features``), never refitted.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers.config import Config


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
    too_short: dict | None = None  # split -> of the rejected, events too short to filter (features.min_samples)

    @property
    def synthetic(self) -> bool:
        return bool(self.loaded.synthetic)

    def summary(self) -> str:
        s = self.split
        cap = (f"first {self.config.max_events} events in time order (max_events); "
               if self.config.max_events and not self.synthetic else "")
        return (f"{cap}{len(self.digits)} digit events ({self.n_non_digit} code -1 events left out) from "
                f"{self.loaded.source}{' [SYNTHETIC]' if self.synthetic else ''}; contiguous blocks: "
                f"train {len(s.train)}, val {len(s.val)}, test {len(s.test)} ({self.config.split_gap_events} "
                f"events left out between blocks); rejected {self.rejected}"
                + (f" (too short to filter: {self.too_short})" if self.too_short and any(self.too_short.values())
                   else "")
                + f"; features {self.train.X.shape[1]}-dim.\n{self.baseline}")


def load_events(config: Config, data_path: str | Path | None = None):
    """The events a run uses (``helpers.datasets.LoadedData``): a given file, else ``dataset/EP1.01.txt`` when
    present, both capped by ``config.max_events`` (0 = all); otherwise the synthetic default of
    ``config.synthetic_events`` events."""
    from helpers.datasets import load_dataset, real_data_path

    given = data_path is not None or real_data_path() is not None
    return load_dataset(data_path, n_events=(config.max_events or None) if given else config.synthetic_events,
                        strength=config.synthetic_strength, seed=config.seed,
                        label_mode=config.synthetic_label_mode)


def prepare_data(config: Config, data_path: str | Path | None = None,
                 fitted_features: str | Path | None = None) -> PreparedData:
    """Load (or generate) the data, split by contiguous event-id blocks, fit features and the baseline.

    ``fitted_features``: a run's ``models/features.pt`` (:func:`save_features`). When that file exists, the
    transform saved with the run is applied as it is instead of being fitted again, so a run is evaluated (and
    resumed) with exactly the features it was trained on, whatever this machine's BLAS would fit now. A file
    fitted with another recipe or on other training events, or a damaged one, is not used: the features are
    fitted afresh with a warning (and resuming that run is then refused by its identity check, unless forced).
    """
    from helpers.baseline import features_baseline
    from helpers.features import FeatureConfig, FeaturePipeline, digit_events
    from helpers.splits import assert_disjoint, block_split

    loaded = load_events(config, data_path)
    digits, n_non_digit = digit_events(loaded.events)
    if len(digits) < 30:
        raise ValueError(f"only {len(digits)} digit events in {loaded.source}: too few to split and train")
    split = block_split(digits.event_ids, fractions=tuple(config.split_fractions), gap=config.split_gap_events)
    assert_disjoint(split, digits.event_ids)
    recipe = FeatureConfig.from_config(config, sfreq=digits.sfreq)
    pipe = None
    if fitted_features is not None and Path(fitted_features).is_file():
        try:
            pipe = load_features(fitted_features, recipe, digits.event_ids[split.train])
        except (ValueError, RuntimeError) as e:  # RuntimeError: a CheckpointError (damaged, unsealed file)
            # Not this run's transform (or damaged): fit afresh and say so. Whether the run in that folder may then
            # be resumed is open_run's decision (its identity check compares the fitted features).
            warnings.warn(f"{e}; fitting the features afresh", UserWarning, stacklevel=2)
    if pipe is None:
        pipe = FeaturePipeline(recipe).fit(digits, split.train)
    sets = {name: pipe.transform(digits, getattr(split, name)) for name in ("train", "val", "test")}
    rejected = {name: fs.n_rejected for name, fs in sets.items()}
    too_short = {name: fs.rejection_reasons()["too_short"] for name, fs in sets.items()}
    kept = {name: fs.kept() for name, fs in sets.items()}
    baseline = features_baseline(kept["train"], kept["test"], kept["val"], seed=config.seed)
    return PreparedData(config=config, loaded=loaded, digits=digits, n_non_digit=n_non_digit, split=split,
                        features=pipe, train=kept["train"], val=kept["val"], test=kept["test"],
                        rejected=rejected, baseline=baseline, too_short=too_short)


def _event_ids_sha1(event_ids) -> str:
    import hashlib

    return hashlib.sha1(np.ascontiguousarray(np.asarray(event_ids, dtype=np.int64)).tobytes()).hexdigest()


def save_features(prepared: PreparedData, out_dir: str | Path) -> Path:
    """The fitted feature transform goes next to the model, with the ids of the training events it was fitted
    on: evaluation and resume re-apply it unchanged (:func:`prepare_data` with ``fitted_features``)."""
    from helpers.checkpoint import save_checkpoint

    train_ids = prepared.digits.event_ids[prepared.split.train]
    return save_checkpoint({"features": prepared.features.state_dict(), "train_event_ids_sha1": _event_ids_sha1(train_ids)},
                           Path(out_dir) / "models" / "features.pt")


def load_features(path: str | Path, recipe, train_event_ids):
    """A run's saved feature transform, checked against the recipe and the training events it must fit."""
    from helpers.checkpoint import load_checkpoint
    from helpers.features import FeaturePipeline

    state = load_checkpoint(path)
    try:
        pipe = FeaturePipeline.from_state_dict(state["features"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a fitted feature transform of this project ({e})") from None
    saved, wanted = pipe.config.to_dict(), recipe.to_dict()
    diff = [f"{k}: saved {saved.get(k)!r} vs now {v!r}" for k, v in wanted.items() if saved.get(k) != v]
    if diff:
        raise ValueError(f"{path} was fitted with another feature recipe ({'; '.join(diff)}); use another --out")
    if state.get("train_event_ids_sha1") not in (None, _event_ids_sha1(train_event_ids)):
        raise ValueError(f"{path} was fitted on other training events than this data and split give; "
                         f"use another --out, or the data and split_fractions of that run")
    return pipe
