"""MindBigData text files: the format, a fast exact parser, a cache, and the ``inspect``/``prepare`` CLI.

Format (docs/DESIGN.md#mindbigdata-text-files): one tab-separated line per channel per event,
``[id] [event] [device] [channel] [code] [size] [data]``, data = ``size`` comma-separated floats.
An event is every line with one ``[event]`` id and the requested device, in whatever order.

The parser itself (one pass per block, pandas' C float parser for the values, every core on big files) is
``helpers.textparser`` and ``helpers.parse_parallel``; the format's types live in ``helpers.mbdformat`` and are
re-exported here; this module holds the entry point, the cache and the CLI.

Nothing is lost silently: each skipped event is counted under the reason of its first bad line, every
line is counted as blank, another device's, unreadable or ours, and strict mode stops with the line.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from helpers import parse_parallel, readers, textparser
from helpers.log import logger
from helpers.mbdformat import (  # noqa: F401 - re-exported: helpers.mindbigdata is the format's public API
    CODES,
    DEVICES,
    REASONS,
    DeviceSpec,
    Events,
    MindBigDataError,
    ParseReport,
    get_device,
)


CACHE_VERSION = 1


# ----------------------------------------------------------------------------------------------- parsing

def parse_file(path: str | Path, device: str | None = None, strict: bool = False,
               progress: bool | None = None, workers: int | None = None) -> tuple[Events, ParseReport]:
    """Parse a MindBigData file into events of one device: the text format, the same inside a ``.zip`` (streamed),
    or the Hugging Face CSV, chosen by content (helpers.readers).

    ``device``: EP, MW, MU or IN; None = the device the file's own lines name (a file that mixes devices is
    refused with the list of what it holds). A spreadsheet export is refused in one line that says so.
    Lenient (default): a bad event is skipped and counted under the reason of its first bad line.
    Strict: raise :class:`MindBigDataError` at the first bad line (missing channels can only be known
    at the end of the file, so they are raised after the whole file was read).
    ``progress``: None = a tqdm bar for big files on a terminal, never under CI.
    ``workers``: processes that parse the text (helpers.textparser); None = every usable core for files of
    96 MB and more, one below. The result and the line accounting do not depend on it.
    """
    t0 = time.perf_counter()
    if device is not None:
        get_device(device)  # an unknown name is refused before the file is opened
    head = readers.read_head(path)
    kind = readers.sniff(head)
    if kind == "spreadsheet":
        raise readers.DataFormatError(readers.spreadsheet_message(path, head))
    if kind == "hf_csv":
        return readers.parse_hf_csv(path, device)
    spec = get_device(device or readers.detect_device(path, head))
    with readers.open_stream(path) as (fh, total_bytes, desc):
        n = workers if workers is not None else parse_parallel.default_workers(total_bytes)
        logger.debug(f"parsing {desc} ({total_bytes / 1e6:.0f} MB) with {n} process{'es' if n > 1 else ''}")
        if n <= 1:
            return textparser.parse_stream(fh, total_bytes, desc, spec, strict, progress, t0)
        try:
            return parse_parallel.parse_parallel(path, fh if readers.is_zip(path) else None, total_bytes, desc, spec,
                                                 strict, progress, t0, n)
        except parse_parallel.NotContiguous as e:  # the one-process pass is exact for any line order
            logger.info(f"{desc}: {e}; parsing again in one process")
    with readers.open_stream(path) as (fh, total_bytes, desc):
        return textparser.parse_stream(fh, total_bytes, desc, spec, strict, progress, t0)


# ----------------------------------------------------------------------------------------------- cache

def _fingerprint(path: Path, device: str, strict: bool) -> dict[str, Any]:
    """What identifies a source file's content cheaply: size, mtime and a hash of its head and tail."""
    st = path.stat()
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if st.st_size > 2 << 20:
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read(1 << 20))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "head_tail_sha1": h.hexdigest(),
            "device": device, "strict": bool(strict), "cache_version": CACHE_VERSION}


def save_cache(out: str | Path, events: Events, report: ParseReport, fingerprint: dict | None = None) -> None:
    """Write the .npz cache atomically (:func:`helpers.atomic.atomic_write`: never half a cache)."""
    from helpers.atomic import atomic_write

    meta = {"device": events.device, "sfreq": events.sfreq, "report": report.to_dict(),
            "fingerprint": fingerprint or {}, "cache_version": CACHE_VERSION}
    atomic_write(out, lambda fh: np.savez(fh, signals=events.signals, sizes=events.sizes, codes=events.codes,
                                          event_ids=events.event_ids, channels=np.array(events.channels),
                                          meta=np.array(json.dumps(meta))))


