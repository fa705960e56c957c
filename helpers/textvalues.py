"""The values of a MindBigData text block: parsed at once, checked, and written into the result array.

:mod:`helpers.textparser` scans a block's lines and hands over the good ones as value spans (where each line's
comma-separated values lie in the block; no line is copied). Here the values of all of them are parsed in one call
of pandas' C float parser (:func:`_value_text` turns the block into one ``v,v,...,v,`` text in a single copy), a
block with a non-number is re-read line by line with Python's float rules to name the bad lines, values beyond
float32 are flagged, and each run of consecutive channels of one event is written as one rectangle into
:class:`_Store`, the growing ``[events, channels, samples]`` float32 array (the parser's only large allocation).
"""
from __future__ import annotations

import csv
import io

import numpy as np

_SPACES = memoryview(b" " * (1 << 16))


def _value_text(block: bytes, spans: list[tuple[int, int]]) -> bytearray:
    """The values of the good lines as one ``v,v,...,v,`` text, made in one copy of the block: everything that is
    not a value (the metadata fields, other lines, trailing blanks) becomes spaces, which the float parser skips
    in front of a token, and each line's end becomes a comma."""
    buf = bytearray(block)
    buf += b","  # room for the comma of a last line without its newline
    prev = 0
    for vs, ve in spans:
        while vs - prev > len(_SPACES):
            buf[prev:prev + len(_SPACES)] = _SPACES
            prev += len(_SPACES)
        if vs > prev:
            buf[prev:vs] = _SPACES[:vs - prev]
        buf[ve] = 44  # ","
        prev = ve + 1
    del buf[prev:]
    return buf


def _parse_values(text: bytearray, n_expected: int) -> np.ndarray | None:
    """All values of a block in one call of pandas' C parser (one token per value), or None if any
    token is not a float; the caller then finds the bad line(s) one line at a time."""
    import pandas as pd
    try:
        # sep "\0" never splits a token: a stray tab inside the values makes the token unreadable.
        # na_filter off: "NA" or an empty token is an error here, found again line by line with Python's rules.
        df = pd.read_csv(io.BytesIO(text), header=None, names=["v"], sep="\0", lineterminator=",",
                         dtype=np.float64, engine="c", quoting=csv.QUOTE_NONE, skip_blank_lines=False,
                         na_filter=False, encoding="latin-1")
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


def _store_block(store: _Store, block: bytes, evs: list, chans, counts, linenos, spans,
                 strict: bool, block_faults: list, slots_hint: int) -> None:
    """Parse the values of one block's good lines and write them into the result array.

    The lines come from ``textparser._Scan.lines``: per line its event (``evs``, a ``textparser._Event``: its
    ``slot`` in the array, ``flag()`` for a bad value), channel, value count, line number and value span. A line
    with a bad value flags its event; in strict mode the fault joins ``block_faults`` and nothing is written."""
    counts_a = np.asarray(counts, np.int64)
    starts = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts_a, out=starts[1:])
    vals = _parse_values(_value_text(block, spans), int(starts[-1]))
    bad_lines: dict[int, tuple[str, str]] = {}
    if vals is None:  # some token is not a float: find which lines, with Python's float rules
        parts = []
        for i, (vs, ve) in enumerate(spans):
            v = _line_values(block[vs:ve])
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
                v = _line_values(block[spans[i][0]:spans[i][1]])
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
