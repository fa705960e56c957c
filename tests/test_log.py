"""helpers.log: quiet as a library, INFO from the command line (-v DEBUG, -q warnings only), progress bars only
for people (a terminal or a notebook), never into a redirected log or CI."""
from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest

from helpers import log
from helpers.cli import build_parser, configure_logging


@pytest.fixture(autouse=True)
def restore_logger():
    handlers, level, propagate = list(log.logger.handlers), log.logger.level, log.logger.propagate
    root_handlers = list(logging.getLogger().handlers)
    yield
    logging.getLogger().handlers[:] = root_handlers
    log.logger.handlers[:] = handlers
    log.logger.setLevel(level)
    log.logger.propagate = propagate


def test_library_import_is_quiet():
    code = "import helpers.log, helpers.train; helpers.log.logger.info('hello'); helpers.log.logger.debug('x')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == "" and "hello" not in proc.stderr


def test_set_log_level_adds_one_handler_and_accepts_names(capsys):
    log.set_log_level("INFO")
    log.set_log_level(True)
    assert sum(h.get_name() == "helpers-stderr" for h in log.logger.handlers) == 1
    logging.basicConfig()  # another library's root handler must not print the package's lines twice
    log.logger.info("stage one")
    log.logger.debug("detail")
    err = capsys.readouterr().err
    assert err.count("stage one") == 1 and "detail" not in err
    with pytest.raises(ValueError, match="unknown log level"):
        log.set_log_level("LOUD")


@pytest.mark.parametrize(("argv", "level"), [(["run"], logging.INFO), (["run", "-v"], logging.DEBUG),
                                             (["inspect", "f.txt", "-q"], logging.WARNING)])
def test_cli_flags_set_the_level(argv, level, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    assert log.logger.level == level


def test_ranks_other_than_zero_keep_errors_only(monkeypatch):
    import warnings

    monkeypatch.setenv("RANK", "1")
    with warnings.catch_warnings():
        configure_logging(0, False)
        assert log.logger.level == logging.ERROR
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn("duplicate of rank 0's", UserWarning, stacklevel=1)
        assert caught == []


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bars_only_for_people(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("EEG2IMG_PROFILE", raising=False)
    monkeypatch.setattr(log, "in_notebook", lambda: False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # redirected to a file: no bar, one log line per epoch
    assert not log.progress_enabled()
    monkeypatch.setattr(sys, "stderr", _Tty())
    assert log.progress_enabled()
    monkeypatch.setenv("CI", "1")
    assert not log.progress_enabled()
    monkeypatch.delenv("CI")
    monkeypatch.setenv("EEG2IMG_PROFILE", "ci")
    assert not log.progress_enabled()


def test_one_log_line_per_epoch():
    from helpers.train import epoch_line

    line = epoch_line({"epoch": 2, "train_total": 1.23456, "val_semantic_top1": 0.5, "seconds": 12.3}, 6)
    assert line == "epoch 2/6: total 1.2346, val semantic top-1 0.500 (12 s)"
