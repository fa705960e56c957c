"""MindBigData text files: the format, a fast exact parser, a cache, and the ``inspect``/``prepare`` CLI.

Format (docs/DESIGN.md#mindbigdata-text-files): one tab-separated line per channel per event,
``[id] [event] [device] [channel] [code] [size] [data]``, data = ``size`` comma-separated floats.
An event is every line with one ``[event]`` id and the requested device, in whatever order.

How the parser stays fast on the 2.86 GB EP file: it reads 32 MB blocks, does one cheap Python step
per *line* (split off the six metadata fields; about 910 k lines), and parses the *values* of a whole
block at once with pandas' C float parser (one token per value), so no Python runs per value. Each
line's values go straight into the final ``[events, channels, samples]`` float32 array, which is the only
large allocation: peak memory is about the size of the result.

Nothing is lost silently: each skipped event is counted under the reason of its first bad line, every
line is counted as blank, another device's, unreadable or ours, and strict mode stops with the line.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from helpers import readers


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    channels: tuple[str, ...]
    sfreq: float


# Channel orders as MindBigData documents them; the EP order is a contract (docs/DESIGN.md#mindbigdata-text-files).
DEVICES: dict[str, DeviceSpec] = {
    "EP": DeviceSpec("EP", ("AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4"), 128.0),
    "MW": DeviceSpec("MW", ("FP1",), 512.0),
    "MU": DeviceSpec("MU", ("TP9", "FP1", "FP2", "TP10"), 220.0),
    "IN": DeviceSpec("IN", ("AF3", "AF4", "T7", "T8", "PZ"), 128.0),
}

CODES = tuple(range(-1, 10))  # -1 = random (non-digit) capture, 0-9 = the digit seen

# Why an event was skipped. The first bad line of an event decides its reason.
REASONS: dict[str, str] = {
    "too_few_fields": "fewer than the 7 tab-separated fields",
    "bad_id": "the [id] field is not a 64-bit integer",
    "unknown_channel": "channel name not in this device's channel set",
    "duplicate_channel": "a channel appears twice in the event",
    "missing_channel": "the event lacks one or more channels (known at end of file)",
    "bad_code": "the [code] field is not an integer",
    "code_out_of_range": "code outside -1..9",
    "inconsistent_code": "lines of one event disagree on the code",
    "bad_size": "the [size] field is not a positive integer",
    "size_mismatch": "the number of values differs from [size]",
    "non_numeric_value": "a value is not a number",
    "non_finite_value": "a value is NaN or infinite (or overflows float32)",
}

CACHE_VERSION = 1
_BLOCK_BYTES = 32 * 1024 * 1024
_PROGRESS_MIN_BYTES = 200 * 1024 * 1024
_MAX_EXAMPLES = 20
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class MindBigDataError(ValueError):
    """A bad line in strict mode (or an unreadable file): says which line and why."""

    def __init__(self, path: str, line_number: int | None, reason: str, detail: str = ""):
        self.path = str(path)
        self.line_number = line_number
        self.reason = reason
        self.detail = detail
        where = f"{self.path}:{line_number}" if line_number is not None else self.path
        super().__init__(f"{where}: {reason}" + (f" ({detail})" if detail else ""))


@dataclass
class Events:
    """Parsed events. ``signals[i, :, :sizes[i]]`` holds event i; samples after ``sizes[i]`` are 0."""
    signals: np.ndarray  # float32 [n, n_channels, max_size]
    sizes: np.ndarray  # int [n]
    codes: np.ndarray  # int [n], -1..9
    event_ids: np.ndarray  # int64 [n], file order (= time order)
    channels: tuple[str, ...]
    device: str = "EP"
    sfreq: float = 128.0

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def subset(self, idx) -> "Events":
        """Events at ``idx`` (integer indices or a boolean mask), same channels and rate."""
        idx = np.asarray(idx)
        return Events(self.signals[idx], self.sizes[idx], self.codes[idx], self.event_ids[idx],
                      self.channels, self.device, self.sfreq)

    @property
    def digits(self) -> np.ndarray:
        """Boolean mask of digit events (code 0-9, i.e. not the -1 random captures)."""
        return self.codes >= 0


@dataclass
class ParseReport:
    """Everything the parser saw. ``events_valid + sum(events_skipped.values()) == events_total`` and
    ``lines_total == lines_blank + lines_other_device + lines_unreadable + lines_device``."""
    path: str
    device: str
    channels: list[str]
    sfreq: float
    lines_total: int = 0
    lines_blank: int = 0
    lines_other_device: int = 0
    lines_unreadable: int = 0
    lines_device: int = 0
    other_devices: dict[str, int] = field(default_factory=dict)
    events_total: int = 0
    events_valid: int = 0
    events_skipped: dict[str, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)
    events_size_truncated: int = 0
    size_min: int | None = None
    size_max: int | None = None
    size_median: float | None = None
    skipped_examples: list[dict] = field(default_factory=list)
    unreadable_examples: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # what the format cannot tell (helpers.readers.HF_NOTES)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["codes"] = {str(k): int(v) for k, v in sorted(self.codes.items(), key=lambda kv: int(kv[0]))}
        d["events_skipped"] = dict(sorted(self.events_skipped.items()))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ParseReport":
        return cls(**d)

    def summary(self) -> str:
        """A few human-readable lines for the terminal and notebooks."""
        out = [f"{self.path}: device {self.device}, {len(self.channels)} channels at {self.sfreq:g} Hz",
               f"lines: {self.lines_total} total = {self.lines_device} {self.device} + {self.lines_other_device} "
               f"other devices + {self.lines_blank} blank + {self.lines_unreadable} unreadable",
               f"events: {self.events_total} total, {self.events_valid} valid, "
               f"{sum(self.events_skipped.values())} skipped"]
        for reason, n in sorted(self.events_skipped.items()):
            out.append(f"  skipped {n:>7} {reason}: {REASONS.get(reason, '')}")
        if self.events_size_truncated:
            out.append(f"  {self.events_size_truncated} events had channels of unequal size (cut to the shortest)")
        if self.codes:
            out.append("codes (valid events): " + ", ".join(f"{k}: {v}" for k, v in self.to_dict()["codes"].items()))
        if self.size_min is not None:
            out.append(f"sizes: {self.size_min}-{self.size_max} samples (median {self.size_median:g})")
        for ex in self.skipped_examples[:5]:
            out.append(f"  e.g. line {ex['line']}, event {ex['event']}: {ex['reason']} {ex.get('detail', '')}".rstrip())
        for ex in self.unreadable_examples[:3]:
            out.append(f"  e.g. unreadable line {ex['line']}: {ex['detail']}")
        if self.events_valid == 0 and self.other_devices:
            out.append(f"no {self.device} events, but lines of " + ", ".join(
                f"{k} ({v})" for k, v in self.other_devices.items()) + ": pass that --device (or none, to detect it)")
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)


def get_device(device: str) -> DeviceSpec:
    try:
        return DEVICES[device]
    except KeyError:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}") from None


# ----------------------------------------------------------------------------------------------- parsing

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
        # Keep the earliest bad line: value faults are found after the line loop of their block.
        if self.fault is None or line < self.fault_line:
            self.fault, self.fault_line, self.detail = reason, line, detail


def _parse_values(joined: bytes, n_expected: int) -> np.ndarray | None:
    """All values of a block in one call of pandas' C parser (one token per value), or None if any
    token is not a float; the caller then finds the bad line(s) one line at a time."""
    import pandas as pd
    try:
        # sep "\0" never splits a token: a stray tab inside the values makes the token unreadable.
        df = pd.read_csv(io.BytesIO(joined), header=None, names=["v"], sep="\0", lineterminator=",",
                         dtype=np.float64, engine="c", quoting=csv.QUOTE_NONE, skip_blank_lines=False,
                         encoding="latin-1")
    except (ValueError, pd.errors.ParserError):
        return None
    vals = df["v"].to_numpy()
    return vals if vals.shape[0] == n_expected else None


def _line_values(data: bytes) -> np.ndarray | None:
    """One line's values with Python's float rules, or None when one is not a number."""
    try:
        return np.array(data.split(b","), dtype=np.float64)
    except ValueError:
        return None


class _Store:
    """The growing result array [slots, channels, width]; only large allocation of the parser."""

    def __init__(self, n_channels: int):
        self.c = n_channels
        self.arr = np.zeros((0, n_channels, 0), np.float32)

    def ensure(self, slots: int, width: int, slots_hint: int) -> None:
        cap, _, w = self.arr.shape
        if slots <= cap and width <= w:
            return
        new_cap = max(slots, cap if slots <= cap else int(cap * 1.5) + 16, slots_hint)
        new_w = w if width <= w else width + 16  # a little headroom: sizes vary by a few samples
        new = np.zeros((new_cap, self.c, new_w), np.float32)  # calloc: untouched pages cost nothing
        if cap:
            new[:cap, :, :w] = self.arr
        self.arr = new

    def finish(self, keep_slots: np.ndarray, width: int) -> np.ndarray:
        """Compact in place to the kept slots and the final width, then shrink the allocation."""
        arr, self.arr = self.arr, None
        n, c, w = keep_slots.shape[0], self.c, arr.shape[2]
        for i0 in range(0, n, 2048):
            # keep_slots[i] >= i: moving rows forward never overwrites a row still to be read.
            sl = keep_slots[i0:i0 + 2048]
            if not (sl[0] == i0 and sl[-1] == i0 + len(sl) - 1):
                arr[i0:i0 + len(sl)] = arr[sl]
        rows = n * c
        if width != w:
            # Repack rows of length w into rows of length `width`; destinations never pass the sources.
            flat = arr.reshape(-1)
            for r0 in range(0, rows, 65536):
                r1 = min(rows, r0 + 65536)
                src = flat[r0 * w:r1 * w].reshape(-1, w)[:, :width].copy()
                flat[r0 * width:r1 * width] = src.reshape(-1)
            del flat
        arr.resize((rows * width,), refcheck=False)  # realloc in place: no second full-size copy
        return arr.reshape(n, c, width)


def _auto_progress(total: int) -> bool:
    if os.environ.get("CI") or os.environ.get("EEG2IMG_PROFILE", "").strip() == "ci":
        return False
    return total >= _PROGRESS_MIN_BYTES and sys.stderr.isatty()


def parse_file(path: str | Path, device: str | None = None, strict: bool = False,
               progress: bool | None = None) -> tuple[Events, ParseReport]:
    """Parse a MindBigData file into events of one device: the text format, the same inside a ``.zip`` (streamed),
    or the Hugging Face CSV, chosen by content (helpers.readers).

    ``device``: EP, MW, MU or IN; None = the device the file's own lines name (a file that mixes devices is
    refused with the list of what it holds). A spreadsheet export is refused in one line that says so.
    Lenient (default): a bad event is skipped and counted under the reason of its first bad line.
    Strict: raise :class:`MindBigDataError` at the first bad line (missing channels can only be known
    at the end of the file, so they are raised after the whole file was read).
    ``progress``: None = a tqdm bar for big files on a terminal, never under CI.
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
        return _parse_stream(fh, total_bytes, desc, spec, strict, progress, t0)


