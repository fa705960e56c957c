"""The MindBigData text parser: exact, fast, and on every core.

``helpers.mindbigdata.parse_file`` is the entry point; this module is its engine, over any binary stream (a file
or the data member of a zip, see :func:`helpers.readers.open_stream`).

How one pass stays fast: it takes 32 MB blocks ending at a line end, does one cheap Python step per *line* (split
off the six metadata fields; about 910 k lines in the EP file), and parses the *values* of a whole block at once
with pandas' C float parser (one token per value), so no Python runs per value. Each line's values go straight
into the final ``[events, channels, samples]`` float32 array, the only large allocation.

This module is the scanning engine (blocks, lines, metadata fields, events, the report); the values of a block's
good lines are parsed and stored by :mod:`helpers.textvalues`.

Every core: ``helpers.parse_parallel`` runs :func:`parse_block` on worker processes and merges their results.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from helpers.mbdformat import DeviceSpec, Events, MindBigDataError, ParseReport, get_device
from helpers.textvalues import _Store, _store_block

BLOCK_BYTES = 32 * 1024 * 1024
_PROGRESS_MIN_BYTES = 200 * 1024 * 1024
MAX_EXAMPLES = 20
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_FLAG_LOCK = threading.Lock()


class _Event:
    """Running state of one event id while the file streams past."""
    __slots__ = ("slot", "first_line", "mask", "code", "size_min", "size_max", "fault", "fault_line", "detail")

    def __init__(self, slot: int, line: int):
        self.slot = slot
        self.first_line = line
        self.mask = 0  # bit per channel seen
        self.code: int | None = None
        self.size_min = 1 << 30
        self.size_max = 0
        self.fault: str | None = None
        self.fault_line = 0
        self.detail = ""

    def flag(self, reason: str, line: int, detail: str = "") -> None:
        # Keep the earliest bad line: value faults are found after the line loop of their block. In lenient mode
        # the value worker flags block N's events while this thread scans block N+1, which can flag the same
        # event: the lock keeps the check and the three fields one step (only faults pay for it).
        with _FLAG_LOCK:
            if self.fault is None or line < self.fault_line:
                self.fault, self.fault_line, self.detail = reason, line, detail

    def state(self) -> tuple:
        return tuple(getattr(self, k) for k in self.__slots__)

    @classmethod
    def from_state(cls, state: tuple, slot: int, line_offset: int) -> _Event:
        """The event of :meth:`state` at ``slot``, its line numbers shifted by ``line_offset``."""
        ev = cls.__new__(cls)
        for k, v in zip(cls.__slots__, state):
            setattr(ev, k, v)
        ev.slot = slot
        ev.first_line += line_offset
        if ev.fault is not None:
            ev.fault_line += line_offset
        return ev


_WHITESPACE = b" \t\r\x0b\x0c"  # what bytes.rstrip() strips (besides the newline that ends a line)
_HEAD = 256  # the six metadata fields of a line fit in this many bytes (about 40 in MindBigData files)


def _auto_progress(total: int) -> bool:
    from helpers.log import progress_enabled

    return total >= _PROGRESS_MIN_BYTES and progress_enabled()


def _progress_bar(progress: bool | None, total_bytes: int, path: str):
    if progress or (progress is None and _auto_progress(total_bytes)):
        from tqdm.auto import tqdm
        return tqdm(total=total_bytes, unit="B", unit_scale=True, desc=f"parsing {Path(path).name}")
    return None


def _blocks(fh, bar):
    """The stream in blocks of about BLOCK_BYTES that end at a line end (the last may lack its newline)."""
    while True:
        block = fh.read(BLOCK_BYTES)
        if block and not block.endswith(b"\n"):
            block += fh.readline()  # end the block at a line end
        if not block:
            return
        if bar is not None:
            bar.update(len(block))
        yield block


class _Scan:
    """One pass's state: events by id (first appearance = slot order), line counters, other devices' lines."""

    def __init__(self, spec: DeviceSpec, path: str, strict: bool):
        self.spec, self.path, self.strict = spec, path, strict
        self.chan_index = {name.encode(): i for i, name in enumerate(spec.channels)}
        self.dev_b = spec.name.encode()
        self.rep = ParseReport(path=path, device=spec.name, channels=list(spec.channels), sfreq=spec.sfreq)
        self.events: dict[int, _Event] = {}
        self.other: dict[bytes, int] = {}
        self.lineno = 0

    def unreadable(self, lineno: int, detail: str) -> None:
        rep = self.rep
        rep.lines_unreadable += 1
        if len(rep.unreadable_examples) < MAX_EXAMPLES:
            rep.unreadable_examples.append({"line": lineno, "detail": detail})

    def lines(self, block: bytes):
        """Account for every line of ``block``; return the good lines of our device for :func:`_store_block`
        as ``(events, channels, counts, line numbers, value spans)`` and, in strict mode, the block's faults.
        A value span ``(start, end)`` is where the line's values lie in ``block``: no line is copied."""
        spec, strict, rep, events, other = self.spec, self.strict, self.rep, self.events, self.other
        chan_index, dev_b = self.chan_index, self.dev_b
        find, count, size_b = block.find, block.count, len(block)
        lineno = self.lineno
        evs: list[_Event] = []
        chans: list[int] = []
        counts: list[int] = []
        linenos: list[int] = []
        spans: list[tuple[int, int]] = []
        block_faults: list[tuple[int, str, str]] = []  # strict mode: raise the earliest
        evs_append, chans_append, counts_append = evs.append, chans.append, counts.append
        linenos_append, spans_append = linenos.append, spans.append
        s = 0
        while s < size_b:
            e = find(b"\n", s)
            if e < 0:
                e = size_b  # the text after the last newline is a line too
            start, s = s, e + 1
            lineno += 1
            if e > start and block[e - 1] in _WHITESPACE:  # CRLF and trailing blanks are tolerated
                e = start + len(block[start:e].rstrip())
            if e == start:
                rep.lines_blank += 1
                continue
            cut = min(e, start + _HEAD)
            f = block[start:cut].split(b"\t", 6)
            if len(f) < 7 and cut < e:  # metadata longer than _HEAD: split the whole line
                cut = e
                f = block[start:e].split(b"\t", 6)
            if len(f) < 3:
                self.unreadable(lineno, "fewer than 3 tab-separated fields")
                if strict:
                    block_faults.append((lineno, "unreadable_line", "fewer than 3 tab-separated fields"))
                    break
                continue
            if f[2] != dev_b:
                other[f[2]] = other.get(f[2], 0) + 1
                continue
            try:
                ev_id = int(f[1])
                if not _INT64_MIN <= ev_id <= _INT64_MAX:  # event ids are stored as int64
                    raise OverflowError
            except (ValueError, OverflowError) as exc:
                detail = (f"event id {f[1][:20]!r} is "
                          + ("outside the 64-bit integer range" if isinstance(exc, OverflowError)
                             else "not an integer"))
                self.unreadable(lineno, detail)
                if strict:
                    block_faults.append((lineno, "unreadable_line", detail))
                    break
                continue
            rep.lines_device += 1
            ev = events.get(ev_id)
            if ev is None:
                ev = events[ev_id] = _Event(len(events), lineno)
            fault = detail = None
            ch = -1
            if len(f) < 7:
                fault, detail = "too_few_fields", f"{len(f)} fields"
            else:
                ch = chan_index.get(f[3], -1)
                try:
                    code = int(f[4])
                except ValueError:
                    code = None
                try:
                    size = int(f[5])
                except ValueError:
                    size = -1
                if ch < 0:
                    fault, detail = "unknown_channel", f"channel {f[3][:20].decode('latin-1')!r}"
                elif ev.mask >> ch & 1:
                    fault, detail = "duplicate_channel", f"{spec.channels[ch]} appears twice"
                elif code is None:
                    fault, detail = "bad_code", f"code {f[4][:20].decode('latin-1')!r}"
                elif not -1 <= code <= 9:
                    fault, detail = "code_out_of_range", f"code {code}"
                elif ev.code is not None and code != ev.code:
                    fault, detail = "inconsistent_code", f"code {code} after {ev.code}"
                elif size < 1:
                    fault, detail = "bad_size", f"size {f[5][:20].decode('latin-1')!r}"
                else:
                    try:
                        if not _INT64_MIN <= int(f[0]) <= _INT64_MAX:
                            raise ValueError
                    except ValueError:
                        fault, detail = "bad_id", f"id {f[0][:20].decode('latin-1')!r}"
                if fault is None:
                    vs = cut - len(f[6])  # where the values start
                    n = count(b",", vs, e) + 1
                    if n != size:
                        fault, detail = "size_mismatch", f"size {size} but {n} values"
                    else:  # a stray tab or letter inside the values is caught by the value parser
                        ev.mask |= 1 << ch
                        ev.code = code
                        if n < ev.size_min:
                            ev.size_min = n
                        if n > ev.size_max:
                            ev.size_max = n
                        if ev.fault is None:  # values of an already-bad event need not be parsed
                            evs_append(ev)
                            chans_append(ch)
                            counts_append(n)
                            linenos_append(lineno)
                            spans_append((vs, e))
            if fault is not None:
                ev.flag(fault, lineno, detail)
                if strict:
                    block_faults.append((lineno, fault, detail))
                    break  # later lines of this block cannot be the first fault
        self.lineno = lineno
        return (evs, chans, counts, linenos, spans), block_faults

    def raise_first(self, block_faults: list) -> None:
        if self.strict and block_faults:
            ln, reason, detail = min(block_faults)
            raise MindBigDataError(self.path, ln, reason, detail)

    def finish(self, store: _Store, t0: float) -> tuple[Events, ParseReport]:
        """Events complete: missing channels, the kept events (file order = first appearance), the report."""
        spec, rep, strict = self.spec, self.rep, self.strict
        c = len(spec.channels)
        full_mask = (1 << c) - 1
        rep.lines_total = self.lineno
        rep.lines_other_device = sum(self.other.values())
        rep.other_devices = {k.decode("latin-1"): v for k, v in sorted(self.other.items())}
        keep: list[_Event] = []
        for ev_id, ev in self.events.items():
            if ev.fault is None and ev.mask != full_mask:
                missing = [spec.channels[i] for i in range(c) if not ev.mask >> i & 1]
                ev.flag("missing_channel", ev.first_line, "no " + ",".join(missing))
                if strict:
                    raise MindBigDataError(self.path, ev.first_line, "missing_channel",
                                           f"event {ev_id} (first line {ev.first_line}) has no {','.join(missing)}")
            if ev.fault is None:
                keep.append(ev)
            else:
                rep.events_skipped[ev.fault] = rep.events_skipped.get(ev.fault, 0) + 1
                if len(rep.skipped_examples) < MAX_EXAMPLES:
                    rep.skipped_examples.append({"event": ev_id, "line": ev.fault_line, "reason": ev.fault,
                                                 "detail": ev.detail})
        ids = np.fromiter(self.events.keys(), np.int64, len(self.events))
        keep_slots = np.fromiter((ev.slot for ev in keep), np.int64, len(keep))
        sizes = np.fromiter((ev.size_min for ev in keep), np.int64, len(keep))
        codes = np.fromiter((ev.code for ev in keep), np.int64, len(keep))
        width = int(sizes.max()) if len(keep) else 0
        store.ensure(max(1, len(self.events)), width, 0)
        signals = store.finish(keep_slots, width)
        truncated = np.flatnonzero(np.fromiter((ev.size_min != ev.size_max for ev in keep), bool, len(keep)))
        for i in truncated:  # channels longer than the event's shortest one: cut, so that zeros follow sizes[i]
            signals[i, :, sizes[i]:] = 0
        rep.events_size_truncated = int(truncated.size)
        rep.events_total = len(self.events)
        rep.events_valid = len(keep)
        vals, cnts = np.unique(codes, return_counts=True)
        rep.codes = {str(int(k)): int(v) for k, v in zip(vals, cnts)}
        if len(keep):
            rep.size_min, rep.size_max = int(sizes.min()), int(sizes.max())
            rep.size_median = float(np.median(sizes))
        rep.seconds = round(time.perf_counter() - t0, 3)
        out = Events(signals=signals, sizes=sizes, codes=codes, event_ids=ids[keep_slots],
                     channels=spec.channels, device=spec.name, sfreq=spec.sfreq)
        return out, rep


