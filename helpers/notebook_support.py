"""The notebooks' plumbing, and the one module they import (``from helpers import notebook_support as ns``).

* :func:`notebook_config`, :func:`run_dir`, :func:`figures_dir`, :func:`save_figure`, :func:`keep` - the profile's
  config and where a notebook's run and figures live;
* :func:`status` - the first cell of every notebook: profile, data (real or synthetic), CLIP weights;
  loud (red) when the data are synthetic or the CLIP is untrained;
* :func:`load_data` - notebook 01's data, loaded exactly as :func:`helpers.pipeline.prepare_data` loads it;
* :func:`train_or_resume`, :func:`compare_lambda_clip` - notebook 04's main run and comparison.

The notebooks' figures and tables live in modules of their own and are re-exported here, so that every notebook
cell calls ``ns.<name>``: :mod:`helpers.explore` (notebook 01's data exploration and the EPOC electrode layout),
:mod:`helpers.leakage` (notebook 02's leaky and honest splits side by side), :mod:`helpers.nbfigures` (the
figures of notebooks 02-05) and :mod:`helpers.nbtables` (their tables and numbers, e.g. :func:`metrics_table`).

Figures are ``matplotlib.figure.Figure`` objects; :func:`save_figure` writes them under
``run_dir(config) / "figures"``.
"""
from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from helpers.config import UNTRAINED_CLIP_NOTE, Config, active_profile, dataset_dir, make_config, results_dir
from helpers.datasets import REAL_FILE, real_data_path

# The notebooks call these as ns.<name>: re-exported from the modules that hold them.
from helpers.explore import (EPOC_POSITIONS, EPOC_REFERENCES, band_power, code_counts_table,  # noqa: F401
                             format_raw_lines, plot_drift, plot_electrode_layout, plot_event, plot_power_spectra,
                             plot_sizes, power_spectra, raw_lines)
from helpers.leakage import LeakageRow, leakage_demo, leakage_table  # noqa: F401
from helpers.nbfigures import (list_figures, plot_accuracies, plot_comparison, plot_cosine_matrix,  # noqa: F401
                               plot_explained_variance, plot_ptp, plot_signal_steps)
from helpers.nbtables import (CLIP_EFFECT_JSON, clip_effect_table, comparison_table, forward_shapes,  # noqa: F401
                              metrics_table, parameter_table, semantic_gradient_step)


# ------------------------------------------------------------------------------------------- config & paths

def notebook_config(profile: str | None = None, **overrides) -> Config:
    """The config of the active profile (``$EEG2IMG_PROFILE``, default ``cpu``), with optional overrides.

    The notebooks' edge: it also shows the package's log (INFO: run stages, one line per epoch) in the notebook."""
    from helpers.log import set_log_level

    set_log_level("INFO")
    return make_config(profile or active_profile(), overrides or None)


def run_dir(config: Config) -> Path:
    """Where the notebooks' main run lives: ``results_dir()``; the ``ci`` profile uses ``results_dir()/ci``
    so that ``make test`` never overwrites the demo's checkpoints, figures or metrics."""
    base = results_dir()
    return base / "ci" if config.profile == "ci" else base


def figures_dir(config: Config) -> Path:
    d = run_dir(config) / "figures"
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_figure(fig, config: Config, name: str, dpi: int = 110) -> Path:
    """Write ``fig`` as ``<run_dir>/figures/<name>.png`` and return the path."""
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"figure name must be a plain file stem, got {name!r}")
    path = figures_dir(config) / (name if name.endswith(".png") else f"{name}.png")
    fig.savefig(path, dpi=dpi)
    return path


def keep(fig, config: Config, name: str):
    """Save ``fig`` under the run's figures folder (:func:`save_figure`) and return it, so a cell ending
    in ``ns.keep(fig, config, "name")`` both shows and keeps the figure."""
    save_figure(fig, config, name)
    return fig


# ------------------------------------------------------------------------------------------- status banner