class CacheError(ValueError):
    """A parse cache is damaged (truncated, garbage bytes, missing or inconsistent arrays): one line, why."""


# Everything a damaged .npz can raise while numpy reads it: a cut zip (BadZipFile), changed bytes (BadZipFile
# "Bad CRC-32", zlib.error), no zip at all (ValueError: pickled data), a missing array (KeyError), bad JSON.
_DAMAGED_NPZ = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error)


def _damaged(path: Path, e: BaseException) -> CacheError:
    detail = str(e).splitlines()[0] if str(e) else "no detail"
    return CacheError(f"cache {path} is damaged ({type(e).__name__}: {detail})")


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["meta"]))
    except _DAMAGED_NPZ as e:
        raise _damaged(path, e) from None


def load_cache(path: str | Path, *, with_report: bool = False):
    """Load a cache written by :func:`prepare`: ``Events``, or ``(Events, ParseReport)`` with ``with_report``.

    A damaged cache raises :class:`CacheError` (one line); :func:`prepare` then rebuilds it from the text file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such cache: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            events = Events(signals=z["signals"], sizes=z["sizes"], codes=z["codes"], event_ids=z["event_ids"],
                            channels=tuple(str(s) for s in z["channels"]), device=meta["device"],
                            sfreq=float(meta["sfreq"]))
        report = ParseReport.from_dict(meta["report"])
    except _DAMAGED_NPZ as e:
        raise _damaged(path, e) from None
    n = len(events.codes)
    shapes = {"sizes": events.sizes.shape, "codes": events.codes.shape, "event_ids": events.event_ids.shape}
    if (events.signals.ndim != 3 or events.signals.shape[:2] != (n, len(events.channels))
            or any(shape != (n,) for shape in shapes.values()) or report.events_valid != n):
        raise CacheError(f"cache {path} is damaged (inconsistent arrays: signals {events.signals.shape}, "
                         f"{len(events.channels)} channels, " + ", ".join(f"{k} {v}" for k, v in shapes.items())
                         + f", report says {report.events_valid} events)")
    if with_report:
        return events, report
    return events


def prepare(path: str | Path, out: str | Path, device: str | None = None, strict: bool = False,
            progress: bool | None = None, workers: int | None = None) -> tuple[Events, ParseReport, bool]:
    """Parse ``path`` once and cache it at ``out``; reuse the cache while the source is unchanged.

    Returns ``(events, report, reused)``; ``workers`` as in :func:`parse_file`.
    """
    path, out = Path(path), Path(out)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    fp = _fingerprint(path, device or readers.file_device(path), strict)
    if out.is_file():
        try:
            if _read_meta(out).get("fingerprint") == fp:
                events, report = load_cache(out, with_report=True)
                logger.debug(f"{out}: cache reused ({path} unchanged)")
                return events, report, True
        except (CacheError, OSError) as e:  # a damaged cache is only a lost shortcut: rebuild it
            print(f"notice: {e}; rebuilding it from {path}", file=sys.stderr)
    events, report = parse_file(path, device=device, strict=strict, progress=progress, workers=workers)
    save_cache(out, events, report, fp)
    logger.debug(f"{out}: cache written ({report.seconds:.1f} s to parse {path})")
    return events, report, False


# ----------------------------------------------------------------------------------------------- CLI

def _run_cli(func) -> int:
    try:
        return func()
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except MindBigDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # e.g. an unknown device
        print(f"error: {e}", file=sys.stderr)
        return 2


def cli_inspect(args) -> int:
    """``python -m helpers inspect PATH [--device EP] [--strict] [--json]``."""
    def go() -> int:
        _, report = parse_file(args.path, device=args.device, strict=args.strict)
        if args.json:
            print(json.dumps(report.to_dict()))
        else:
            print(report.summary())
        return 0
    return _run_cli(go)


def cli_prepare(args) -> int:
    """``python -m helpers prepare PATH --out CACHE.npz [--device EP] [--strict]``."""
    def go() -> int:
        events, report, reused = prepare(args.path, args.out, device=args.device, strict=args.strict)
        state = "reused (source unchanged)" if reused else "written"
        print(f"{args.out}: {state}; {len(events)} events x {len(events.channels)} channels x "
              f"{events.signals.shape[2]} samples; skipped {sum(report.events_skipped.values())}")
        return 0
    return _run_cli(go)
