"""What the notebooks rely on from helpers.notebook_support: the status banner, the plots, the steps."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from helpers import notebook_support as ns
from helpers.config import make_config


# ------------------------------------------------------------------------------------------- status

def test_status_is_loud_about_synthetic_data_and_untrained_clip(tmp_path, monkeypatch):
    monkeypatch.setenv("EEG2IMG_DATA_DIR", str(tmp_path))
    st = ns.status(make_config("ci"))
    text, page = str(st), st._repr_html_()
    assert "profile : ci" in text and "SYNTHETIC DATA" in text and "UNTRAINED CLIP" in text
    assert "#b00000" in page and "SYNTHETIC DATA" in page and "UNTRAINED CLIP" in page


def test_status_with_the_real_file_and_a_trained_clip_has_no_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("EEG2IMG_DATA_DIR", str(tmp_path))
    (tmp_path / "EP1.01.txt").write_text("")
    clip = types.SimpleNamespace(trained=True, describe=lambda: "CLIP ViT-B-32 (pretrained:laion2b_s34b_b79k)")
    st = ns.status(make_config("cpu"), clip=clip)
    assert st.warnings == [] and "!!" not in str(st)
    assert "real:" in st.data and "pretrained:laion2b" in st.clip and "#2e7d32" in st._repr_html_()


def test_status_reports_a_loaded_dataset_and_its_oracle():
    loaded = types.SimpleNamespace(synthetic=True, source="dataset/synthetic_600.txt", oracle_top1=0.61)
    st = ns.status(make_config("ci"), loaded=loaded)
    assert st.synthetic and "SYNTHETIC" in st.data and "oracle top-1 0.61" in st.data


def test_expected_clip_without_loading(tmp_path, monkeypatch):
    assert ns.expected_clip(make_config("ci")) == (
        "eeg2img-tiny, untrained (random weights, chosen by the profile)", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: auto falls back to digit-CLIP (trained)
    desc, trained = ns.expected_clip(make_config("cpu"))
    assert trained is True and "falls back to digit-CLIP" in desc and "UNTRAINED" not in desc
    desc, trained = ns.expected_clip(make_config("ci", {"clip_model": "digit-clip", "clip_weights": "auto"}))
    assert trained is True and desc.startswith("digit-CLIP")
    desc, trained = ns.expected_clip(make_config("cpu", {"clip_weights": str(tmp_path / "missing.pt")}))
    assert trained is False and "checkpoint" in desc


def test_run_dir_keeps_ci_runs_away_from_the_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("EEG2IMG_RESULTS_DIR", str(tmp_path))
    assert ns.run_dir(make_config("cpu")) == tmp_path
    assert ns.run_dir(make_config("ci")) == tmp_path / "ci"
    from matplotlib.figure import Figure

    path = ns.save_figure(Figure(), make_config("ci"), "x")
    assert path == tmp_path / "ci" / "figures" / "x.png" and path.stat().st_size > 0
    with pytest.raises(ValueError):
        ns.save_figure(Figure(), make_config("ci"), "../escape")


# ------------------------------------------------------------------------------------------- notebook 01

@pytest.mark.parametrize("real_file", [False, True])
def test_load_data_asks_for_the_same_events_as_the_pipeline(tmp_path, monkeypatch, real_file):
    """Notebook 01 must show the data the pipeline uses: the real file capped by max_events (0 = all), else the
    synthetic default of the profile's size."""
    from helpers import datasets, pipeline

    monkeypatch.setenv("EEG2IMG_DATA_DIR", str(tmp_path))
    if real_file:
        (tmp_path / datasets.REAL_FILE).write_text("")
    assert datasets.real_data_path() == (tmp_path / datasets.REAL_FILE if real_file else None)
    calls = []

    class Stop(Exception):
        pass

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        raise Stop

    monkeypatch.setattr(datasets, "load_dataset", record)
    for max_events in (0, 123):
        config = make_config("ci", {"max_events": max_events})
        for call in (ns.load_data, pipeline.prepare_data):
            with pytest.raises(Stop):
                call(config)
        mine, theirs = calls[-2:]
        assert mine == theirs
        n_events = mine[1]["n_events"]
        assert n_events == ((max_events or None) if real_file else config.synthetic_events)


def test_raw_lines_skip_blanks_and_shorten_the_data_column(tmp_path):
    p = tmp_path / "f.txt"
    values = ",".join(str(v) for v in range(10))
    p.write_text(f"\n1\t1\tEP\tAF3\t6\t10\t{values}\r\n2\t1\tEP\tF7\t6\t10\t{values}\n3\t1\tEP\tF3\t6\t10\t{values}\n")
    lines = ns.raw_lines(p, n=2, max_values=3)
    assert lines == ["1\t1\tEP\tAF3\t6\t10\t0,1,2,... (7 more)", "2\t1\tEP\tF7\t6\t10\t0,1,2,... (7 more)"]
    assert ns.format_raw_lines(lines).splitlines()[0].startswith("[id]\t[event]")