def expected_clip(config: Config) -> tuple[str, bool]:
    """(description, trained) of the CLIP that ``config`` will get, decided without loading it.

    ``auto`` gets pretrained weights only when they are in the local cache (or the hub is reachable;
    this check does not probe the network and reports the cache only), else digit-CLIP.
    """
    from helpers.digit_clip import DIGIT_CLIP_NAME, cache_paths

    weights = config.clip_weights.strip()
    key = weights.lower()
    cached_digit = cache_paths()[0]
    digit_clip = ("digit-CLIP (trained by this project on handwritten digits and fonts; "
                  + (f"cached: {cached_digit})" if cached_digit.is_file() else
                     f"trained on first use, about two minutes, then cached in {cached_digit.parent})"))
    if key == "untrained":
        return f"{config.clip_model}, untrained (random weights, chosen by the profile)", False
    if config.clip_model == DIGIT_CLIP_NAME and key in ("auto", "pretrained"):
        return digit_clip, True
    if key in ("auto", "pretrained"):
        cached = None
        try:
            import open_clip

            from helpers import clip_hub

            pcfg = open_clip.get_pretrained_cfg(config.clip_model, config.clip_pretrained)
            cached = clip_hub.cached_weights_file(pcfg) if pcfg else None
        except Exception:  # unknown model names are reported when the CLIP is loaded
            cached = None
        if cached:
            return f"{config.clip_model} / {config.clip_pretrained}, pretrained (cached: {cached})", True
        if key == "pretrained":
            return (f"{config.clip_model} / {config.clip_pretrained}: pretrained weights asked for but NOT in "
                    f"the local cache - loading will fail unless the hub is reachable"), False
        return (f"{config.clip_model}: clip_weights=auto but the pretrained weights ({config.clip_pretrained}) are "
                f"not in the local cache - unless the hub is reachable it falls back to {digit_clip}"), True
    return f"{config.clip_model}, checkpoint {weights}", Path(weights).expanduser().is_file()


@dataclass
class Status:
    """What a notebook runs on. Shown as a box (red when something is not real) and as plain text."""
    profile: str
    data: str
    synthetic: bool
    clip: str
    clip_trained: bool
    run_dir: str
    extra: list = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        w = []
        if self.synthetic:
            w.append("SYNTHETIC DATA: these are generated signals with a known, planted class signal, "
                     "not recorded EEG. Numbers say whether the pipeline works, not what EEG allows. "
                     f"Put the real file at {dataset_dir() / REAL_FILE} (or its zip) to use it.")
        if not self.clip_trained:
            w.append(f"{UNTRAINED_CLIP_NOTE}. The semantic loss and every semantic number come from a fixed "
                     "random network: they exercise the mechanics, and the judge's numbers are the ones to read.")
        return w

    def lines(self) -> list[str]:
        return [f"profile : {self.profile}", f"data    : {self.data}", f"CLIP    : {self.clip}",
                f"results : {self.run_dir}", *self.extra]

    def __str__(self) -> str:
        bar = "!" * 78
        loud = [f"!! {w}" for w in self.warnings]
        return "\n".join(self.lines() + ([bar, *loud, bar] if loud else []))

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        rows = "".join(f"<div><code>{html.escape(line)}</code></div>" for line in self.lines())
        warn = "".join(f"<div style='color:#b00000;font-weight:bold;margin-top:4px'>&#9888; {html.escape(w)}</div>"
                       for w in self.warnings)
        border = "#b00000" if self.warnings else "#2e7d32"
        return f"<div style='border:3px solid {border};padding:6px 10px;border-radius:4px'>{rows}{warn}</div>"


