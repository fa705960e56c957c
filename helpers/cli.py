"""Command line: ``python -m helpers {inspect,prepare,run,notebooks,download}`` (docs/DESIGN.md#command-line).

Each subcommand lives in the module of its concern; this file only parses arguments, so that
``python -m helpers --help`` stays instant (no torch import).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, function). The function takes the parsed argparse namespace and returns an exit code.
HANDLERS = {
    "inspect": ("helpers.mindbigdata", "cli_inspect"),
    "prepare": ("helpers.mindbigdata", "cli_prepare"),
    "run": ("helpers.pipeline", "cli_run"),
    "notebooks": ("helpers.notebook_runner", "cli_notebooks"),
    "download": ("helpers.download", "cli_download"),
}


def build_parser() -> argparse.ArgumentParser:
    # -v / -q after any subcommand: how much of the package's log (helpers.log) reaches stderr.
    talk = argparse.ArgumentParser(add_help=False)
    talk.add_argument("-v", "--verbose", action="count", default=0,
                      help="more detail in the log on stderr (DEBUG); the default shows stages and one line per epoch")
    talk.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    p = argparse.ArgumentParser(prog="python -m helpers",
                                description="EEG -> image with a frozen-CLIP semantic loss (MindBigData).")
    sub = p.add_subparsers(dest="command", required=True)

    ins = sub.add_parser("inspect", parents=[talk], help="parse a MindBigData file and report what it holds and what was skipped")
    ins.add_argument("path", help="MindBigData text, the same inside a .zip, or the Hugging Face CSV")
    ins.add_argument("--device", default=None, help="EP, MW, MU or IN (default: the device the file's lines name)")
    ins.add_argument("--strict", action="store_true", help="stop at the first bad line, naming it")
    ins.add_argument("--json", action="store_true", help="print one JSON object")

    pre = sub.add_parser("prepare", parents=[talk], help="parse once and write an .npz cache (reused while the file is unchanged)")
    pre.add_argument("path")
    pre.add_argument("--out", required=True, help="cache file, e.g. dataset/EP1.01.npz")
    pre.add_argument("--device", default=None, help="EP, MW, MU or IN (default: detected from the file)")
    pre.add_argument("--strict", action="store_true")

    run = sub.add_parser("run", parents=[talk], help="prepare -> features -> split -> train -> evaluate -> figures")
    run.add_argument("--data", default=None, help="MindBigData file (default: dataset/EP1.01.txt, else synthetic)")
    run.add_argument("--profile", default=None, choices=["ci", "cpu", "gpu"],
                     help="default: $EEG2IMG_PROFILE or cpu")
    run.add_argument("--out", default=None, help="output folder (default: results/)")
    run.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    run.add_argument("--force", action="store_true",
                     help="replace the run already in --out (without this, or --resume, such a folder is refused)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override any config field, e.g. --set lambda_clip=0 (repeatable)")

    dl = sub.add_parser("download", parents=[talk], help="fetch the official MindBigData zip (resumable; CRC and length checked)")
    dl.add_argument("--device", default="EP", help="EP (default), MW, MU or IN")
    dl.add_argument("--url", default=None, help="another address of the file (default: the official one)")
    dl.add_argument("--out", default=None, help="folder to put it in (default: $EEG2IMG_DATA_DIR or dataset/)")

    nb = sub.add_parser("notebooks", parents=[talk], help="execute the notebook series top to bottom (what `make run` does)")
    nb.add_argument("--out", default="results/notebooks", help="where the executed copies go")
    nb.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell")
    return p


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """The command line's log: INFO on stderr (DEBUG with -v, WARNING with -q). Under torchrun, ranks other than 0
    keep errors only: one process speaks for the run, its warnings included."""
    import os
    import warnings

    from helpers.log import set_log_level

    if os.environ.get("RANK", "0") != "0":
        set_log_level("ERROR")
        warnings.filterwarnings("ignore")
        return
    set_log_level("WARNING" if quiet else "DEBUG" if verbose else "INFO")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    module_name, func_name = HANDLERS[args.command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        print(f"error: `{args.command}` is not built yet ({module_name} does not exist in this checkout).",
              file=sys.stderr)
        return 2
    return int(getattr(module, func_name)(args) or 0)