def _parse_stream(fh, total_bytes: int, path: str, spec: DeviceSpec, strict: bool, progress: bool | None,
                  t0: float) -> tuple[Events, ParseReport]:
    """The text parser over an open binary stream (a file, or a zip member); ``path`` names it in messages."""
    c = len(spec.channels)
    full_mask = (1 << c) - 1
    chan_index = {name.encode(): i for i, name in enumerate(spec.channels)}
    dev_b = spec.name.encode()
    rep = ParseReport(path=str(path), device=spec.name, channels=list(spec.channels), sfreq=spec.sfreq)
    events: dict[int, _Event] = {}
    store = _Store(c)
    other: dict[bytes, int] = {}

    def unreadable(lineno: int, detail: str) -> None:
        rep.lines_unreadable += 1
        if len(rep.unreadable_examples) < _MAX_EXAMPLES:
            rep.unreadable_examples.append({"line": lineno, "detail": detail})

    bar = None
    if progress or (progress is None and _auto_progress(total_bytes)):
        from tqdm.auto import tqdm
        bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc=f"parsing {Path(path).name}")

    lineno = 0
    slots_hint = 0
    # Lenient mode overlaps the two halves of the work: this thread splits lines (Python, holds the GIL)
    # while a worker parses the previous block's values (pandas' C parser and numpy, mostly without it).
    pool = None if strict else ThreadPoolExecutor(max_workers=1)
    pending = None
    try:
        while True:
            block = fh.read(_BLOCK_BYTES)
            if block and not block.endswith(b"\n"):
                block += fh.readline()  # end the block at a line end
            if not block:
                break
            if bar is not None:
                bar.update(len(block))
            lines = block.split(b"\n")
            del block
            if lines[-1] == b"":
                lines.pop()  # the text after the last newline is not a line
            # Per good line of our device: its event, channel, and the text of its values.
            evs: list[_Event] = []
            chans: list[int] = []
            counts: list[int] = []
            linenos: list[int] = []
            datas: list[bytes] = []
            block_faults: list[tuple[int, str, str]] = []  # strict mode: raise the earliest
            evs_append, chans_append, counts_append = evs.append, chans.append, counts.append
            linenos_append, datas_append = linenos.append, datas.append
            for raw in lines:
                lineno += 1
                line = raw.rstrip()  # CRLF and trailing blanks are tolerated
                if not line:
                    rep.lines_blank += 1
                    continue
                f = line.split(b"\t", 6)
                if len(f) < 3:
                    unreadable(lineno, "fewer than 3 tab-separated fields")
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
                except (ValueError, OverflowError) as e:
                    detail = (f"event id {f[1][:20]!r} is "
                              + ("outside the 64-bit integer range" if isinstance(e, OverflowError)
                                 else "not an integer"))
                    unreadable(lineno, detail)
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
                        data = f[6]
                        n = data.count(b",") + 1
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
                                datas_append(data)
                if fault is not None:
                    ev.flag(fault, lineno, detail)
                    if strict:
                        block_faults.append((lineno, fault, detail))
                        break  # later lines of this block cannot be the first fault
            del lines
            if slots_hint == 0 and events:
                # Size the result once from the first block (bytes per event), to avoid regrowing it.
                slots_hint = int(len(events) * total_bytes / max(1, fh.tell()) * 1.02) + 16
            if pending is not None:
                pending.result()  # at most one block in flight: bounded memory, errors surface here
                pending = None
            if datas:
                job = (store, evs, chans, counts, linenos, datas, strict, block_faults, slots_hint)
                if pool is None:
                    _store_block(*job)
                else:
                    pending = pool.submit(_store_block, *job)
            if strict and block_faults:
                ln, reason, detail = min(block_faults)
                raise MindBigDataError(str(path), ln, reason, detail)
        if pending is not None:
            pending.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if bar is not None:
        bar.close()
    rep.lines_total = lineno
    rep.lines_other_device = sum(other.values())
    rep.other_devices = {k.decode("latin-1"): v for k, v in sorted(other.items())}

    # Events complete: missing channels, then choose the kept ones (file order = first appearance).
    keep: list[_Event] = []
    for ev_id, ev in events.items():
        if ev.fault is None and ev.mask != full_mask:
            missing = [spec.channels[i] for i in range(c) if not ev.mask >> i & 1]
            ev.flag("missing_channel", ev.first_line, "no " + ",".join(missing))
            if strict:
                raise MindBigDataError(str(path), ev.first_line, "missing_channel",
                                       f"event {ev_id} (first line {ev.first_line}) has no {','.join(missing)}")
        if ev.fault is None:
            keep.append(ev)
        else:
            rep.events_skipped[ev.fault] = rep.events_skipped.get(ev.fault, 0) + 1
            if len(rep.skipped_examples) < _MAX_EXAMPLES:
                rep.skipped_examples.append({"event": ev_id, "line": ev.fault_line, "reason": ev.fault,
                                             "detail": ev.detail})
    ids = np.fromiter(events.keys(), np.int64, len(events))
    keep_slots = np.fromiter((ev.slot for ev in keep), np.int64, len(keep))
    sizes = np.fromiter((ev.size_min for ev in keep), np.int64, len(keep))
    codes = np.fromiter((ev.code for ev in keep), np.int64, len(keep))
    width = int(sizes.max()) if len(keep) else 0
    store.ensure(max(1, len(events)), width, 0)
    signals = store.finish(keep_slots, width)
    truncated = np.flatnonzero(np.fromiter((ev.size_min != ev.size_max for ev in keep), bool, len(keep)))
    for i in truncated:  # channels longer than the event's shortest one: cut, so that zeros follow sizes[i]
        signals[i, :, sizes[i]:] = 0
    rep.events_size_truncated = int(truncated.size)
    rep.events_total = len(events)
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


