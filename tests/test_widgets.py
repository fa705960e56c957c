"""The loss-weight explorer of notebook 04: slider checking, controls, figures and what a click does."""
from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch

from helpers import widgets
from helpers.config import make_config


# ------------------------------------------------------------------------------------------- values

def test_weights_from_sliders_returns_checked_floats_and_int_epochs():
    got = widgets.weights_from_sliders({"lambda_adv": 1, "lambda_rec": 10.0, "lambda_kl": 0.5,
                                        "lambda_clip": 5, "epochs": 3.0})
    # lambda_cls may be left out: it is then 0 (the seed's four-term loss).
    assert got == {"lambda_adv": 1.0, "lambda_rec": 10.0, "lambda_kl": 0.5, "lambda_clip": 5.0, "lambda_cls": 0.0,
                   "epochs": 3}
    assert isinstance(got["epochs"], int) and all(isinstance(got[k], float) for k in widgets.WEIGHT_NAMES)


@pytest.mark.parametrize("bad, match", [
    ({"lambda_adv": -1}, "lambda_adv"),
    ({"lambda_clip": float("nan")}, "lambda_clip"),
    ({"lambda_adv": 0, "lambda_rec": 0, "lambda_kl": 0, "lambda_clip": 0}, "all loss weights are 0"),
    ({"epochs": 2.5}, "whole number"),
    ({"epochs": 0}, "between"),
    ({"epochs": 1000}, "between"),
    ({"epochs": "many"}, "whole number"),
    ({"lambda_klx": 1.0}, "unknown slider"),
])
def test_weights_from_sliders_rejects_bad_values(bad, match):
    values = {"lambda_adv": 1.0, "lambda_rec": 10.0, "lambda_kl": 1.0, "lambda_clip": 5.0, "epochs": 1, **bad}
    with pytest.raises(ValueError, match=match):
        widgets.weights_from_sliders(values)


def test_weights_from_sliders_needs_every_weight():
    with pytest.raises(KeyError, match="lambda_kl"):
        widgets.weights_from_sliders({"lambda_adv": 1.0, "lambda_rec": 1.0, "lambda_clip": 1.0})


def test_controls_start_at_the_config_and_read_back():
    config = make_config("ci", {"lambda_clip": 2.5, "lambda_rec": 20.0})
    c = widgets.make_controls(config, epochs=2)
    assert c["lambda_clip"].value == 2.5 and c["lambda_rec"].value == 20.0 and c["epochs"].value == 2
    assert widgets.read_values(c) == {"lambda_adv": 1.0, "lambda_rec": 20.0, "lambda_kl": 1.0,
                                      "lambda_clip": 2.5, "lambda_cls": 1.0, "epochs": 2}
    c["lambda_clip"].value = 0.0
    assert widgets.read_values(c)["lambda_clip"] == 0.0
    for key in ("button", "status", "loss_out", "images_out", "box"):
        assert key in c


def test_design_defaults_fit_the_slider_ranges_and_out_of_range_config_is_refused():
    widgets.make_controls(make_config("cpu"))  # 1 / 10 / 1 / 5 must be settable
    with pytest.raises(ValueError, match="lambda_rec"):
        widgets.make_controls(make_config("ci", {"lambda_rec": 500.0}))


# ------------------------------------------------------------------------------------------- figures

def _history(n=3, adv_nan=False):
    rows = []
    for e in range(1, n + 1):
        rows.append({"epoch": e, "train_total": 10.0 / e, "train_adv": math.nan if adv_nan else 0.7,
                     "train_rec": 0.5, "train_kl": 0.1, "train_clip": 0.4, "train_cls": 2.0 / e, "train_disc": 0.6,
                     "val_clip": 0.4 - 0.01 * e, "val_semantic_top1": 0.1 * e, "val_label_head_top1": 0.3})
    return rows


