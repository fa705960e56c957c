"""Figures: the right panels, the right border colours, the banners, files on disk."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba
from PIL import Image

from helpers import stats, viz
from helpers.stimuli import render_digits, to_tensor

EP_CHANNELS = ["AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def example():
    rng = np.random.default_rng(0)
    labels = np.array([3, 1, 4])
    stim = render_digits(size=32)
    gen = to_tensor(stim)[labels] * 0.8
    top3 = np.array([[3, 8, 5], [7, 1, 4], [0, 6, 8]])  # correct at rank 1, rank 2, nowhere
    eeg = rng.standard_normal((3, 14, 256)).cumsum(-1)
    return eeg, labels, stim, gen, top3


def _axes(fig, label):
    return [ax for ax in fig.axes if ax.get_label() == label]


def _border(ax):
    return {sp.get_edgecolor() for sp in ax.spines.values()}


def _checks(ax):
    return [t for t in ax.texts if t.get_gid() == "check"]


def test_signature_grid_panels_borders_and_check_marks(tmp_path, example):
    eeg, labels, stim, gen, top3 = example
    fig, path = viz.signature_grid(eeg, 128.0, labels, stim, gen, top3, clip_trained=True, synthetic=False,
                                   channel_names=EP_CHANNELS, out_dir=tmp_path)
    assert path == tmp_path / "signature_grid.png" and path.stat().st_size > 10_000
    for label in ("eeg", "true", "generated", "rank1", "rank2", "rank3"):
        assert len(_axes(fig, label)) == 3, label
    assert all(_border(ax) == {to_rgba(viz.TRUE_COLOR)} for ax in _axes(fig, "true"))
    for r, colour in enumerate((viz.GOLD, viz.SILVER, viz.BRONZE), start=1):
        assert all(_border(ax) == {to_rgba(colour)} for ax in _axes(fig, f"rank{r}"))
    # The true panel shows the true stimulus; rank panels show the predicted ones.
    np.testing.assert_array_equal(_axes(fig, "true")[2].images[0].get_array(), stim[4])
    np.testing.assert_array_equal(_axes(fig, "rank1")[1].images[0].get_array(), stim[7])
    # Check marks: row 0 on rank 1, row 1 on rank 2, row 2 none.
    marks = [[len(_checks(_axes(fig, f"rank{r}")[i])) for r in (1, 2, 3)] for i in range(3)]
    assert marks == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert _checks(_axes(fig, "rank1")[0])[0].get_text() == viz.CHECK_MARK
    # Visual channels are drawn when the montage is named.
    assert [t.get_text() for t in _axes(fig, "eeg")[0].get_yticklabels()] == ["O1", "O2", "P7", "P8"]
    assert viz.banner_texts(fig) == []
    w, h = fig.get_size_inches()
    assert 6 < w < 14 and 3 < h < 14


def test_signature_grid_pixels_show_the_borders(tmp_path, example):
    # The saved PNG itself has the green frame left of the gold one in the first row.
    eeg, labels, stim, gen, top3 = example
    fig, path = viz.signature_grid(eeg, 128.0, labels, stim, gen, top3, clip_trained=True, synthetic=False,
                                   out_dir=tmp_path)
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    dpi = img.shape[1] / fig.get_size_inches()[0]
    for label, colour in (("true", viz.TRUE_COLOR), ("rank1", viz.GOLD)):
        x0, y0, x1, y1 = _axes(fig, label)[0].get_window_extent().extents * dpi / fig.dpi
        x, y = int(x0), int(img.shape[0] - (y0 + y1) / 2)  # left edge, vertical middle
        want = (np.array(to_rgba(colour)[:3]) * 255).round()
        patch = img[y, max(0, x - 2):x + 3]
        assert np.abs(patch - want).sum(axis=1).min() < 12, (label, patch)


def test_signature_grid_limits_rows_and_validates(tmp_path, example):
    eeg, labels, stim, gen, top3 = example
    fig, _ = viz.signature_grid(eeg, 128.0, labels, stim, gen, top3, clip_trained=True, synthetic=False,
                                max_rows=2, n_total=343, out_dir=tmp_path)
    assert len(_axes(fig, "generated")) == 2
    assert any(t.get_text().endswith("the first 2 of 343 test events") for t in fig.texts)
    with pytest.raises(ValueError, match="same examples"):
        viz.signature_grid(eeg, 128.0, labels[:2], stim, gen, top3, clip_trained=True, synthetic=False,
                           out_dir=tmp_path)
    with pytest.raises(ValueError, match="stimuli"):
        viz.signature_grid(eeg, 128.0, labels, stim[:9], gen, top3, clip_trained=True, synthetic=False,
                           out_dir=tmp_path)
    with pytest.raises(TypeError):
        viz.signature_grid(eeg, 128.0, labels, stim, gen, top3, out_dir=tmp_path)  # must say how it was made


def test_banners_on_every_figure(tmp_path, example):
    eeg, labels, stim, gen, top3 = example
    kw = dict(clip_trained=False, synthetic=True, out_dir=tmp_path)
    acc = stats.accuracy_report(np.eye(10)[[1, 2, 3, 3]], np.array([1, 2, 3, 4]))
    figs = [
        viz.signature_grid(eeg, 128.0, labels, stim, gen, top3, **kw),
        viz.training_curves([{"epoch": 1, "total": 2.0, "val_total": 2.5}, {"epoch": 2, "total": 1.0}], **kw),
        viz.confusion_matrix_figure(np.eye(10, dtype=int), **kw),
        viz.accuracy_bars({"model": acc}, **kw),
        viz.prediction_histogram_figure(np.arange(10), **kw),
    ]
    for fig, path in figs:
        assert viz.banner_texts(fig) == [viz.UNTRAINED_TEXT, viz.SYNTHETIC_TEXT]
        assert path.exists() and path.parent == tmp_path
        # Banners fit inside the figure (not clipped at the sides) and sit above every axes.
        renderer = fig.canvas.get_renderer()
        lowest_banner = min(t.get_window_extent(renderer).y0 for t in fig.texts if t.get_gid() == "banner")
        for t in fig.texts:
            if t.get_gid() == "banner":
                box = t.get_window_extent(renderer)
                assert box.x0 >= 0 and box.x1 <= fig.bbox.x1
        assert all(ax.get_window_extent(renderer).y1 < lowest_banner for ax in fig.axes if ax.get_visible())


@pytest.mark.parametrize("clip_trained,synthetic,expected", [
    (True, False, []),
    (False, False, [viz.UNTRAINED_TEXT]),
    (True, True, [viz.SYNTHETIC_TEXT]),
])
def test_banner_choice(tmp_path, clip_trained, synthetic, expected):
    fig, _ = viz.prediction_histogram_figure(np.arange(10), clip_trained=clip_trained, synthetic=synthetic,
                                             out_dir=tmp_path)
    assert viz.banner_texts(fig) == expected


def test_banner_flags_must_be_booleans(tmp_path):
    with pytest.raises(TypeError, match="True or False"):
        viz.prediction_histogram_figure(np.arange(10), clip_trained="no", synthetic=False, out_dir=tmp_path)


def test_training_curves_panels(tmp_path):
    history = [{"epoch": e, "adv": 1.0 / e, "rec": 2.0 / e, "kl": 0.1, "clip": 0.5, "total": 3.0 / e, "disc": 0.7,
                "val_rec": 2.5 / e, "val_judge_top1": 0.1 + 0.01 * e, "note": "text is skipped"} for e in (1, 2, 3)]
    fig, path = viz.training_curves(history, clip_trained=True, synthetic=False, out_dir=tmp_path)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["total", "adv", "rec", "kl", "clip", "disc", "validation"]
    rec = [ax for ax in fig.axes if ax.get_title() == "rec"][0]
    assert len(rec.lines) == 2  # train + validation
    np.testing.assert_allclose(rec.lines[1].get_ydata(), [2.5, 1.25, 2.5 / 3])
    val = [ax for ax in fig.axes if ax.get_title() == "validation"][0]
    assert any(line.get_label() == "chance top-1 (uniform)" for line in val.lines)  # no class mix given
    # A Trainer's history: train_ prefixes, seconds, a term left out of the loss (NaN), the label term.
    history = [{"epoch": e, "train_total": 3.0 / e, "train_rec": 2.0 / e, "train_clip": float("nan"),
                "train_cls": 1.0 / e, "train_disc": 0.7, "val_rec": 2.5 / e, "val_semantic_top1": 0.2,
                "val_label_head_top1": 0.3, "seconds": 100.0} for e in (1, 2)]
    fig, _ = viz.training_curves(history, clip_trained=True, synthetic=False, out_dir=tmp_path, chance=(0.25, 0.5))
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["total", "rec", "cls", "disc", "validation"]
    rec = [ax for ax in fig.axes if ax.get_title() == "rec"][0]
    np.testing.assert_allclose(rec.lines[1].get_ydata(), [2.5, 1.25])  # val_rec drawn with train_rec
    val = [ax for ax in fig.axes if ax.get_title() == "validation"][0]
    assert {line.get_label() for line in val.lines} >= {"semantic_top1", "label_head_top1", "chance top-1"}
    assert [line.get_ydata()[0] for line in val.lines if line.get_label() == "chance top-1"] == [0.25]
    # A warm-up: adv and disc start at epoch 3; their panels keep the run's epoch axis, with whole epochs.
    history = [{"epoch": e, "train_total": 3.0 / e, "train_adv": float("nan") if e < 3 else 0.7,
                "train_disc": float("nan") if e < 3 else 0.69} for e in range(1, 7)]
    fig, _ = viz.training_curves(history, clip_trained=True, synthetic=False, out_dir=tmp_path)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert panels["adv"].get_xlim() == panels["total"].get_xlim() and panels["adv"].get_xlim()[0] < 1
    assert all(float(t).is_integer() for t in panels["adv"].get_xticks())
    with pytest.raises(ValueError, match="empty"):
        viz.training_curves([], clip_trained=True, synthetic=False, out_dir=tmp_path)
    with pytest.raises(ValueError, match="epoch"):
        viz.training_curves([{"total": 1.0}], clip_trained=True, synthetic=False, out_dir=tmp_path)


def test_confusion_matrix_figure_counts(tmp_path):
    cm = np.diag(np.arange(1, 11))
    cm[0, 9] = 7
    fig, path = viz.confusion_matrix_figure(cm, "judge", clip_trained=True, synthetic=False, out_dir=tmp_path)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 100 and texts[9] == "7" and texts[0] == "1"
    assert "judge" in ax.get_title() and "n=62" in ax.get_title()
    with pytest.raises(ValueError, match="square"):
        viz.confusion_matrix_figure(np.ones((3, 4)), clip_trained=True, synthetic=False, out_dir=tmp_path)


def test_accuracy_bars_values_errors_and_chance(tmp_path):
    acc = stats.accuracy_report(np.eye(10)[np.r_[np.arange(10), np.zeros(10, int)]], np.r_[np.arange(10), np.arange(10)])
    fig, path = viz.accuracy_bars({"model": acc, "baseline": {"value": 0.2, "ci95_low": 0.1, "ci95_high": 0.3},
                                   "oracle label": 0.9}, clip_trained=True, synthetic=False, out_dir=tmp_path)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches if p.get_width() < 1][:3]
    np.testing.assert_allclose(heights, [acc.value, 0.2, 0.9])
    chance_lines = [line for line in ax.lines if line.get_label().startswith("chance")]
    assert chance_lines and chance_lines[0].get_ydata()[0] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="accuracy"):
        viz.accuracy_bars({"x": {"nope": 1}}, clip_trained=True, synthetic=False, out_dir=tmp_path)


def test_prediction_histogram_one_bar_for_constant_generator(tmp_path):
    counts = np.zeros(10, int)
    counts[3] = 50
    fig, path = viz.prediction_histogram_figure({"judge": counts}, true_counts=[5] * 10, clip_trained=True,
                                                synthetic=False, out_dir=tmp_path)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert sorted(heights)[-1] == 50 and sum(h > 0 for h in heights) == 1
    with pytest.raises(ValueError, match="counts"):
        viz.prediction_histogram_figure({"judge": [-1] * 10}, clip_trained=True, synthetic=False, out_dir=tmp_path)