def test_code_counts_table_names_the_random_code():
    report = types.SimpleNamespace(to_dict=lambda: {"codes": {"-1": 3, "0": 5, "1": 2}})
    df = ns.code_counts_table(report)
    assert df["code"].tolist() == [-1, 0, 1] and df["meaning"][0] == "random (no digit)"
    assert df["events"].sum() == 10 and df["share"].tolist() == [0.3, 0.5, 0.2]


def _events(n=4, c=14, t=256, sfreq=128.0, f0=10.0):
    time = np.arange(t) / sfreq
    sig = 4000 + 20 * np.sin(2 * np.pi * f0 * time)[None, None, :] + np.zeros((n, c, t))
    return types.SimpleNamespace(signals=sig.astype(np.float32), sizes=np.full(n, t), codes=np.arange(n),
                                 event_ids=np.arange(n) + 100, channels=tuple(ns.EPOC_POSITIONS), sfreq=sfreq)


def test_power_spectra_peak_at_the_frequency_of_a_sine():
    f, psd = ns.power_spectra(_events(f0=10.0), n_events=3)
    assert psd.shape == (14, len(f))
    assert np.all(np.abs(f[psd.argmax(axis=1)] - 10.0) <= 1.0)
    fig = ns.plot_power_spectra(f, psd, list(ns.EPOC_POSITIONS))
    assert len(fig.axes[0].get_lines()) == 14


def test_plot_event_stacks_every_channel():
    fig = ns.plot_event(_events(), 1)
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 14 and [t.get_text() for t in ax.get_yticklabels()] == list(ns.EPOC_POSITIONS)
    assert "event 101: code 1" in ax.get_title()


def test_electrode_layout_is_left_right_symmetric_and_inside_the_head():
    pos = ns.EPOC_POSITIONS
    assert len(pos) == 14
    for name, (x, y) in pos.items():
        assert x * x + y * y <= 1.001
        if name[-1].isdigit():
            num = int("".join(ch for ch in name if ch.isdigit()))
            mirror = name.rstrip("0123456789") + str(num + 1 if num % 2 else num - 1)
            assert pos[mirror] == pytest.approx((-x, y)), name
            assert (x < 0) == (num % 2 == 1), f"{name}: odd numbers are on the left"
    fig = ns.plot_electrode_layout()
    names = {t.get_text() for t in fig.axes[0].texts}
    assert set(pos) <= names
    with pytest.raises(ValueError, match="Cz"):
        ns.plot_electrode_layout(["AF3", "Cz"])


# ------------------------------------------------------------------------------------------- notebook 02

def test_plot_signal_steps_uses_each_steps_own_rate():
    steps = {"raw": np.zeros((14, 256)), "decimated": np.zeros((14, 128))}
    fig = ns.plot_signal_steps(steps, {"raw": 128.0, "decimated": 64.0}, channel=3, channel_name="FC5")
    ends = [ax.get_lines()[0].get_xdata()[-1] for ax in fig.axes]
    assert ends == pytest.approx([255 / 128, 127 / 64])


def test_leakage_table_flags_the_leaky_splits():
    from helpers.stats import accuracy_report

    acc = accuracy_report(np.eye(10)[np.arange(50) % 10], np.arange(50) % 10)
    rows = [ns.LeakageRow("random rows (prototype)", "channel traces", 10, 5, acc, False),
            ns.LeakageRow("contiguous blocks (ours)", "events", 10, 5, acc, True)]
    df = ns.leakage_table(rows)
    assert df["honest?"].tolist() == ["NO (leaks)", "yes"] and df["top-1"].tolist() == [1.0, 1.0]


# ------------------------------------------------------------------------------------------- notebook 03