def test_loss_curves_draw_every_logged_term_and_skip_terms_left_out():
    fig = widgets.render_loss_curves(_history(adv_nan=True))
    ax_loss, ax_val = fig.axes[:2]
    labels = [line.get_label() for line in ax_loss.get_lines()]
    assert "adversarial" not in labels  # weight 0 -> logged as NaN -> not drawn
    assert {"total (weighted)", "L1 reconstruction", "KL", "semantic 1 - cos", "label cross-entropy",
            "discriminator"} <= set(labels)
    total = [line for line in ax_loss.get_lines() if line.get_label() == "total (weighted)"][0]
    np.testing.assert_allclose(total.get_ydata(), [10.0, 5.0, 10 / 3])
    val_labels = [line.get_label() for line in ax_val.get_lines()]
    assert {"val semantic top-1", "val label-head top-1", "chance top-1 (0.1)"} <= set(val_labels)


def test_loss_curves_after_one_epoch_show_one_whole_epoch_tick():
    fig = widgets.render_loss_curves(_history(n=1))
    fig.canvas.draw()
    for ax in fig.axes[:2]:  # the sliders' default is one epoch: no 0.945 ... 1.05 axis
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1"]


def test_loss_curves_of_an_empty_history_say_so():
    fig = widgets.render_loss_curves([])
    assert any("no epochs yet" in t.get_text() for t in fig.axes[0].texts)


def test_generated_grid_maps_minus_one_to_black_and_titles_the_digits():
    imgs = torch.full((3, 3, 8, 8), -1.0)
    imgs[1] = 1.0
    fig = widgets.render_generated_grid(imgs, [4, 7, 9], banner="UNTRAINED CLIP")
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == ["EEG of 4", "EEG of 7", "EEG of 9"]
    assert shown[0].images[0].get_array().max() == 0 and shown[1].images[0].get_array().min() == 255
    assert "UNTRAINED CLIP" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="labels"):
        widgets.render_generated_grid(imgs, [1, 2])


def test_example_indices_take_the_first_event_of_each_digit():
    labels = np.array([3, 1, 3, 0, 1, 2, 9])
    assert widgets.example_indices(labels).tolist() == [3, 1, 5, 0, 6]


# ------------------------------------------------------------------------------------------- training

class FakeOutput:
    """Records what the callback shows (an ipywidgets.Output only captures inside a running kernel)."""

    def __init__(self):
        self.cleared = 0
        self.entered = 0

    def clear_output(self, wait=False):
        self.cleared += 1

    def __enter__(self):
        self.entered += 1
        return self

    def __exit__(self, *exc):
        return False


class FakeLabel:
    value = ""


@pytest.fixture(scope="module")
def session_parts():
    from helpers.pipeline import load_semantic
    from helpers.train import TrainData

    config = make_config("ci", {"feature_dim": 16, "batch_size": 8})
    semantic = load_semantic(config)
    rng = np.random.default_rng(0)
    y = np.arange(40) % 10
    train = TrainData.from_numpy(rng.normal(size=(40, 16)) + y[:, None] * 0.1, y)
    val = TrainData.from_numpy(rng.normal(size=(20, 16)), np.arange(20) % 10)
    return config, train, val, semantic


def test_a_click_trains_the_chosen_epochs_and_redraws_in_place(session_parts):
    config, train, val, semantic = session_parts
    session = widgets.TrainingSession(config, train, val, semantic)
    loss_out, images_out, status = FakeOutput(), FakeOutput(), FakeLabel()
    values = {"lambda_adv": 1.0, "lambda_rec": 10.0, "lambda_kl": 1.0, "lambda_clip": 5.0, "epochs": 2}
    res = widgets.on_train_clicked(session, values, loss_out, images_out, status)
    assert [r["epoch"] for r in res["history"]] == [1, 2]
    assert loss_out.cleared == images_out.cleared == 2  # redrawn after each epoch, in place
    assert "epoch 2/2" in status.value
    shown = [ax for ax in res["images_figure"].axes if ax.images]
    assert len(shown) == 10  # one generated image per digit
    assert "UNTRAINED CLIP" in res["images_figure"]._suptitle.get_text()  # ci's CLIP is untrained
    # Same weights again: the same trainer continues.
    res2 = widgets.on_train_clicked(session, {**values, "epochs": 1})
    assert res2["trainer"] is res["trainer"] and [r["epoch"] for r in res2["history"]] == [1, 2, 3]


