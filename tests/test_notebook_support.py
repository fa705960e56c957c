"""What the notebooks rely on from helpers.notebook_support: the status banner, paths, notebook 01's data, notebook
04's main run and comparison, and the names it re-exports (the notebooks call everything as ``ns.<name>``).

The figures and tables it re-exports are tested with their modules: tests/test_explore.py, test_leakage.py,
test_nbfigures.py, test_nbtables.py.
"""
from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

import numpy as np
import pytest

from helpers import notebook_support as ns
from helpers.config import make_config


# ------------------------------------------------------------------------------------------- re-exports

def _defined_names(module) -> list[str]:
    """Public names that ``module``'s own source defines at the top level (functions, classes, constants)."""
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [n for n in names if not n.startswith("_")]


@pytest.mark.parametrize("name", ["explore", "leakage", "nbfigures", "nbtables"])
def test_every_public_name_of_the_notebook_modules_is_reexported_unchanged(name):
    module = importlib.import_module(f"helpers.{name}")
    names = _defined_names(module)
    assert names, f"helpers.{name} defines nothing public"
    missing = [n for n in names if getattr(ns, n, None) is not getattr(module, n)]
    assert not missing, f"notebook_support must re-export helpers.{name}'s {missing} (notebooks call ns.<name>)"


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
    with pytest.warns(UserWarning, match="WILL BE REPLACED"):  # a warning: the user must know
        fresh = ns.train_or_resume(config, moved, semantic, tmp_path, log=logs.append, force=True)
    assert fresh.epoch == 1 and "trained 1 epochs" in logs[-1]
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
