"""The repo carries its own design document, and what points at it holds.

* every reference ``docs/DESIGN.md#<anchor>`` in the README files, notebooks, helpers, tests and benchmarks names a
  heading that exists in docs/DESIGN.md (anchors made as GitHub makes them);
* nothing points at the old, external design brief (a bare upper-case design name, "section <number>", or a
  path into a shared folder outside the repo);
* the ``metrics.json`` keys that docs/DESIGN.md lists are the ones ``helpers.evaluate.evaluation_metrics`` and
  ``helpers.pipeline.evaluate_trainer`` write, and the original contract keys are all among them;
* every ``helpers.config.Config`` field, every profile and every CLI command and ``run`` option is named there.
"""
from __future__ import annotations

import ast
import itertools
import json
import re
import unicodedata
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "DESIGN.md"
THIS = Path(__file__).resolve()

# Files that still carry references to the old external brief because another change is editing them right
# now. They are skipped only by the check for old-style references (their new-style anchors are still checked).
# Remove once updated: each entry, as soon as its old references are replaced by docs/DESIGN.md#<anchor>.
EXCLUDED: set[str] = set()

REFERENCE = re.compile(r"docs/DESIGN\.md#([\w-]+)")
# Old-style references: the brief's upper-case name not followed by ".md" ("DESIGN section 8", "see DESIGN 7"),
# a design file named without its docs/ folder, "section <n>" of a design, or a path into a shared folder.
OLD_STYLE = {
    "upper-case design name without docs/DESIGN.md": re.compile(r"\bDESIGN\b(?!\.md)"),
    "DESIGN.md outside docs/": re.compile(r"(?<!docs/)\bDESIGN\.md"),
    "design section number": re.compile(r"design\W{0,3}\s*sections?\s*\d", re.IGNORECASE),
    "path into a shared folder": re.compile(r"\.\./shared|shared/DESIGN"),
}

# The metrics.json keys of the original contract: docs/DESIGN.md must list exactly these as "contract".
ORIGINAL_CONTRACT = {"n_test_events", "semantic_top1", "semantic_top3", "judge_top1", "judge_top3",
                     "linear_baseline_top1", "chance_top1", "chance_top1_upper95", "clip_semantic", "oracle_top1",
                     # the deep EEG references, a contract since they were added (helpers.eeg_references)
                     "eegnet_top1", "shallow_fbcsp_top1"}
SCORERS = ("semantic", "judge", "linear_baseline", "majority_class", "oracle_label_semantic", "oracle_label_judge",
           "eegnet", "shallow_fbcsp")


# ------------------------------------------------------------------------------------------------ parsing

def github_anchor(heading: str, seen: dict[str, int]) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped (letters, digits, spaces, ``-`` and
    ``_`` kept), spaces to hyphens; a repeated anchor gets ``-1``, ``-2``, ..."""
    text = heading.strip().lower()
    text = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    anchor = text.replace(" ", "-")
    n = seen.get(anchor, 0)
    seen[anchor] = n + 1
    return anchor if n == 0 else f"{anchor}-{n}"


def design_text() -> str:
    assert DESIGN.is_file(), "docs/DESIGN.md is missing: the repo must carry its own design document"
    return DESIGN.read_text(encoding="utf-8")


def headings(text: str) -> list[tuple[int, str, str]]:
    """(level, title, anchor) of every Markdown heading outside code fences, in order."""
    out, seen, fenced = [], {}, False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m and not fenced:
            out.append((len(m.group(1)), m.group(2), github_anchor(m.group(2), seen)))
    return out


def section(text: str, title: str) -> str:
    """The text under the heading ``title`` up to the next heading of the same or a higher level."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(#{1,6})\s+(.*?)\s*$", line)
        if m and m.group(2) == title:
            level = len(m.group(1))
            body = []
            for nxt in lines[i + 1:]:
                h = re.match(r"^(#{1,6})\s", nxt)
                if h and len(h.group(1)) <= level:
                    break
                body.append(nxt)
            return "\n".join(body)
    raise AssertionError(f"docs/DESIGN.md has no heading {title!r}")