def test_semantic_gradient_step_reaches_encoder_and_generator_scales_with_lambda_and_never_touches_clip():
    from helpers.models import build_models
    from helpers.pipeline import load_semantic

    config = make_config("ci", {"feature_dim": 16})
    semantic = load_semantic(config)
    enc, gen, _ = build_models(config)
    before = [p.detach().clone() for p in [*enc.parameters(), *gen.parameters()]]
    x = torch.randn(4, 16)
    emb = semantic.embeddings.embeddings
    off, one, five = (ns.semantic_gradient_step(enc, gen, semantic.clip, emb, x, [0, 1, 2, 3], lr=1e-3,
                                                lambda_clip=v) for v in (0.0, 1.0, 5.0))
    for out in (one, five):
        assert out["generator_grad_norm"] > 0 and out["encoder_grad_norm"] > 0
        assert out["semantic_loss_before"] != out["semantic_loss_after"]
    for out in (off, one, five):
        assert out["clip_params_with_grad"] == 0 and out["clip_weights_unchanged"] is True
    # The gradient is proportional to lambda_clip and exactly 0 at 0 (then nothing moves).
    assert off["generator_grad_norm"] == 0 and off["encoder_grad_norm"] == 0
    assert off["semantic_loss_after"] == off["semantic_loss_before"]
    assert five["generator_grad_norm"] == pytest.approx(5 * one["generator_grad_norm"], rel=1e-4)
    assert five["encoder_grad_norm"] == pytest.approx(5 * one["encoder_grad_norm"], rel=1e-4)
    # Every call works on copies, so each starts from the same point and the caller's networks stay as they were.
    assert one["semantic_loss_before"] == five["semantic_loss_before"]
    assert all(torch.equal(a, p) for a, p in zip(before, [*enc.parameters(), *gen.parameters()]))
    with pytest.raises(ValueError, match="lambda_clip"):
        ns.semantic_gradient_step(enc, gen, semantic.clip, emb, x, [0, 1, 2, 3], lambda_clip=-1.0)


def test_cosine_matrix_plot_is_labelled_untrained():
    fig = ns.plot_cosine_matrix(np.eye(10) * 0.5 + 0.5, trained=False)
    assert "UNTRAINED CLIP" in fig.axes[0].get_title()
    assert "UNTRAINED" not in ns.plot_cosine_matrix(np.eye(10) * 0.5 + 0.5, trained=True).axes[0].get_title()


# ------------------------------------------------------------------------------------------- notebooks 04-05

def test_metrics_table_puts_each_number_next_to_chance():
    m = {"n_test_events": 100, "semantic_top1": 0.35, "semantic_top1_ci95": [0.26, 0.45],
         "semantic_top1_p_value": 0.001, "semantic_top3": 0.6, "judge_top1": 0.12,
         "judge_top3": 0.4, "linear_baseline_top1": 0.4, "chance_top1": 0.1, "chance_top3_upper95": 0.38,
         "chance_top1_upper95": 0.16, "clip_semantic": False, "oracle_top1": 0.6}
    df = ns.metrics_table(m).set_index("metric")
    assert df.loc["semantic_top1", "verdict"] == "above chance"
    assert df.loc["semantic_top1", "95% CI"] == "0.260-0.450" and df.loc["semantic_top1", "permutation p"] == 0.001
    assert df.loc["judge_top1", "verdict"] == "within chance"
    assert df.loc["judge_top3", "verdict"] == "above chance" and df.loc["semantic_top3", "verdict"] == "above chance"
    assert df.loc["linear_baseline_top1", "value"] == 0.4 and df.loc["oracle_top1", "value"] == 0.6
    assert df.loc["oracle_top1", "verdict"] == "" and "ssim_mean" not in df.index
    assert df.loc["judge_top1", "compare with"] == "chance 0.10 (upper 95% 0.160)"
    assert "oracle_top1" not in ns.metrics_table({k: v for k, v in m.items() if k != "oracle_top1"})["metric"].tolist()


