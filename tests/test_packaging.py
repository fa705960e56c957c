"""The package installs and imports, and the two dependency lists agree."""
import importlib
import pkgutil
import re
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


def test_core_modules_are_present():
    # The modules the design names (docs/DESIGN.md#module-map); the import test above covers whatever else exists.
    for name in ("config", "stats", "cli"):
        assert name in MODULES


def test_runtime_needs_no_test_tools():
    """pytest, nbval and JupyterLab are for developing the package, not for using it."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {_split_req(r)[0] for r in deps}
    assert not names & {"pytest", "nbval", "jupyterlab", "seaborn"}, names