def scanned_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "dataset" / "README.md", ROOT / "results" / "README.md",
             ROOT / "benchmarks" / "README.md", DESIGN]
    for folder in ("helpers", "tests", "benchmarks"):
        files += sorted((ROOT / folder).glob("*.py"))
    files += sorted((ROOT / "notebooks").glob("*.ipynb"))
    return [f for f in files if f.is_file()]


def readable_text(path: Path) -> str:
    """The text a reader sees: a notebook's cell sources (markdown and code), any other file as it is."""
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text(encoding="utf-8"))
        return "\n".join("".join(c.get("source", "")) for c in nb.get("cells", []))
    return path.read_text(encoding="utf-8")


def rel(path: Path) -> str:
    return path.resolve().relative_to(ROOT).as_posix()


# ------------------------------------------------------------------------------------------------ references

def test_design_headings_have_unique_anchors():
    anchors = [a for _, _, a in headings(design_text())]
    assert anchors, "docs/DESIGN.md has no headings"
    assert len(anchors) == len(set(anchors)), f"two headings share an anchor: {sorted(anchors)}"
    for expected in ("data-flow", "module-map", "data-format", "features", "splits", "clip-and-the-semantic-loss",
                     "training", "evaluation-and-metrics", "metricsjson", "configuration", "profiles",
                     "command-line", "notebooks", "decisions-and-their-evidence", "environment"):
        assert expected in anchors, f"docs/DESIGN.md lost its section #{expected} (others point at it)"


def test_every_design_reference_points_to_an_existing_heading():
    anchors = {a for _, _, a in headings(design_text())}
    broken = []
    for path in scanned_files():
        text = readable_text(path)
        refs = REFERENCE.findall(text)
        if path == DESIGN:  # in-document links: ](#anchor)
            refs += re.findall(r"\]\(#([\w-]+)\)", text)
        broken += [f"{rel(path)}: #{a}" for a in refs if a not in anchors]
    assert not broken, "references to headings that docs/DESIGN.md does not have:\n" + "\n".join(broken)


def test_references_are_used():
    n = sum(len(REFERENCE.findall(readable_text(p))) for p in scanned_files() if p != DESIGN)
    assert n >= 10, f"only {n} references to docs/DESIGN.md found; the scan is probably broken"


def test_no_reference_to_the_old_external_design():
    found = []
    for path in scanned_files():
        if rel(path) in EXCLUDED or path.resolve() == THIS:  # this file spells the patterns out
            continue
        for number, line in enumerate(readable_text(path).splitlines(), 1):
            for what, pattern in OLD_STYLE.items():
                if pattern.search(line):
                    found.append(f"{rel(path)}:{number}: {what}: {line.strip()[:100]}")
    assert not found, ("old-style design references; use docs/DESIGN.md#<anchor> instead:\n" + "\n".join(found))


def test_excluded_files_exist():
    # An entry for a file that no longer exists would hide nothing and should go (see EXCLUDED).
    assert all((ROOT / f).is_file() for f in EXCLUDED), [f for f in EXCLUDED if not (ROOT / f).is_file()]


# ------------------------------------------------------------------------------------------------ metrics.json

def documented_metric_keys() -> dict[str, str]:
    """key -> status ("contract", "added", "pipeline") from the table under "### metrics.json"."""
    out: dict[str, str] = {}
    for line in section(design_text(), "metrics.json").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        status = cells[1]
        for key in re.findall(r"`([^`]+)`", cells[0]):
            names = [key]
            if "<scorer>" in key or "<k>" in key:
                names = [key.replace("<scorer>", s).replace("<k>", str(k))
                         for s, k in itertools.product(SCORERS, (1, 3))]
            for name in names:
                out.setdefault(name, status)  # a contract row wins over the template rows below it
    assert out, "no metrics.json key table found in docs/DESIGN.md"
    return out


@pytest.fixture(scope="module")
def full_metrics():
    from helpers.evaluate import evaluation_metrics
    from helpers.stimuli import render_digits, to_tensor

    labels = np.repeat(np.arange(10), 3)
    one_hot = np.eye(10)[labels]
    wrong = np.eye(10)[(labels + 1) % 10]
    stimuli = render_digits(size=32)
    return evaluation_metrics(
        labels, one_hot, wrong, one_hot, clip_semantic=False, synthetic=True, oracle_top1=0.7,
        generated=to_tensor(stimuli)[labels], stimuli=stimuli, oracle_label_semantic_scores=one_hot,
        oracle_label_judge_scores=one_hot, validation={"labels": labels[:20], "judge_scores": one_hot[:20],
                                                       "semantic_scores": one_hot[:20]},
        n_permutations=20, train_labels=np.repeat(np.arange(10), 5),
        reference_scores={"eegnet": one_hot, "shallow_fbcsp": wrong})