def _tiny_run_inputs():
    from helpers.features import FeatureConfig, FeaturePipeline, FeatureSet
    from helpers.pipeline import load_semantic

    config = make_config("ci", {"feature_dim": 8, "epochs": 1, "batch_size": 8})
    rng = np.random.default_rng(0)
    signals = rng.normal(size=(40, 14, 256)).astype(np.float32)
    pipe = FeaturePipeline(FeatureConfig(feature_dim=8, reject_ptp_uv=None)).fit((signals, np.full(40, 256)),
                                                                                  np.arange(30))

    def fs(n):
        return FeatureSet(X=rng.normal(size=(n, 8)).astype(np.float32), indices=np.arange(n),
                          rejected=np.zeros(n, bool), ptp_uv=np.ones(n, np.float32), labels=np.arange(n) % 10)

    prepared = types.SimpleNamespace(features=pipe, train=fs(24), val=fs(10), test=fs(10),
                                     loaded=types.SimpleNamespace(source="a.txt"),
                                     digits=types.SimpleNamespace(event_ids=np.arange(44)),
                                     split=types.SimpleNamespace(train=np.arange(24)))
    return config, prepared, load_semantic(config)


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_train_or_resume_reuses_a_finished_run_and_refuses_another_unless_forced(tmp_path):
    from helpers.checkpoint import CheckpointError

    config, prepared, semantic = _tiny_run_inputs()
    logs = []
    first = ns.train_or_resume(config, prepared, semantic, tmp_path, log=logs.append)
    assert first.epoch == 1 and (tmp_path / "models" / "last.pt").is_file()
    assert (tmp_path / "models" / "features.pt").is_file() and (tmp_path / "config.json").is_file()
    again = ns.train_or_resume(config, prepared, semantic, tmp_path, log=logs.append)
    assert again.epoch == 1 and again.history == first.history and "reusing" in logs[-1]
    # Another configuration in the same folder: refused BEFORE config.json or features.pt are touched.
    other_config = make_config("ci", {"feature_dim": 8, "epochs": 1, "batch_size": 8, "lambda_clip": 0.0})
    before = _snapshot(tmp_path)
    with pytest.raises(CheckpointError, match="lambda_clip.*force=True") as e:
        ns.train_or_resume(other_config, prepared, semantic, tmp_path, log=logs.append)
    assert "\n" not in str(e.value) and _snapshot(tmp_path) == before
    # The same configuration on other data: refused by the recorded identity, folder unchanged.
    moved = types.SimpleNamespace(**{**vars(prepared), "loaded": types.SimpleNamespace(source="b.txt")})
    with pytest.raises(CheckpointError, match="identity.data_source"):
        ns.train_or_resume(config, moved, semantic, tmp_path, log=logs.append)
    assert _snapshot(tmp_path) == before
    # force=True: said loudly, replaced by a fresh run, which is then reused like any finished run.
    logs.clear()
    fresh = ns.train_or_resume(config, moved, semantic, tmp_path, log=logs.append, force=True)
    assert fresh.epoch == 1 and "WILL BE REPLACED" in logs[0] and "trained 1 epochs" in logs[-1]
    assert ns.train_or_resume(config, moved, semantic, tmp_path, log=logs.append) and "reusing" in logs[-1]


def test_train_or_resume_falls_back_to_the_previous_checkpoint_and_says_so(tmp_path):
    from helpers.checkpoint import CheckpointError, load_checkpoint

    config, prepared, semantic = _tiny_run_inputs()
    two = make_config("ci", {"feature_dim": 8, "epochs": 2, "batch_size": 8})
    ns.train_or_resume(two, prepared, semantic, tmp_path, log=print)
    last, prev = tmp_path / "models" / "last.pt", tmp_path / "models" / "previous.pt"
    assert load_checkpoint(prev)["epoch"] == 1 and load_checkpoint(last)["epoch"] == 2
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in last.pt
    last.write_bytes(bytes(data))
    logs = []
    trainer = ns.train_or_resume(two, prepared, semantic, tmp_path, log=logs.append)
    warning = next(m for m in logs if "falling back" in m)
    assert str(last) in warning and str(prev) in warning and "checksum" in warning
    assert "resuming from epoch 1 of 2" in logs and trainer.epoch == 2
    assert load_checkpoint(last)["epoch"] == 2 and load_checkpoint(prev)["epoch"] == 1  # retrained epoch 2
    # Neither checkpoint good: refused, and the folder is left as it was.
    last.write_bytes(b"oops")
    prev.write_bytes(prev.read_bytes()[:-1])
    before = _snapshot(tmp_path)
    with pytest.raises(CheckpointError, match="no good checkpoint"):
        ns.train_or_resume(two, prepared, semantic, tmp_path, log=logs.append)
    assert _snapshot(tmp_path) == before


def test_compare_lambda_clip_reuses_a_matching_run_and_trains_the_other(monkeypatch):
    from helpers import pipeline

    config = make_config("ci", {"epochs": 3})
    built = []

    class FakeTrainer:
        def __init__(self, c):
            self.config = c
            built.append(c)

        def fit(self, train, val, progress=False):
            return [{"epoch": e + 1, "lambda": self.config.lambda_clip} for e in range(self.config.epochs)]

    monkeypatch.setattr(pipeline, "build_trainer", lambda c, s, o=None, prepared=None: FakeTrainer(c))
    monkeypatch.setattr(pipeline, "train_data", lambda p: (None, None))
    main = types.SimpleNamespace(config=config, history=[{"epoch": e, "main": True} for e in (1, 2, 3)])
    got = ns.compare_lambda_clip(config, None, None, values=(0.0, 5.0), epochs=2, reuse=main)
    assert got[5.0] == [{"epoch": 1, "main": True}, {"epoch": 2, "main": True}]
    assert got[0.0] == [{"epoch": 1, "lambda": 0.0}, {"epoch": 2, "lambda": 0.0}]
    assert [(c.lambda_clip, c.epochs) for c in built] == [(0.0, 2)]
    # A main run made with other settings is not reused.
    other = types.SimpleNamespace(config=make_config("ci", {"seed": 1}), history=main.history)
    ns.compare_lambda_clip(config, None, None, values=(5.0,), epochs=2, reuse=other)
    assert [(c.lambda_clip, c.seed) for c in built[1:]] == [(5.0, 0)]