def _store_block(store: _Store, evs: list[_Event], chans, counts, linenos, datas,
                 strict: bool, block_faults: list, slots_hint: int) -> None:
    """Parse the values of one block's good lines and write them into the result array."""
    counts_a = np.asarray(counts, np.int64)
    starts = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts_a, out=starts[1:])
    vals = _parse_values(b",".join(datas) + b",", int(starts[-1]))
    bad_lines: dict[int, tuple[str, str]] = {}
    if vals is None:  # some token is not a float: find which lines, with Python's float rules
        parts = []
        for i, d in enumerate(datas):
            v = _line_values(d)
            if v is None:
                bad_lines[i] = ("non_numeric_value", "a value is not a number")
                v = np.zeros(counts[i])
            parts.append(v)
        vals = np.concatenate(parts) if parts else np.zeros(0)
    with np.errstate(over="ignore"):  # values beyond float32 become inf and are flagged just below
        vals32 = vals.astype(np.float32)
    del vals
    nonfinite = ~np.isfinite(vals32)
    if nonfinite.any():
        for i in np.unique(np.searchsorted(starts, np.flatnonzero(nonfinite), side="right") - 1):
            i = int(i)
            if i not in bad_lines:
                # Pandas reads empty or "NA" tokens as NaN: tell those apart from a real nan/inf.
                v = _line_values(datas[i])
                bad_lines[i] = (("non_numeric_value", "a value is not a number") if v is None
                                else ("non_finite_value", "NaN, inf or beyond float32"))
    slots_a = np.fromiter((ev.slot for ev in evs), np.int64, len(evs))
    keep_line = np.ones(len(evs), bool)
    if bad_lines:
        for i, (reason, detail) in bad_lines.items():
            evs[i].flag(reason, linenos[i], detail)
            keep_line[i] = False
            if strict:
                block_faults.append((linenos[i], reason, detail))
    if strict and block_faults:
        return
    width = int(counts_a.max())
    store.ensure(int(slots_a.max()) + 1, width, slots_hint)
    arr = store.arr
    _, c, w = arr.shape
    # Runs of lines that are consecutive channels of one event with one size are written as one
    # [channels, size] rectangle: about one numpy call per event instead of index arrays per value.
    ch_a = np.asarray(chans, np.int64)
    cont = np.zeros(len(evs), bool)
    cont[1:] = ((slots_a[1:] == slots_a[:-1]) & (ch_a[1:] == ch_a[:-1] + 1) & (counts_a[1:] == counts_a[:-1])
                & keep_line[1:] & keep_line[:-1])
    run_starts = np.flatnonzero(~cont).tolist()
    slot_l, start_l, keep_l = slots_a.tolist(), starts.tolist(), keep_line.tolist()
    for a, b in zip(run_starts, run_starts[1:] + [len(evs)]):
        if keep_l[a]:
            k, ch0 = counts[a], chans[a]
            arr[slot_l[a], ch0:ch0 + b - a, :k] = vals32[start_l[a]:start_l[b]].reshape(b - a, k)


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
            progress: bool | None = None) -> tuple[Events, ParseReport, bool]:
    """Parse ``path`` once and cache it at ``out``; reuse the cache while the source is unchanged.

    Returns ``(events, report, reused)``.
    """
    path, out = Path(path), Path(out)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    fp = _fingerprint(path, device or readers.file_device(path), strict)
    if out.is_file():
        try:
            if _read_meta(out).get("fingerprint") == fp:
                events, report = load_cache(out, with_report=True)
                return events, report, True
        except (CacheError, OSError) as e:  # a damaged cache is only a lost shortcut: rebuild it
            print(f"notice: {e}; rebuilding it from {path}", file=sys.stderr)
    events, report = parse_file(path, device=device, strict=strict, progress=progress)
    save_cache(out, events, report, fp)
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
