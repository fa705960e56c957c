"""What a data file holds, decided by its content (not its name), and the readers that are not the text parser.

``helpers.mindbigdata.parse_file`` is the one entry point (``inspect``, ``prepare``, ``run --data`` all go through
it); it asks this module:

* :func:`open_stream`: a plain file, or the one data member of a ``.zip`` (MindBigData ships
  ``MindBigData-EP-v1.0.zip``), read as a stream and never unpacked to disk; zipfile checks the member's CRC as the
  stream ends, so a damaged archive is refused, never half-used.
* :func:`sniff`: MindBigData text, the Hugging Face re-release's CSV (MindBigData2022: a header with ``label`` and
  ``<channel>-<sample>`` columns), or a spreadsheet export of MindBigData lines (byte-order mark, quoted fields),
  which is explained in one line instead of being reported line by line as bad ids.
* :func:`detect_device`: the device of a MindBigData text file from its own lines (the third field).
* :func:`parse_hf_csv`: the Hugging Face CSV into the same ``Events`` and ``ParseReport`` as the text parser.
"""
from __future__ import annotations

import re
import time
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from helpers.mbdformat import DEVICES, Events, ParseReport

ZIP_MAGIC = b"PK\x03\x04"
BOM = b"\xef\xbb\xbf"
HEAD_BYTES = 1 << 16  # what sniffing and device detection read: 64 KB, a few EP lines or ~30 CSV rows
DATA_SUFFIXES = (".txt", ".csv")
_HF_COLUMN = re.compile(r"^([A-Za-z0-9]+)-(\d+)$")
HF_NOTES = (
    "Hugging Face CSV: rows carry no event ids, so the blocked split follows row order (the file's order); "
    "whether that is time order is not documented",
    "its own train/test split was drawn at random per class: evaluate on a blocked split of train.csv; scores "
    "on test.csv are a random split and optimistic",
)


class DataFormatError(ValueError):
    """The file is not in a format this project reads, or not in the form it should be; the message says why."""


def _data_member(zf: zipfile.ZipFile, path: Path) -> zipfile.ZipInfo:
    # macOS adds __MACOSX/ and ._<name> resource files when it re-packs a zip: they are not data.
    members = [m for m in zf.infolist() if not m.is_dir() and m.filename.lower().endswith(DATA_SUFFIXES)
               and not m.filename.startswith("__MACOSX/") and not m.filename.rsplit("/", 1)[-1].startswith("._")]
    if len(members) != 1:
        names = ", ".join(m.filename for m in members) or "none"
        raise DataFormatError(f"{path}: a zip must hold exactly one .txt or .csv data file; it holds {names}")
    return members[0]


def is_zip(path: str | Path) -> bool:
    """Whether ``path`` is a zip archive, by its first bytes."""
    with open(path, "rb") as fh:
        return fh.read(4) == ZIP_MAGIC