def test_status_says_when_the_adversarial_term_is_still_off(session_parts):
    config, train, val, semantic = session_parts
    session = widgets.TrainingSession(dataclasses.replace(config, adv_warmup_epochs=2, epochs=6), train, val, semantic)
    status = FakeLabel()
    values = {"lambda_adv": 1.0, "lambda_rec": 10.0, "lambda_kl": 1.0, "lambda_clip": 5.0, "epochs": 1}
    res = widgets.on_train_clicked(session, values, FakeOutput(), FakeOutput(), status)
    assert "adversarial term off until epoch 3" in status.value
    assert "adv from epoch 3" in res["loss_figure"]._suptitle.get_text()
    widgets.on_train_clicked(session, values, FakeOutput(), FakeOutput(), status)
    assert "epoch 2/2" in status.value and "adversarial" not in status.value


def test_changed_weights_start_a_fresh_trainer_with_those_weights(session_parts):
    config, train, val, semantic = session_parts
    session = widgets.TrainingSession(config, train, val, semantic)
    base = {"lambda_adv": 1.0, "lambda_rec": 10.0, "lambda_kl": 1.0, "lambda_clip": 5.0, "epochs": 1}
    first = widgets.on_train_clicked(session, base)["trainer"]
    res = widgets.on_train_clicked(session, {**base, "lambda_clip": 0.0})
    assert res["trainer"] is not first
    assert res["trainer"].config.lambda_clip == 0.0 and res["trainer"].config.seed == config.seed
    assert [r["epoch"] for r in res["history"]] == [1]
    assert math.isnan(res["history"][0]["train_clip"])  # left out of training, logged as NaN
    assert config.lambda_clip == 5.0  # the session's base config is not mutated


def test_sliders_set_to_clip_alone_send_the_whole_batch_through_clip(session_parts):
    """The notebook's explorer keeps clip_batch 4 for quick clicks; with L1 and the GAN at 0 that would leave the other
    samples without any image gradient, so the explorer drops it then (as make_config does), and only then."""
    config, train, val, semantic = session_parts
    session = widgets.TrainingSession(dataclasses.replace(config, clip_batch=4), train, val, semantic)
    with_l1 = {"lambda_adv": 1.0, "lambda_rec": 10.0, "lambda_kl": 1.0, "lambda_clip": 5.0, "lambda_cls": 0.0}
    assert session.trainer_for(with_l1).config.clip_batch == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the trainer's partial-clip_batch warning must not fire
        alone = session.trainer_for({**with_l1, "lambda_adv": 0.0, "lambda_rec": 0.0})
    assert alone.config.clip_batch == 0 and session.config.clip_batch == 4


def test_connected_button_reports_bad_weights_instead_of_failing_silently(session_parts):
    config, train, val, semantic = session_parts
    controls = widgets.make_controls(config)
    session = widgets.TrainingSession(config, train, val, semantic)
    calls = []
    handler = widgets.connect(controls, session, callback=lambda *a, **kw: calls.append(a) or {"ok": True})
    assert handler() == {"ok": True} and calls[0][0] is session and calls[0][1]["lambda_clip"] == 5.0
    for name in widgets.WEIGHT_NAMES:
        controls[name].value = 0.0
    assert handler() is None
    assert controls["status"].value.startswith("error:") and "all loss weights are 0" in controls["status"].value
    assert controls["button"].disabled is False


