"""The package installs and imports, and the two dependency lists agree."""
import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import helpers

ROOT = Path(__file__).resolve().parents[1]

def _split_req(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    assert m, f"cannot read requirement {req!r}"
    return m.group(1).lower().replace("-", "_"), m.group(2).replace(" ", "")


def _pyproject_requirements() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for reqs in data.get("optional-dependencies", {}).values() for r in reqs]
    return dict(_split_req(r) for r in data["dependencies"] + extras)


def _environment_requirements() -> dict[str, str]:
    # PyYAML is in the test extra (`make test` installs it).
    import yaml

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    reqs = {}
    for dep in env["dependencies"]:
        for item in dep["pip"] if isinstance(dep, dict) else [dep]:
            name, spec = _split_req(item)
            if name not in ("python", "pip"):
                reqs[name] = spec
    return reqs


def test_environment_yml_matches_pyproject():
    py = _pyproject_requirements()
    env = _environment_requirements()
    assert set(py) == set(env), (
        f"only in pyproject.toml: {sorted(set(py) - set(env))}; only in environment.yml: {sorted(set(env) - set(py))}")
    for name in py:
        assert py[name] == env[name], f"{name}: pyproject says {py[name]!r}, environment.yml says {env[name]!r}"


def test_torch_pair_is_pinned_to_the_installable_versions():
    py = _pyproject_requirements()
    assert py["torch"] == "==2.14.1" and py["torchvision"] == "==0.29.1"


MODULES = sorted(m.name for m in pkgutil.iter_modules(helpers.__path__) if m.name != "__main__")


@pytest.mark.parametrize("name", MODULES)
def test_every_helpers_module_imports(name):
    module = importlib.import_module(f"helpers.{name}")
    assert module.__doc__, f"helpers.{name} needs a module docstring saying what it holds"


def test_importing_every_module_writes_nothing(tmp_path):
    """No import-time side effects: importing every helpers module adds no file to the home, temporary or working
    folder (open_clip configs, caches and logs are written on first use, not on import). The libraries helpers
    builds on are imported first: their own first-import caches (matplotlib's font list, torch's) are not ours."""
    home, tmp, cwd = (tmp_path / d for d in ("home", "tmp", "cwd"))
    for d in (home, tmp, cwd):
        d.mkdir()
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(home / ".cache"),
           "MPLCONFIGDIR": str(home / "mpl"), "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1",
           # the project's own folders (dataset/, its cache, results/) pointed inside the watched ones
           "EEG2IMG_DATA_DIR": str(home / "dataset"), "EEG2IMG_CACHE_DIR": str(home / "cache"),
           "EEG2IMG_RESULTS_DIR": str(home / "results")}
    code = (
        "import importlib, json, pathlib, sys\n"
        "for lib in ('numpy', 'scipy.signal', 'pandas', 'sklearn', 'torch', 'torchvision', 'matplotlib.pyplot',\n"
        "            'open_clip', 'mne', 'braindecode', 'tqdm.auto', 'ipywidgets'):\n"
        "    importlib.import_module(lib)\n"
        "def files():\n"
        "    return {str(p) for d in sys.argv[1:] for p in pathlib.Path(d).rglob('*')}\n"
        "before = files()\n"
        + "".join(f"importlib.import_module('helpers.{m}')\n" for m in MODULES)
        + "print(json.dumps(sorted(files() - before)))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(home), str(tmp), str(cwd)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = json.loads(proc.stdout.strip().splitlines()[-1])
    assert written == [], f"importing helpers wrote {written}"


def test_core_modules_are_present():
    # The modules the design names (docs/DESIGN.md#module-map); the import test above covers whatever else exists.
    for name in ("config", "stats", "cli"):
        assert name in MODULES


def test_runtime_needs_no_test_tools():
    """pytest, nbval and JupyterLab are for developing the package, not for using it."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {_split_req(r)[0] for r in deps}
    assert not names & {"pytest", "nbval", "jupyterlab", "seaborn"}, names


def _helpers_imports(name: str) -> set[str]:
    """The helpers modules that ``helpers.<name>`` imports anywhere in its file (top level or inside a function)."""
    import ast

    tree = ast.parse((ROOT / "helpers" / f"{name}.py").read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 or node.module == "helpers":
                targets = [node.module] if node.module and node.level == 1 else [a.name for a in node.names]
            elif node.module and node.module.startswith("helpers."):
                targets = [node.module.split(".")[1]]
            else:
                continue
            out.update(t.split(".")[0] for t in targets)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("helpers."))
    return out & set(MODULES)


def test_no_import_cycle_among_helpers_modules():
    """Data flows one way (docs/DESIGN.md#module-map): no module imports, even lazily, one that imports it back."""
    graph = {name: _helpers_imports(name) - {name} for name in MODULES}
    cycles = []

    def visit(node, path):
        for dep in graph[node]:
            if dep == path[0]:
                cycles.append(" -> ".join([*path, dep]))
            elif dep not in path and dep > path[0]:  # each cycle once, from its smallest module
                visit(dep, [*path, dep])

    for start in MODULES:
        visit(start, [start])
    assert cycles == []