def status(config: Config, loaded: Any = None, clip: Any = None) -> Status:
    """The first-cell report: profile, data, CLIP weights (what is loaded if given, else what will be)."""
    if loaded is not None:
        synthetic = bool(loaded.synthetic)
        data = f"{'SYNTHETIC' if synthetic else 'real'}: {loaded.source}"
        oracle = getattr(loaded, "oracle_top1", None)
        if synthetic and oracle is not None:
            data += f" (oracle top-1 {float(oracle):.2f}, uniform chance 0.10)"
    else:
        path = real_data_path()
        synthetic = path is None
        data = (f"SYNTHETIC: no {dataset_dir() / REAL_FILE}, the embedded generator's data "
                f"({config.synthetic_events} events) will be used" if synthetic else f"real: {path}")
    if clip is not None:
        clip_text, trained = clip.describe(), bool(clip.trained)
    else:
        clip_text, trained = expected_clip(config)
    return Status(profile=config.profile, data=data, synthetic=synthetic, clip=clip_text, clip_trained=trained,
                  run_dir=str(run_dir(config)))


# ------------------------------------------------------------------------------------------- notebook 01

def load_data(config: Config, data_path: str | Path | None = None):
    """The events the pipeline will use (:func:`helpers.pipeline.load_events`, which prepare_data calls too)."""
    from helpers.pipeline import load_events

    return load_events(config, data_path)


# ------------------------------------------------------------------------------------------- notebooks 04-05

def train_or_resume(config: Config, prepared: Any, semantic: Any, out_dir: str | Path | None = None,
                    progress: bool | None = None, log=None, force: bool = False):
    """The profile's main training run in ``out_dir`` (default :func:`run_dir`), with per-epoch checkpoints.

    The same rule as ``python -m helpers run --resume`` (:func:`helpers.pipeline.open_run`): a finished
    checkpoint of the same configuration, data, features and CLIP is reused (no training); an unfinished one
    is resumed; a damaged ``last.pt`` falls back to ``previous.pt`` (said in the log). One that cannot be
    resumed (another configuration, other data or features, another CLIP) is REFUSED with
    ``helpers.checkpoint.CheckpointError`` saying why, and the folder is left exactly as it was (nothing is
    written before that check). ``force=True`` replaces such a run with a fresh one in the same folder, like
    ``run --force``; copy the folder first (or pass another ``out_dir``) to keep the old run.
    """
    from helpers.log import logger
    from helpers.pipeline import open_run, train_data

    out = Path(out_dir) if out_dir is not None else run_dir(config)
    trainer, resumed = open_run(config, prepared, semantic, out, resume=True, force=force, log=log)
    log = log or logger.info
    if resumed and trainer.epoch >= config.epochs:
        log(f"reusing the finished run in {out} ({trainer.epoch} epochs); delete {out / 'models'} to retrain")
        return trainer
    if resumed:
        log(f"resuming from epoch {trainer.epoch} of {config.epochs}")
    train, val = train_data(prepared)
    trainer.fit(train, val, progress=progress)
    log(f"trained {config.epochs} epochs; checkpoint {out / 'models'}")
    return trainer


def compare_lambda_clip(config: Config, prepared: Any, semantic: Any, values: Sequence[float] = (0.0, 5.0),
                        epochs: int | None = None, progress: bool = False, reuse: Any = None) -> dict[float, list[dict]]:
    """Runs on the same data and seed that differ only in ``lambda_clip``; returns each run's history.

    ``reuse``: a trainer (e.g. the main run) whose configuration equals ``config`` except for ``epochs`` and
    whose history covers ``epochs``: its first epochs stand in for the run with its ``lambda_clip`` (training
    is deterministic per epoch, so a fresh run would repeat them exactly) and are not retrained.
    """
    from helpers.pipeline import build_trainer, train_data

    epochs = int(epochs or config.epochs)
    train, val = train_data(prepared)
    out: dict[float, list[dict]] = {}
    for v in values:
        c = dataclasses.replace(config, lambda_clip=float(v), epochs=epochs)
        if reuse is not None and len(reuse.history) >= epochs:
            mine = {k: x for k, x in c.to_dict().items() if k != "epochs"}
            theirs = {k: x for k, x in reuse.config.to_dict().items() if k != "epochs"}
            if mine == theirs:
                out[float(v)] = [dict(r) for r in reuse.history[:epochs]]
                continue
        trainer = build_trainer(c, semantic, None, prepared=prepared)
        out[float(v)] = list(trainer.fit(train, val, progress=progress))
    return out
