"""Execute the notebook series top to bottom (what ``make run`` does) and keep executed copies.

The notebooks run in order because each writes what the next one reads (features, checkpoints, metrics)
under ``results/``. A failing notebook stops the series with the notebook's name and the failing cell.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from helpers.config import REPO_ROOT
from helpers.log import logger

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def series(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered notebooks (01_..., 02_...) in order."""
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))


def execute_series(out_dir: str | Path, timeout: int = 3600, folder: Path = NOTEBOOK_DIR) -> list[Path]:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebooks = series(folder)
    if not notebooks:
        raise FileNotFoundError(f"no numbered notebooks in {folder}: the notebook series is not built yet")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for nb_path in notebooks:
        t0 = time.perf_counter()
        logger.info(f"running {nb_path.name} ...")
        nb = nbformat.read(nb_path, as_version=4)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(nb_path.parent)}})
        try:
            client.execute()
        except CellExecutionError as e:
            failed = out_dir / nb_path.name
            nbformat.write(nb, failed)
            raise RuntimeError(f"{nb_path.name} failed; the partly executed copy is {failed}.\n{e}") from None
        target = out_dir / nb_path.name
        nbformat.write(nb, target)
        written.append(target)
        logger.info(f"  done in {time.perf_counter() - t0:.0f} s -> {target}")
    return written


def cli_notebooks(args) -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        execute_series(args.out, timeout=args.timeout)
    except (FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