def test_metrics_contract_keys_are_the_original_ones():
    contract = {k for k, status in documented_metric_keys().items() if status == "contract"}
    assert contract == ORIGINAL_CONTRACT


def test_documented_metric_keys_are_what_evaluation_metrics_writes(full_metrics):
    documented = {k for k, status in documented_metric_keys().items() if status != "pipeline"}
    missing = sorted(documented - set(full_metrics))
    undocumented = sorted(set(full_metrics) - documented)
    assert not missing, f"docs/DESIGN.md lists metrics.json keys that evaluation_metrics does not write: {missing}"
    assert not undocumented, f"evaluation_metrics writes keys that docs/DESIGN.md does not list: {undocumented}"
    assert set(full_metrics["scorers"]) == set(SCORERS)


def _pipeline_extra() -> ast.Dict:
    tree = ast.parse((ROOT / "helpers" / "pipeline.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "evaluation_metrics":
            for kw in node.keywords:
                if kw.arg == "extra" and isinstance(kw.value, ast.Dict):
                    return kw.value
    raise AssertionError("helpers/pipeline.py no longer calls evaluation_metrics(..., extra={...})")


def test_documented_pipeline_keys_are_what_the_pipeline_adds():
    extra = _pipeline_extra()
    written = {k.value for k in extra.keys if isinstance(k, ast.Constant)}
    documented = {k for k, status in documented_metric_keys().items() if status == "pipeline"}
    assert written == documented, (f"pipeline adds {sorted(written - documented)} undocumented; "
                                   f"docs/DESIGN.md lists {sorted(documented - written)} that it does not add")
    split = next(v for k, v in zip(extra.keys, extra.values) if getattr(k, "value", None) == "split")
    split_row = next(line for line in section(design_text(), "metrics.json").splitlines()
                     if line.startswith("| `split` |"))
    for key in (k.value for k in split.keys):
        assert f"`{key}`" in split_row, f"metrics.json split.{key} is not described in docs/DESIGN.md"


# ------------------------------------------------------------------------------------------------ config and CLI

def test_every_config_field_is_documented():
    from helpers.config import Config

    text = design_text()
    missing = [f.name for f in fields(Config) if f"`{f.name}`" not in text]
    assert not missing, f"Config fields not described in docs/DESIGN.md: {missing}"


def test_module_map_matches_the_files():
    """A reader finds each concern in one place: the module map's first column names every helpers module, and only
    modules that exist."""
    import pkgutil

    import helpers

    body = section(design_text(), "Module map")
    named = {name for row in body.splitlines() if row.startswith("| `")
             for name in re.findall(r"`([a-z_0-9]+)`", row.split("|")[1])}
    modules = {m.name for m in pkgutil.iter_modules(helpers.__path__) if m.name != "__main__"}
    assert not modules - named, f"helpers modules missing from docs/DESIGN.md#module-map: {sorted(modules - named)}"
    assert not named - modules, f"docs/DESIGN.md#module-map names modules that do not exist: {sorted(named - modules)}"


def test_every_profile_is_documented():
    from helpers.config import PROFILES

    body = section(design_text(), "Profiles")
    assert all(f"| `{name}` |" in body for name in PROFILES), sorted(PROFILES)


def test_every_cli_command_and_run_option_is_documented():
    from helpers.cli import HANDLERS, build_parser

    body = section(design_text(), "Command line")
    for command in HANDLERS:
        assert f"`{command}" in body, f"CLI command {command!r} is not in docs/DESIGN.md#command-line"
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    options = [opt for action in run._actions for opt in action.option_strings if opt.startswith("--")]
    missing = [opt for opt in options if opt != "--help" and opt not in body]
    assert not missing, f"run options not in docs/DESIGN.md#command-line: {missing}"
