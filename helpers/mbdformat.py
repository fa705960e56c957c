"""The MindBigData format's types: devices and channel orders, skip reasons, events, the parse report, the error.

Imported by the parser (helpers.textparser, helpers.parse_parallel), the readers (helpers.readers) and the entry
point (helpers.mindbigdata, which re-exports everything here); it imports none of them, so no module cycle.
Format: docs/DESIGN.md#mindbigdata-text-files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
