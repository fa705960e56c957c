"""Static checks of the notebook series (nbval executes them; these catch what execution does not).

A user relies on: five numbered notebooks that open in JupyterLab with the python3 kernel, stored without
outputs, a first cell that says what they run on, thin cells that call ``helpers`` names which exist, varying
outputs marked for nbval, and widget callbacks that CI exercises by calling them explicitly.
"""
from __future__ import annotations

import ast
import importlib
import re

import nbformat
import pytest

from helpers.notebook_runner import NOTEBOOK_DIR, series

EXPECTED = ["01_eeg_exploration.ipynb", "02_preprocessing.ipynb", "03_model.ipynb", "04_training.ipynb",
            "05_evaluation.ipynb"]
IGNORE = "# NBVAL_IGNORE_OUTPUT"
# Module aliases used in the notebooks -> the helpers module they stand for.
ALIASES = {"ns": "helpers.notebook_support", "widgets": "helpers.widgets", "features": "helpers.features",
           "viz": "helpers.viz"}


def _load(name: str):
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _python(source: str) -> str:
    """Cell source without IPython magics, as plain Python."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def test_the_series_is_the_five_numbered_notebooks_in_order():
    assert [p.name for p in series()] == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_valid_nbformat_python3_kernel_and_outputs_stripped(name):
    nb = _load(name)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(_code_cells(nb)):
        assert cell.outputs == [], f"{name} code cell {i} has stored outputs: strip them before committing"
        assert cell.execution_count is None, f"{name} code cell {i} has an execution count"


@pytest.mark.parametrize("name", EXPECTED)
def test_first_code_cell_reports_profile_data_and_clip(name):
    nb = _load(name)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {name[:2]} ")
    first = _code_cells(nb)[0].source
    assert "ns.notebook_config()" in first, "the profile must come from EEG2IMG_PROFILE"
    assert re.search(r"^ns\.status\(config", first, re.M), "the first cell must end by showing ns.status(...)"
    assert first.strip().splitlines()[-1].startswith("ns.status("), "the status must be the cell's displayed value"
    assert IGNORE in first


@pytest.mark.parametrize("name", EXPECTED)
def test_code_cells_are_thin_parse_and_mark_varying_output(name):
    for i, cell in enumerate(_code_cells(_load(name))):
        tree = ast.parse(_python(cell.source))  # a syntax error fails here, before any execution
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
        assert not defs, f"{name} cell {i} defines {defs[0].name}: logic belongs in helpers"
        assert cell.source.startswith(IGNORE), f"{name} cell {i}: output varies (timings, figures), mark it"


def _helpers_references(nb) -> set[tuple[str, str]]:
    """(module, attribute) for every ``alias.attr`` and ``from helpers.x import y`` in the code cells."""
    refs = set()
    for cell in _code_cells(nb):
        tree = ast.parse(_python(cell.source))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("helpers"):
                for alias in node.names:
                    refs.add((node.module, alias.name))
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ALIASES:
                refs.add((ALIASES[node.value.id], node.attr))
    return refs


@pytest.mark.parametrize("name", EXPECTED)
def test_every_helpers_name_a_notebook_uses_exists(name):
    missing = []
    for module, attr in sorted(_helpers_references(_load(name))):
        mod = importlib.import_module(module)
        if not hasattr(mod, attr):
            try:  # "from helpers import viz" imports a submodule
                importlib.import_module(f"{module}.{attr}")
            except ImportError:
                missing.append(f"{module}.{attr}")
    assert not missing, f"{name} uses names that helpers does not have: {missing}"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebooks_teach_with_prose_and_keep_their_figures(name):
    nb = _load(name)
    prose = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert len(prose) >= 5 and sum(len(p) for p in prose) > 2000, f"{name} needs prose that explains"
    code = "\n".join(c.source for c in _code_cells(nb))
    assert "ns.keep(" in code or "out / \"figures\"" in code, f"{name} must save its figures under results"


def test_widget_callbacks_are_called_explicitly_in_notebook_04():
    code = "\n".join(c.source for c in _code_cells(_load("04_training.ipynb")))
    for call in ("widgets.make_controls(", "widgets.connect(", "widgets.on_train_clicked(", "widgets.read_values(",
                 "ns.compare_lambda_clip(", "values=(0.0, 5.0)", "ns.train_or_resume("):
        assert call in code, f"notebook 04 must call {call}"


def test_honesty_points_are_made():
    text = {n: "\n".join(c.source for c in _load(n).cells) for n in EXPECTED}
    assert "12-22 %" in text["01_eeg_exploration.ipynb"] and "10 distinct stimulus" in text["01_eeg_exploration.ipynb"]
    assert "two years" in text["01_eeg_exploration.ipynb"] and "ns.plot_electrode_layout(" in text["01_eeg_exploration.ipynb"]
    assert "ns.leakage_demo(" in text["02_preprocessing.ipynb"] and 'label_mode="session_blocks"' in text["02_preprocessing.ipynb"]
    assert "prepared.baseline" in text["02_preprocessing.ipynb"]
    assert "cosine_matrix(" in text["03_model.ipynb"] and "ns.semantic_gradient_step(" in text["03_model.ipynb"]
    assert "evaluate_trainer(" in text["05_evaluation.ipynb"] and "signature_grid.png" in text["05_evaluation.ipynb"]
    assert "linear baseline" in text["05_evaluation.ipynb"] and "chance" in text["05_evaluation.ipynb"]
