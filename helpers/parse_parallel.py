"""The MindBigData text parser on every core: byte ranges of the file parsed by worker processes, merged in order.

The file is cut into ranges of about ``textparser.BLOCK_BYTES`` that end where an event ends (MindBigData writes an
event's lines together; a cut is moved forward past the lines of the event it would split). Each worker process
reads its own range and runs :func:`helpers.textparser.parse_block` on it: the same per-line and per-block code as
the one-process pass, with line numbers counted from the range's first line. The main process shifts the line
numbers, merges the events in file order and copies each range's values into the one result array, so memory stays
about the size of the result, and the result and the line accounting are the one-process pass's by construction
(tests/test_parse_parallel.py compares them on every kind of fault).

A zip member cannot be cut by offset (deflate streams from its start): the main process inflates it and sends
event-aligned blocks to the workers. An event whose lines lie in two ranges (a file not written event by event)
cannot be merged exactly: :class:`NotContiguous` is raised and ``parse_file`` parses in one process, which is exact
for any line order.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from helpers import textparser as tp
from helpers.mbdformat import DeviceSpec, Events, ParseReport

PARALLEL_MIN_BYTES = 96 * 1024 * 1024  # below 3 blocks, starting worker processes costs more than it saves
_WINDOW = 1 << 20  # how far past a nominal cut an event boundary is looked for (an EP event is about 45 KB)


class NotContiguous(Exception):
    """An event's lines lie in two ranges: the merge would not be exact (the caller parses in one process)."""


def default_workers(total_bytes: int) -> int:
    """Worker processes for data of this size: every usable core (at most 16) from 96 MB, else 1 (no pool)."""
    if total_bytes < PARALLEL_MIN_BYTES:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 16))


def _pool_context():
    # fork on Linux, as PyTorch's DataLoader: spawn and forkserver re-import a script's __main__ in every worker
    # (a script without the `if __name__ == "__main__"` guard would start over), and the workers run only numpy
    # and pandas' parser, none of the parent's threads or locks. Elsewhere spawn, the platform's default.
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def _key(line: bytes) -> bytes | None:
    f = line.split(b"\t", 2)
    return f[1] if len(f) > 2 else None


def _boundary(win: bytes, start: int) -> int | None:
    """In ``win``, from the first line that starts at or after ``start``, the start of the first line whose event
    id differs from that line's: an event boundary. None if none lies in ``win``."""
    s = win.find(b"\n", start) + 1
    if s == 0:
        return None
    key = missing = object()
    while True:
        j = win.find(b"\n", s)
        if j < 0:
            return None
        k = _key(win[s:j])
        if key is missing:
            key = k
        elif k != key:
            return s
        s = j + 1


def file_ranges(path: str | Path, size: int) -> list[tuple[int, int]]:
    """Byte ranges ``[start, end)`` covering the file, each ending at an event boundary (when one is near)."""
    cuts = [0]
    with open(path, "rb") as fh:
        for pos in range(tp.BLOCK_BYTES, size, tp.BLOCK_BYTES):
            if pos <= cuts[-1]:
                continue
            fh.seek(pos - 1)  # from the byte before: a line that starts exactly at pos is found
            cut = _boundary(fh.read(_WINDOW), 0)
            if cut is not None and pos - 1 + cut < size:
                cuts.append(pos - 1 + cut)
    return list(zip(cuts, cuts[1:] + [size]))


def _last_event_start(block: bytes) -> int:
    """Where the lines of the block's last event begin (``block`` ends with a newline); 0 if that is all of it."""
    end = len(block) - 1
    start = block.rfind(b"\n", 0, end) + 1
    key = _key(block[start:end])
    while start > 0:
        prev = block.rfind(b"\n", 0, start - 1) + 1
        if _key(block[prev:start - 1]) != key:
            break
        start = prev
    return start


def _event_blocks(fh, bar):
    """A stream (a zip member) in blocks that end where an event ends: the last event's lines wait for the next."""
    carry = b""
    for block in tp._blocks(fh, bar):
        if carry:
            block = carry + block
        cut = _last_event_start(block) if block.endswith(b"\n") else len(block)
        carry = block[cut:]
        if cut:
            yield block[:cut]
    if carry:
        yield carry


def _read_range(file: str, start: int, end: int, device: str, desc: str, strict: bool) -> dict:
    with open(file, "rb") as fh:
        fh.seek(start)
        block = fh.read(end - start)
    return tp.parse_block(block, device, desc, strict)


class _Merge:
    """Blocks' results into one pass's state, in file order."""

    def __init__(self, scan: tp._Scan, store: tp._Store, total_bytes: int, bar):
        self.scan, self.store, self.total_bytes, self.bar = scan, store, total_bytes, bar
        self.slots_hint = self.bytes_done = 0

    def add(self, res: dict) -> None:
        scan, rep, events = self.scan, self.scan.rep, self.scan.events
        off, base = scan.lineno, len(events)
        for i, (ev_id, state) in enumerate(res["events"]):
            if ev_id in events:
                raise NotContiguous(f"event {ev_id} has lines in two ranges")
            events[ev_id] = tp._Event.from_state(state, base + i, off)
        self.bytes_done += res["bytes"]
        if self.bar is not None:
            self.bar.update(res["bytes"])
        if self.slots_hint == 0 and events:
            # Size the result once from the first block (bytes per event), to avoid regrowing it.
            self.slots_hint = int(len(events) * self.total_bytes / max(1, self.bytes_done) * 1.02) + 16
        vals = res["values"]
        if vals.size:
            self.store.ensure(len(events), vals.shape[2], self.slots_hint)
            self.store.arr[base:len(events), :, :vals.shape[2]] = vals
        blank, device, unreadable = res["counts"]
        rep.lines_blank += blank
        rep.lines_device += device
        rep.lines_unreadable += unreadable
        room = max(0, tp.MAX_EXAMPLES - len(rep.unreadable_examples))
        rep.unreadable_examples += [dict(ex, line=ex["line"] + off) for ex in res["unreadable_examples"][:room]]
        for k, v in res["other"].items():
            scan.other[k] = scan.other.get(k, 0) + v
        scan.lineno += res["lines"]
        scan.raise_first([(ln + off, reason, detail) for ln, reason, detail in res["faults"]])


def parse_parallel(path: str | Path, fh, total_bytes: int, desc: str, spec: DeviceSpec, strict: bool,
                   progress: bool | None, t0: float, workers: int) -> tuple[Events, ParseReport]:
    """``textparser.parse_stream``'s result with ``workers`` processes. ``fh`` None: ``path`` is a plain file,
    cut into byte ranges; else ``fh`` is a stream (a zip member) that this process reads."""
    scan = tp._Scan(spec, desc, strict)
    store = tp._Store(len(spec.channels))
    bar = tp._progress_bar(progress, total_bytes, desc)
    if fh is None:
        jobs = ((_read_range, (str(path), a, b, spec.name, desc, strict)) for a, b in file_ranges(path, total_bytes))
    else:
        jobs = ((tp.parse_block, (block, spec.name, desc, strict)) for block in _event_blocks(fh, bar))
    merge = _Merge(scan, store, total_bytes, bar if fh is None else None)
    pending: deque = deque()
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        try:
            for fn, args in jobs:
                pending.append(pool.submit(fn, *args))
                del args
                while len(pending) > 2 * workers:  # bounded memory: a few blocks in flight
                    merge.add(pending.popleft().result())
            while pending:
                merge.add(pending.popleft().result())
        finally:
            for fut in pending:
                fut.cancel()
            if bar is not None:
                bar.close()
    return scan.finish(store, t0)
