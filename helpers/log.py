"""The package's logger and its progress-bar rule: quiet as a library, one line per step in a log file.

* ``logger`` (``logging.getLogger("helpers")``) carries what the package has to say: stages of a run, one line
  per training epoch, caches written or reused. As a library the package is quiet (a ``NullHandler``, the
  logging convention for libraries); the command line shows INFO on stderr (``-v`` adds DEBUG, ``-q`` keeps
  warnings only), and :func:`set_log_level` does the same anywhere, like MNE's ``set_log_level``.
* What a user must act on (an untrained CLIP, synthetic data, a refused setting) is a ``warnings.warn``, shown
  by default; the notebooks' status box stays the first thing a student reads.
* :func:`progress_enabled`: tqdm bars only for people (a terminal, or a notebook), never in CI or in a
  redirected log, where every refresh of a bar would be a line (``run ... 2> run.log``: the log is on stderr).
"""
from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger("helpers")
logger.addHandler(logging.NullHandler())

_HANDLER_NAME = "helpers-stderr"
class _Stderr(logging.StreamHandler):
    """A handler on whatever ``sys.stderr`` is when a line is written (a notebook kernel or pytest may swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}


def set_log_level(level: str | int | bool = "INFO") -> None:
    """Show the package's messages on stderr from ``level`` on (a name, a number, True = INFO, False = WARNING).

    Idempotent: one handler, whatever the number of calls; the package's records then stop at this handler."""
    if isinstance(level, bool):
        level = "INFO" if level else "WARNING"
    if isinstance(level, str):
        if level.upper() not in LEVELS:
            raise ValueError(f"unknown log level {level!r}; choose one of {', '.join(LEVELS)}")
        level = LEVELS[level.upper()]
    handler = next((h for h in logger.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = _Stderr()
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    handler.setLevel(level)
    logger.setLevel(level)
    # Ours alone: another library's logging.basicConfig on the root logger would print every line a second time.
    logger.propagate = False


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (where tqdm.auto draws a widget, not text lines)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipykernel brings IPython
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_enabled() -> bool:
    """Progress bars for people: on a terminal or in a notebook; never under CI or the ci profile, nor into a file."""
    if os.environ.get("CI") or os.environ.get("EEG2IMG_PROFILE", "").strip() == "ci":
        return False
    return in_notebook() or sys.stderr.isatty()
