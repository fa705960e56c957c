"""One call for the notebooks: the real EP file when it is there, else the synthetic default, loudly.

``load_dataset()`` looks for ``dataset/EP1.01.txt`` (see dataset/README.md). Without it, it writes (once)
a deterministic synthetic file in the same format under ``dataset/`` and says so on every load, with the
oracle accuracy that file allows. Either way the text is parsed once and cached as ``.npz`` next to it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers.config import Config, dataset_dir
from helpers.mindbigdata import Events, ParseReport, load_cache, prepare
from helpers.synthetic import SyntheticSpec, read_info, write_synthetic

REAL_FILE = "EP1.01.txt"
REAL_ZIP = "MindBigData-EP-v1.0.zip"  # what `python -m helpers download` fetches; read as it is, never unpacked


def real_data_path() -> Path | None:
    """The real recording in the data folder: ``EP1.01.txt``, else the official zip; None when neither is there."""
    for name in (REAL_FILE, REAL_ZIP):
        if (dataset_dir() / name).is_file():
            return dataset_dir() / name
    return None


class SyntheticDataWarning(UserWarning):
    """Raised (as a warning) whenever results come from generated, not recorded, EEG."""


@dataclass
class LoadedData:
    events: Events  # digit codes and the -1 random captures
    report: ParseReport
    source: str  # the text file that was parsed
    synthetic: bool
    oracle_top1: float | None  # Bayes accuracy of a synthetic file; None for real data
    cache_path: str | None
    label_mode: str | None = None  # synthetic only

    @property
    def n_digit_events(self) -> int:
        return int((self.events.codes >= 0).sum())


def synthetic_path(n_events: int, strength: float, seed: int, label_mode: str = "signal") -> Path:
    """Where the synthetic default with these settings lives: dataset/synthetic_EP_<n>_<strength>_<seed>.txt."""
    mode = "" if label_mode == "signal" else f"_{label_mode}"
    return dataset_dir() / f"synthetic_EP_{n_events}_{strength:g}_{seed}{mode}.txt"


def _cache_for(source: Path) -> Path:
    return source.with_suffix(".npz")


def _banner(msg: str) -> None:
    # A warning, shown by default (once: not logged as well): the user must know the data are not the recording.
    warnings.warn(msg, SyntheticDataWarning, stacklevel=3)


def load_dataset(data_path: str | Path | None = None, *, n_events: int | None = None,
                 strength: float | None = None, seed: int = 0, device: str = "EP", strict: bool = False,
                 label_mode: str = "signal", verbose: bool = True, synthetic_only: bool = False) -> LoadedData:
    """Load events for the pipeline.

    data_path: a MindBigData file (text, its zip or the Hugging Face CSV; cached as ``.npz`` next to it) or a
      cache ``.npz``; None means ``dataset/EP1.01.txt`` (or the downloaded zip) if present, else the synthetic
      default.
    n_events: synthetic size (default: ``Config.synthetic_events``); for real data, keep only the first
      ``n_events`` events in time order (None = all).
    strength: synthetic class strength (default: ``Config.synthetic_strength``).
    Profiles are read at the edge (CLI, notebook status cell) and passed down as these values: this function
    never reads ``EEG2IMG_PROFILE``.
    synthetic_only: use the synthetic generator even when ``dataset/EP1.01.txt`` exists (demonstrations
      whose point depends on a known generating process, e.g. the leakage demo's session blocks).
    verbose: no longer changes anything (kept so existing calls work): synthetic data always raise one
      ``SyntheticDataWarning`` (helpers.log), and nothing is printed.
    """
    cfg = Config()  # the field defaults only; the caller passes its profile's values
    if synthetic_only and data_path is not None:
        raise ValueError("synthetic_only=True generates its own file: leave data_path as None")
    if data_path is None and not synthetic_only and real_data_path() is not None:
        data_path = real_data_path()
    if data_path is not None:
        path = Path(data_path)
        if path.suffix == ".npz":
            events, report = load_cache(path, with_report=True)
            cache, source = path, Path(report.path)
        else:
            cache, source = _cache_for(path), path
            events, report, _ = prepare(path, cache, device=device, strict=strict)
        info = read_info(source)
        if n_events is not None and info is None:
            events = events.subset(np.argsort(events.event_ids, kind="stable")[:n_events])
        loaded = LoadedData(events, report, str(source), synthetic=info is not None,
                            oracle_top1=info.oracle_top1 if info else None, cache_path=str(cache),
                            label_mode=info.spec.get("label_mode") if info else None)
        if info is not None:
            _banner(f"SYNTHETIC DATA ({source.name}): generated EEG, not a recording. " + describe(loaded))
        return loaded
    if device != "EP":
        raise ValueError(f"the synthetic default is EP only; give data_path for device {device!r}")
    n_events = int(n_events if n_events is not None else cfg.synthetic_events)
    strength = float(strength if strength is not None else cfg.synthetic_strength)
    spec = SyntheticSpec(n_events=n_events, class_strength=strength, seed=seed, label_mode=label_mode)
    source = synthetic_path(n_events, strength, seed, label_mode)
    info = read_info(source) if source.is_file() else None
    try:
        same = info is not None and SyntheticSpec(**info.spec) == spec
    except TypeError:  # an info file from another version of the generator
        same = False
    if not same:
        info = write_synthetic(source, spec)
    cache = _cache_for(source)
    events, report, _ = prepare(source, cache, device="EP", strict=strict)
    loaded = LoadedData(events, report, str(source), synthetic=True, oracle_top1=info.oracle_top1,
                        cache_path=str(cache), label_mode=label_mode)
    why = ("synthetic_only=True" if synthetic_only else
           f"NO {REAL_FILE} IN {dataset_dir()} (see dataset/README.md for the real file)")
    _banner(f"{why}: USING SYNTHETIC DATA. " + describe(loaded))
    return loaded


def describe(loaded: LoadedData) -> str:
    """One paragraph for the top of a notebook: what the data are and what accuracy to expect."""
    ev, rep = loaded.events, loaded.report
    n_digit = int((ev.codes >= 0).sum())
    skipped = sum(rep.events_skipped.values())
    size = f"{rep.size_min}-{rep.size_max} samples" if rep.size_min is not None else "no samples"
    text = (f"{len(ev)} events ({n_digit} digits, {len(ev) - n_digit} random -1 captures) from {loaded.source}; "
            f"{len(ev.channels)} channels at {ev.sfreq:g} Hz, {size}; {skipped} events skipped while parsing. ")
    if loaded.synthetic:
        mode = loaded.label_mode or "signal"
        oracle = f"{loaded.oracle_top1:.3f}" if loaded.oracle_top1 is not None else "unknown"
        text += (f"These are SYNTHETIC EEG data (label mode {mode!r}) with a known class signal: the best "
                 f"possible (oracle) top-1 accuracy over the 10 digits is {oracle}, chance is 0.100.")
    else:
        text += ("Recorded EEG (MindBigData EP, one subject): published 10-class decoding reaches about "
                 "12-22 % top-1 with chance at 10 %, so expect modest numbers.")
    return text