def test_weighted_curves_show_what_a_slider_changes_and_chance_follows_the_class_mix():
    weights = {"lambda_adv": 1.0, "lambda_rec": 10.0, "lambda_kl": 1.0, "lambda_clip": 5.0, "lambda_cls": 0.0}
    fig = widgets.render_loss_curves(_history(), weights=weights, chance=0.23)
    ax_loss, ax_val = fig.axes[:2]
    lines = {line.get_label(): line for line in ax_loss.get_lines()}
    np.testing.assert_allclose(lines["10 x L1 reconstruction"].get_ydata(), [5.0, 5.0, 5.0])
    np.testing.assert_allclose(lines["5 x semantic 1 - cos"].get_ydata(), [2.0, 2.0, 2.0])
    assert "discriminator" in lines and not any("label cross-entropy" in k for k in lines)  # weight 0: 0 x, not drawn
    assert "chance top-1 (0.23, class mix)" in [line.get_label() for line in ax_val.get_lines()]


class _Judge:
    """A stand-in referee: says digit ``answer`` for every image (or the truth, when ``truth`` is given)."""

    def __init__(self, answer=0, truth=None):
        self.answer, self.truth = answer, truth

    def predict(self, images):
        n = len(images)
        return np.asarray(self.truth[:n]) if self.truth is not None else np.full(n, self.answer)


def test_run_table_keeps_every_run_and_earlier_runs_are_overlaid(session_parts):
    config, train, val, semantic = session_parts
    truth = val.y.numpy()
    session = widgets.TrainingSession(config, train, val, semantic, judge=_Judge(truth=truth))
    base = {"lambda_adv": 1.0, "lambda_rec": 10.0, "lambda_kl": 1.0, "lambda_clip": 5.0, "lambda_cls": 1.0}
    runs_out = FakeOutput()
    widgets.on_train_clicked(session, {**base, "epochs": 1}, runs_out=runs_out)
    widgets.on_train_clicked(session, {**base, "epochs": 1})  # same weights: run 1 continues
    res = widgets.on_train_clicked(session, {**base, "lambda_clip": 0.0, "epochs": 1}, runs_out=runs_out)
    table = res["run_table"]
    assert list(table.index) == [1, 2] and table.loc[1, "epochs"] == 2 and table.loc[2, "epochs"] == 1
    assert table.loc[1, "clip"] == 5.0 and table.loc[2, "clip"] == 0.0 and table.loc[2, "clip %"] == 0.0
    shares = table[[c for c in table.columns if c.endswith(" %")]]
    np.testing.assert_allclose(shares.sum(axis=1), 100.0, atol=0.3)  # the weighted terms make up the total
    assert (table["judge top-1"] == 1.0).all()  # the stand-in judge answers the truth
    assert runs_out.cleared == 2  # the table is redrawn after every epoch of the clicks that show it
    ax_loss, ax_val = res["loss_figure"].axes[:2]
    assert any(line.get_label().startswith("run 1: val judge top-1") for line in ax_val.get_lines())
    assert any(line.get_label() == "run 1: total" for line in ax_loss.get_lines())
    assert "val_judge_top1" in res["run"].rows[-1]


def test_judge_top1_is_scored_against_the_validation_labels(session_parts):
    config, train, val, semantic = session_parts
    session = widgets.TrainingSession(config, train, val, semantic, judge=_Judge(answer=3))
    status = FakeLabel()
    res = widgets.on_train_clicked(session, {"lambda_rec": 10.0, "epochs": 1, "lambda_adv": 0.0, "lambda_kl": 0.0,
                                             "lambda_clip": 0.0, "lambda_cls": 0.0}, status=status)
    from helpers.train import VAL_MAX_EVENTS

    expected = float((val.y.numpy()[:VAL_MAX_EVENTS] == 3).mean())  # the events Trainer.validate scores
    assert res["run"].rows[-1]["val_judge_top1"] == pytest.approx(expected)
    assert f"val judge top-1 {expected:.2f}" in status.value


def test_a_click_trains_on_at_most_max_train_events(session_parts):
    config, train, val, semantic = session_parts
    session = widgets.TrainingSession(config, train, val, semantic, max_train_events=16)
    assert len(session.train_subset().y) == 16
    assert torch.equal(session.train_subset().x, train.x[:16])
    assert widgets.TrainingSession(config, train, val, semantic, max_train_events=None).train_subset() is train
