"""Widget callbacks for notebook 04: plain, unit-tested functions; the widgets only call them.

The loss-weight explorer in notebook 04 is five sliders (``lambda_adv``, ``lambda_rec``, ``lambda_kl``,
``lambda_clip``, ``lambda_cls``), an epochs slider and a button. Everything the button does lives here:

    controls = make_controls(config)               # dict of ipywidgets (sliders, button, two Output areas)
    session = TrainingSession(config, train, val, semantic)
    connect(controls, session)                     # button -> on_train_clicked(session, values, ...)
    on_train_clicked(session, read_values(controls), controls["loss_out"], controls["images_out"])

``on_train_clicked`` trains N more epochs with a Trainer built for the chosen weights (a new one, same seed,
whenever the weights change), and after every epoch redraws the loss curves and a grid of generated digits
in the given Output widgets, in place. It also returns the figures, so tests and CI (nbval, no browser)
exercise exactly what a click does. The loss curves are :func:`helpers.curves.render_loss_curves` (re-exported
here), drawn by the same function as the run's ``training_curves.png``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from helpers.config import UNTRAINED_CLIP_NOTE, clip_is_the_only_image_term
from helpers.curves import CURVE_TERMS, VAL_TERMS, render_loss_curves  # noqa: F401 - re-exported (notebook 04, tests)
from helpers.figure import new_figure
from helpers.losses import WEIGHT_NAMES, loss_weights

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Slider ranges: (min, max, step). The seed's defaults (1 / 10 / 1 / 5, label term 0 or 1; docs/DESIGN.md#configuration)
# sit inside.
SLIDER_RANGES: dict[str, tuple[float, float, float]] = {
    "lambda_adv": (0.0, 5.0, 0.1),
    "lambda_rec": (0.0, 50.0, 0.5),
    "lambda_kl": (0.0, 5.0, 0.1),
    "lambda_clip": (0.0, 20.0, 0.5),
    "lambda_cls": (0.0, 5.0, 0.1),
}
EPOCHS_RANGE = (1, 20)
# A click trains on at most this many training events per epoch, so that it answers in well under a minute on a
# laptop CPU (the main run of section 2 uses them all). TrainingSession(max_train_events=None) lifts the cap.
EXPLORE_TRAIN_EVENTS = 512
EARLIER_RUNS_DRAWN = 4  # earlier runs overlaid on the curves (thin grey), most recent first


# ------------------------------------------------------------------------------------------- values

def weights_from_sliders(values: Mapping[str, Any]) -> dict[str, float | int]:
    """Check the slider values and return ``{lambda_adv, lambda_rec, lambda_kl, lambda_clip, lambda_cls, epochs}``.

    Each weight must be a finite number >= 0 and not all may be 0 (helpers.losses.loss_weights); epochs
    must be a whole number in EPOCHS_RANGE. Unknown keys are an error (a typo must not be ignored).
    """
    if not isinstance(values, Mapping):
        raise TypeError(f"values must be a mapping of slider names to numbers, got {type(values).__name__}")
    known = set(WEIGHT_NAMES) | {"epochs"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown slider value(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
    out: dict[str, float | int] = dict(loss_weights(values))
    raw = values.get("epochs", 1)
    try:
        epochs_f = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"epochs must be a whole number, got {raw!r}") from None
    if not math.isfinite(epochs_f) or epochs_f != int(epochs_f):
        raise ValueError(f"epochs must be a whole number, got {raw!r}")
    lo, hi = EPOCHS_RANGE
    if not lo <= int(epochs_f) <= hi:
        raise ValueError(f"epochs must be between {lo} and {hi}, got {int(epochs_f)}")
    out["epochs"] = int(epochs_f)
    return out


def make_controls(config, epochs: int = 1) -> dict:
    """The widgets of the loss-weight explorer, set to ``config``'s weights.

    Keys: the five ``lambda_*`` FloatSliders, ``epochs`` (IntSlider), ``button``, ``status`` (Label),
    ``loss_out`` and ``images_out`` (Output areas the callback draws into), ``runs_out`` (the table of every run
    of this session), ``box`` (the laid-out whole).
    """
    import ipywidgets as w

    controls: dict[str, Any] = {}
    style = {"description_width": "90px"}
    for name in WEIGHT_NAMES:
        lo, hi, step = SLIDER_RANGES[name]
        value = float(getattr(config, name))
        if not lo <= value <= hi:
            raise ValueError(f"config.{name}={value} lies outside the slider range {lo}..{hi}")
        controls[name] = w.FloatSlider(value=value, min=lo, max=hi, step=step, description=name,
                                       continuous_update=False, style=style, readout_format=".1f")
    lo, hi = EPOCHS_RANGE
    controls["epochs"] = w.IntSlider(value=int(min(max(epochs, lo), hi)), min=lo, max=hi, step=1,
                                     description="epochs", continuous_update=False, style=style)
    controls["button"] = w.Button(description="Train", button_style="primary", icon="play",
                                  tooltip="train this many more epochs with these weights")
    controls["status"] = w.Label(value="not trained yet")
    controls["loss_out"] = w.Output()
    controls["images_out"] = w.Output()
    controls["runs_out"] = w.Output()
    sliders = w.VBox([controls[n] for n in (*WEIGHT_NAMES, "epochs")])
    controls["box"] = w.VBox([w.HBox([sliders, w.VBox([controls["button"], controls["status"]])]),
                              w.HBox([controls["loss_out"], controls["images_out"]]), controls["runs_out"]])
    return controls


def read_values(controls: Mapping[str, Any]) -> dict[str, float | int]:
    """The current slider values, checked (``weights_from_sliders``)."""
    return weights_from_sliders({name: controls[name].value for name in (*WEIGHT_NAMES, "epochs")})


# ------------------------------------------------------------------------------------------- figures

def _to_uint8(images) -> np.ndarray:
    """[n, 3, S, S] float in [-1, 1] (tensor or array) or uint8 [n, S, S, 3] -> uint8 [n, S, S, 3]."""
    try:
        import torch

        if torch.is_tensor(images):
            images = images.detach().cpu().float().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    a = np.asarray(images)
    if a.ndim != 4:
        raise ValueError(f"images must be [n, 3, S, S] or [n, S, S, 3], got shape {a.shape}")
    if a.dtype == np.uint8:
        return a if a.shape[-1] == 3 else a.transpose(0, 2, 3, 1)
    if a.shape[1] != 3:
        raise ValueError(f"float images must be [n, 3, S, S] in [-1, 1], got shape {a.shape}")
    return np.clip(np.rint((a.transpose(0, 2, 3, 1) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def render_generated_grid(images, labels, title: str = "", banner: str = "", columns: int = 10,
                          label_format: str = "EEG of {}") -> "Figure":
    """A grid of generated images, each titled with the digit its EEG event was recorded for."""
    imgs = _to_uint8(images)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(imgs):
        raise ValueError(f"{len(imgs)} images but {len(labels)} labels")
    n = len(imgs)
    cols = max(1, min(columns, n))
    rows = max(1, math.ceil(n / cols))
    fig = new_figure(1.0 * cols + 0.4, 1.15 * rows + (0.5 if (title or banner) else 0.1))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, img, lab in zip(axes, imgs, labels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(label_format.format(int(lab)), fontsize=8)
    text = "\n".join(t for t in (title, banner) if t)
    if text:
        fig.suptitle(text, fontsize=8, color="red" if banner else "black")
    return fig


def example_indices(labels, per_class: int = 1, n_classes: int = 10) -> np.ndarray:
    """The first ``per_class`` events of each digit (in order), so a grid shows every digit once."""
    labels = np.asarray(labels).reshape(-1)
    picked = [np.flatnonzero(labels == c)[:per_class] for c in range(n_classes)]
    return np.concatenate(picked).astype(np.int64) if picked else np.zeros(0, np.int64)


# ------------------------------------------------------------------------------------------- training

@dataclass
class RunRecord:
    """One run of the explorer: its weights and, per epoch, the trainer's row plus the judge's top-1."""
    number: int
    weights: dict
    rows: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"run {self.number}"


@dataclass
class TrainingSession:
    """What the button trains: the data, the frozen CLIP setup, the trainer of the current weights, and every run.

    ``train`` / ``val`` are helpers.train.TrainData; ``semantic`` is helpers.pipeline.SemanticSetup; ``judge``
    (optional, helpers.judge) scores the generated validation images after every epoch, independently of CLIP.
    A click trains on the first ``max_train_events`` training events (None: all). Short exploratory runs keep no
    checkpoints (``out_dir`` None) unless one is given.
    """
    config: Any
    train: Any
    val: Any
    semantic: Any
    out_dir: Any = None
    judge: Any = None
    max_train_events: int | None = EXPLORE_TRAIN_EVENTS
    trainer: Any = None
    weights: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    runs: list = field(default_factory=list)

    def trainer_for(self, weights: Mapping[str, float]):
        """The trainer for these weights: the current one if they are unchanged, else a new one (same seed) and a
        new entry in ``runs``."""
        from helpers.pipeline import build_trainer

        weights = {k: float(weights[k]) for k in WEIGHT_NAMES}
        if self.trainer is None or weights != self.weights:
            config = dataclasses.replace(self.config, **weights)
            if clip_is_the_only_image_term(config) and config.clip_batch:
                # make_config's clip_batch rule: with CLIP alone, the samples a partial clip_batch skips get no image gradient
                # at all (judge at chance), so sliders set to CLIP alone would show a failure of the saving, not of CLIP.
                config = dataclasses.replace(config, clip_batch=0)
            self.trainer = build_trainer(config, self.semantic, self.out_dir)
            self.weights = weights
            self.runs.append(RunRecord(len(self.runs) + 1, dict(weights)))
        return self.trainer

    def train_subset(self):
        n = self.max_train_events
        if n is None or len(self.train) <= n:
            return self.train
        return dataclasses.replace(self.train, x=self.train.x[:n], y=self.train.y[:n])


def run_table(runs: Sequence[RunRecord]):
    """One row per run, as of its last epoch: weights, epochs, the weighted total and each term's share of it (in %),
    and the validation top-1 numbers (judge, CLIP's ranking, label head). A pandas DataFrame."""
    import pandas as pd

    out = []
    for run in runs:
        last = run.rows[-1] if run.rows else {}
        row: dict[str, Any] = {"run": run.number}
        row.update({k.removeprefix("lambda_"): v for k, v in run.weights.items()})
        row["epochs"] = int(last.get("epoch", 0))
        total = last.get("train_total", np.nan)
        row["total"] = round(total, 3)
        for name in WEIGHT_NAMES:
            term = name.removeprefix("lambda_")
            value = run.weights[name] * last.get(f"train_{term}", np.nan)
            if not np.isfinite(value):  # the term was off (weight 0, or adversarial during the warm-up): none of it
                value = 0.0
            row[f"{term} %"] = round(100 * value / total, 1) if total and np.isfinite(total) else np.nan
        for key, name in (("val_judge_top1", "judge top-1"), ("val_semantic_top1", "semantic top-1"),
                          ("val_label_head_top1", "label-head top-1")):
            row[name] = round(last.get(key, np.nan), 3)
        row["seconds"] = round(run.seconds, 1)
        out.append(row)
    return pd.DataFrame(out).set_index("run") if out else pd.DataFrame()


def _show(out, fig) -> None:
    """Replace what ``out`` (an ipywidgets.Output, or None) shows with ``fig`` (a figure or a table)."""
    if out is None:
        return
    from IPython.display import display

    out.clear_output(wait=True)
    with out:
        display(fig)


def on_train_clicked(session: TrainingSession, values: Mapping[str, Any], loss_out=None, images_out=None,
                     status=None, progress: bool = False, n_per_class: int = 1, runs_out=None) -> dict:
    """What the Train button does: train ``values['epochs']`` more epochs with ``values``' weights.

    After every epoch the loss curves (earlier runs overlaid), the generated digits of the first validation event
    of each digit and the run table are redrawn in ``loss_out`` / ``images_out`` / ``runs_out`` (Output widgets,
    or None), and the judge scores the generated validation images. Returns
    ``{"history", "loss_figure", "images_figure", "run_table", "trainer", "weights", "run"}``.
    """
    import time

    checked = weights_from_sliders(values)
    weights = {k: checked[k] for k in WEIGHT_NAMES}
    trainer = session.trainer_for(weights)
    run = session.runs[-1]
    target = trainer.epoch + int(checked["epochs"])
    idx = example_indices(session.val.y.numpy(), per_class=n_per_class)
    x_show, y_show = session.val.x[idx], session.val.y[idx].numpy()
    banner = ""
    if not getattr(session.semantic.clip, "trained", True):
        banner = UNTRAINED_CLIP_NOTE
    label = ", ".join(f"{k.replace('lambda_', '')} {v:g}" for k, v in weights.items())
    warmup = trainer.config.adv_warmup_epochs
    if warmup and weights["lambda_adv"] > 0:  # the figures must not credit epochs 1..warmup to the adv weight
        label += f"; adv from epoch {warmup + 1}"
    figs: dict = {}
    from helpers.stats import chance_level
    from helpers.train import VAL_MAX_EVENTS

    scored = session.val.y.numpy()[:VAL_MAX_EVENTS]  # the events Trainer.validate scores, and their class mix
    chance = chance_level(scored, 1, 10) if len(scored) else None
    earlier = [(r.label, r.rows) for r in reversed(session.runs[:-1]) if r.rows][:EARLIER_RUNS_DRAWN]
    t_start = time.perf_counter()
    seconds_before = run.seconds

    def redraw(tr, row=None):
        if row is not None:
            row = dict(row)
            if session.judge is not None:  # the independent referee, on the images Trainer.validate scored
                images = tr.generate(session.val.x[:VAL_MAX_EVENTS])
                row["val_judge_top1"] = float((session.judge.predict(images) == scored).mean())
            run.rows.append(row)
        run.seconds = seconds_before + time.perf_counter() - t_start
        figs["loss_figure"] = render_loss_curves(run.rows, title=f"run {run.number}, weights: {label}",
                                                 weights=weights, chance=chance, earlier=earlier)
        figs["images_figure"] = render_generated_grid(tr.generate(x_show), y_show,
                                                      title=f"run {run.number} after epoch {tr.epoch} ({label})",
                                                      banner=banner)
        figs["run_table"] = run_table(session.runs)
        _show(loss_out, figs["loss_figure"])
        _show(images_out, figs["images_figure"])
        _show(runs_out, figs["run_table"])
        if status is not None and row is not None:
            top1 = row.get("val_semantic_top1", float("nan"))
            status.value = (f"run {run.number}, epoch {tr.epoch}/{target}: total {row.get('train_total', float('nan')):.3f}"
                            + (f", val judge top-1 {row['val_judge_top1']:.2f}" if "val_judge_top1" in row else "")
                            + f", val semantic top-1 {top1:.2f}"
                            + (f", label head {row['val_label_head_top1']:.2f}" if "val_label_head_top1" in row else "")
                            + (f"; adversarial term off until epoch {tr.config.adv_warmup_epochs + 1} (warm-up)"
                               if tr.epoch < tr.config.adv_warmup_epochs else ""))

    if status is not None:
        status.value = f"run {run.number}: training epochs {trainer.epoch + 1}-{target} ..."
    trainer.fit(session.train_subset(), session.val, epochs=target, progress=progress, on_epoch_end=redraw)
    if "loss_figure" not in figs:  # nothing to train (cannot happen with epochs >= 1, kept for safety)
        redraw(trainer)
    session.figures = figs
    return {"history": list(trainer.history), "trainer": trainer, "weights": weights, "run": run, **figs}


def connect(controls: Mapping[str, Any], session: TrainingSession,
            callback: Callable[..., dict] = on_train_clicked) -> Callable:
    """Make the button run ``callback(session, read_values(controls), loss_out, images_out, status, runs_out=...)``.

    Errors (e.g. all weights 0) are shown in the status label and the loss area instead of vanishing
    into the browser console. Returns the click handler (tests call it directly).
    """
    def handler(_button=None):
        button = controls["button"]
        button.disabled = True
        try:
            return callback(session, read_values(controls), controls["loss_out"], controls["images_out"],
                            controls["status"], runs_out=controls.get("runs_out"))
        except Exception as e:  # shown to the user; re-raised nowhere since a widget callback has no caller
            controls["status"].value = f"error: {e}"
            with controls["loss_out"]:
                print(f"error: {e}")
            return None
        finally:
            button.disabled = False

    controls["button"].on_click(handler)
    return handler