@contextmanager
def open_stream(path: str | Path) -> Iterator[tuple[IO[bytes], int, str]]:
    """``(binary stream, size in bytes, description)`` of ``path`` or, for a zip, of its one data member."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if not is_zip(path):
        with open(path, "rb") as fh:
            yield fh, path.stat().st_size, str(path)
        return
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise DataFormatError(f"{path}: damaged zip ({e}); download it again") from None
    with zf:
        member = _data_member(zf, path)
        try:
            with zf.open(member) as stream:
                yield stream, member.file_size, f"{path}:{member.filename}"
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:  # CRC, inflate or length: found as it is read
            raise DataFormatError(f"{path}: member {member.filename} is damaged ({e}); download it again") from None


def read_head(path: str | Path, n: int = HEAD_BYTES) -> bytes:
    """The first ``n`` bytes of the data (inside the zip, for a zip), cut at the last complete line."""
    with open_stream(path) as (fh, _, _):
        head = fh.read(n)
    cut = head.rfind(b"\n")
    return head if cut < 0 or len(head) < n else head[:cut + 1]


def sniff(head: bytes) -> str:
    """``"hf_csv"``, ``"spreadsheet"`` or ``"mindbigdata"`` from the first bytes of a file."""
    first = head.split(b"\n", 1)[0].strip()
    cells = first.removeprefix(BOM).decode("latin-1").split(",")  # a CSV saved with a BOM is still the CSV
    if "label" in cells and any(_HF_COLUMN.match(c) for c in cells):
        return "hf_csv"
    if first.startswith((BOM, b'"')):
        return "spreadsheet"
    return "mindbigdata"


def spreadsheet_message(path: str | Path, head: bytes) -> str:
    """One line saying what a spreadsheet export did to MindBigData lines, with the count of affected lines."""
    lines = [ln for ln in head.split(b"\n") if ln.strip()]
    quoted = sum(ln.lstrip(BOM).startswith(b'"') for ln in lines)
    what = ["a byte-order mark"] if head.startswith(BOM) else []
    if quoted:
        what.append(f"quoted first fields ({quoted} of the first {len(lines)} lines)")
    return (f"{path} looks like a spreadsheet export of MindBigData lines ({', '.join(what)}); spreadsheets also cut "
            f"long value lists at their column limit. Use the original tab-separated file from MindBigData (or its "
            f"zip), not a re-saved copy")


def detect_device(path: str | Path, head: bytes) -> str:
    """The device named by the MindBigData lines in ``head`` (third tab-separated field); refuses a mix."""
    seen: dict[str, int] = {}
    for line in head.split(b"\n"):
        f = line.split(b"\t", 3)
        if len(f) >= 4:
            name = f[2].decode("latin-1").strip()
            seen[name] = seen.get(name, 0) + 1
    known = {k: v for k, v in seen.items() if k in DEVICES}
    if len(known) == 1:
        return next(iter(known))
    if not known:
        raise DataFormatError(f"{path}: no MindBigData lines of a known device ({', '.join(DEVICES)}) in its first "
                              f"{len(head)} bytes; is it a MindBigData file?")
    mix = ", ".join(f"{k} ({v} lines)" for k, v in sorted(known.items()))
    raise DataFormatError(f"{path} holds lines of several devices in its first {len(head)} bytes: {mix}; "
                          f"choose one with --device")


def file_device(path: str | Path) -> str | None:
    """The device a file holds, as :func:`helpers.mindbigdata.parse_file` would choose it without ``--device``
    (None for a spreadsheet export, which the parser refuses). Caches key on it, so that "detected" and "named"
    reuse one cache."""
    head = read_head(path)
    kind = sniff(head)
    if kind == "hf_csv":
        return hf_columns(head.split(b"\n", 1)[0].decode("utf-8-sig").strip().split(","))[0]
    return detect_device(path, head) if kind == "mindbigdata" else None


def hf_columns(header: list[str]) -> tuple[str, list[str], int]:
    """``(device, [column per (channel, sample) in device order], n_samples)`` of a Hugging Face CSV header."""
    by_channel: dict[str, dict[int, str]] = {}
    for col in header:
        m = _HF_COLUMN.match(col.strip())
        if m:
            by_channel.setdefault(m.group(1).upper(), {})[int(m.group(2))] = col
    names = set(by_channel)
    matches = [d for d in DEVICES.values() if {c.upper() for c in d.channels} == names]
    if not matches:
        raise DataFormatError(f"CSV channels {sorted(names)} are not those of a MindBigData device "
                              f"({'; '.join(f'{d.name}: {list(d.channels)}' for d in DEVICES.values())})")
    spec = matches[0]
    lengths = {len(v) for v in by_channel.values()}
    n = max(max(v) for v in by_channel.values()) + 1
    if lengths != {n}:
        raise DataFormatError(f"CSV columns must run <channel>-0 .. <channel>-{n - 1} for every channel; "
                              f"some channels lack samples")
    return spec.name, [by_channel[c.upper()][t] for c in spec.channels for t in range(n)], n


def parse_hf_csv(path: str | Path, device: str | None = None):
    """The Hugging Face MindBigData2022 CSV (``label``, then ``<channel>-<sample>`` columns in any order) as
    ``(Events, ParseReport)``. Rows become events in file order with ids 0, 1, ...; ``label`` -1 (random
    action) is kept as code -1, as in the text files. A row with an empty, NaN or infinite value (or a label
    outside -1..9) is skipped and counted; text where a number belongs refuses the file in one line. The
    report's ``notes`` say what the CSV cannot tell (no event ids; its own random split)."""
    import pandas as pd

    t0 = time.perf_counter()
    with open_stream(path) as (fh, _, desc):
        header = fh.readline().decode("utf-8-sig").strip().split(",")
        if "label" not in header:
            raise DataFormatError(f"{desc}: no 'label' column in the CSV header")
        name, columns, n_samples = hf_columns(header)
        if device is not None and device != name:
            raise DataFormatError(f"{desc}: its columns are {name} channels, not {device}")
        spec = DEVICES[name]
        try:
            frame = pd.read_csv(fh, header=None, names=header, usecols=["label", *columns], engine="c",
                                dtype={c: np.float32 for c in columns} | {"label": np.float64},
                                on_bad_lines="error")
        except (ValueError, pd.errors.ParserError) as e:  # a non-numeric cell or a row of the wrong length
            raise DataFormatError(f"{desc}: not a clean numeric CSV ({str(e).splitlines()[0][:200]}); every value "
                                  f"must be a number (empty cells and NaN are counted and skipped)") from None
    labels = frame["label"].to_numpy()
    values = frame[columns].to_numpy(np.float32).reshape(len(frame), len(spec.channels), n_samples)
    ok_label = np.isfinite(labels) & (labels == np.round(labels)) & (labels >= -1) & (labels <= 9)
    ok_values = np.isfinite(values).all(axis=(1, 2))
    keep = ok_label & ok_values
    rep = ParseReport(path=desc, device=name, channels=list(spec.channels), sfreq=spec.sfreq)
    rep.lines_total = rep.lines_device = int(len(frame))
    rep.events_total, rep.events_valid = int(len(frame)), int(keep.sum())
    skipped = {"code_out_of_range": int((~ok_label).sum()), "non_finite_value": int((ok_label & ~ok_values).sum())}
    rep.events_skipped = {k: v for k, v in skipped.items() if v}
    for row in np.flatnonzero(~keep)[:20]:
        rep.skipped_examples.append({"event": int(row), "line": int(row) + 2,
                                     "reason": "code_out_of_range" if not ok_label[row] else "non_finite_value",
                                     "detail": f"row {int(row)}"})
    codes = labels[keep].astype(np.int64)
    vals, cnts = np.unique(codes, return_counts=True)
    rep.codes = {str(int(k)): int(v) for k, v in zip(vals, cnts)}
    if keep.any():
        rep.size_min = rep.size_max = n_samples
        rep.size_median = float(n_samples)
    rep.notes = list(HF_NOTES)
    rep.seconds = round(time.perf_counter() - t0, 3)
    n_keep = int(keep.sum())
    events = Events(signals=values[keep], sizes=np.full(n_keep, n_samples, np.int64), codes=codes,
                        event_ids=np.flatnonzero(keep).astype(np.int64), channels=spec.channels, device=name,
                        sfreq=spec.sfreq)
    return events, rep