def parse_stream(fh, total_bytes: int, path: str, spec: DeviceSpec, strict: bool, progress: bool | None,
                 t0: float) -> tuple[Events, ParseReport]:
    """The one-process parser over an open binary stream; ``path`` names it in messages."""
    scan = _Scan(spec, str(path), strict)
    store = _Store(len(spec.channels))
    bar = _progress_bar(progress, total_bytes, path)
    slots_hint = 0
    # Lenient mode overlaps the two halves of the work: this thread splits lines (Python, holds the GIL)
    # while a worker parses the previous block's values (pandas' C parser and numpy, mostly without it).
    pool = None if strict else ThreadPoolExecutor(max_workers=1)
    pending = None
    try:
        for block in _blocks(fh, bar):
            good, block_faults = scan.lines(block)
            if slots_hint == 0 and scan.events:
                # Size the result once from the first block (bytes per event), to avoid regrowing it.
                slots_hint = int(len(scan.events) * total_bytes / max(1, fh.tell()) * 1.02) + 16
            if pending is not None:
                pending.result()  # at most one block in flight: bounded memory, errors surface here
                pending = None
            if good[4]:
                job = (store, block, *good, strict, block_faults, slots_hint)
                if pool is None:
                    _store_block(*job)
                else:
                    pending = pool.submit(_store_block, *job)
                del job
            del block
            scan.raise_first(block_faults)
        if pending is not None:
            pending.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    return scan.finish(store, t0)


def parse_block(block: bytes, device: str, path: str, strict: bool) -> dict:
    """One block parsed exactly as the one-process pass would, numbered from line 1 (a worker process's job;
    helpers.parse_parallel shifts the line numbers and merges the blocks in file order)."""
    scan = _Scan(get_device(device), path, strict)
    good, block_faults = scan.lines(block)
    store = _Store(len(scan.spec.channels))
    if good[4]:
        _store_block(store, block, *good, strict, block_faults, len(scan.events))
    n = len(scan.events)
    width = max((ev.size_max for ev in scan.events.values()), default=0)
    store.ensure(max(n, 1), width, 0)
    rep = scan.rep
    return {"events": [(ev_id, ev.state()) for ev_id, ev in scan.events.items()],
            "values": np.ascontiguousarray(store.arr[:n, :, :width]),
            "counts": (rep.lines_blank, rep.lines_device, rep.lines_unreadable),
            "unreadable_examples": rep.unreadable_examples, "other": scan.other,
            "faults": block_faults, "lines": scan.lineno, "bytes": len(block)}
