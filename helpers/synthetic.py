"""The synthetic default data set, written: a MindBigData-format text file with a known class signal.

:func:`write_synthetic` draws events from the generative model of :mod:`helpers.synthmodel` (the signal, the
background, blinks, the session signatures, and the oracle (Bayes) accuracy its known parameters allow) and writes
them, 14 lines per event, in the exact text format of ``EP1.01.txt``: values quantised to the EPOC step 1/7.8 uV
and printed with 6 decimals like the real file, atomically, with ``<path>.json`` (:class:`SyntheticInfo`: what was
written and its oracle top-1) next to it. The model's public names (``SyntheticSpec``, ``oracle_accuracy``,
``OracleClassifier``, ...) are re-exported here.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from helpers.atomic import atomic_write, write_text_atomic
from helpers.synthmodel import (  # noqa: F401 - re-exported: synthetic.SyntheticSpec etc. (datasets, tests, benchmarks)
    _BATCH,
    _MAX_SIZE,
    CHANNELS,
    LABEL_MODES,
    N_CH,
    ORACLE_SAMPLES,
    SFREQ,
    OracleClassifier,
    SyntheticSpec,
    _event_plan,
    _session_signatures,
    _simulate,
    oracle_accuracy,
)


@dataclass
class SyntheticInfo:
    """What was written, and the best accuracy its known parameters allow."""
    path: str
    n_events: int
    n_lines: int
    oracle_top1: float  # Bayes accuracy over the 10 digits (chance 0.1 when there is no class signal)
    oracle_se: float  # Monte Carlo standard error of oracle_top1
    chance_top1: float
    spec: dict = field(default_factory=dict)
    block_starts: list = field(default_factory=list)  # session_blocks: first event index of each block
    n_bytes: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------- text

def _format_values(k: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bytes of the quantised values k/7.8 printed like '%.6f', each followed by ',' (or '\\n' where
    ``last``), as one uint8 array; plus each value's byte length. Exact integer arithmetic:
    round(1e6 * k / 7.8) = round(5e6 * k / 39), never a tie since 39 is odd."""
    neg = k < 0
    q = (10_000_000 * np.abs(k) + 39) // 78
    ip, fp = np.divmod(q, 1_000_000)
    width = 16  # sign + up to 7 integer digits + '.' + 6 decimals + separator
    ch = np.zeros((k.size, width), np.uint8)
    ch[:, 15] = np.where(last, 10, 44)
    for col in range(14, 8, -1):
        fp, d = np.divmod(fp, 10)
        ch[:, col] = d + 48
    ch[:, 8] = 46
    if ip.size and ip.max() >= 10_000_000:
        raise ValueError("a synthetic value reached 10^7 uV: the generator's amplitudes are broken")
    rest = ip
    for col in range(7, 0, -1):
        rest, d = np.divmod(rest, 10)
        ch[:, col] = d + 48
    ndig = 1 + sum((ip >= 10 ** j).astype(np.int64) for j in range(1, 7))
    first = 8 - ndig - neg
    rows = np.flatnonzero(neg)
    ch[rows, first[rows]] = 45  # '-'
    keep = np.arange(width)[None, :] >= first[:, None]
    return ch[keep], width - first


def write_synthetic(path: str | Path, spec: SyntheticSpec | None = None, progress: bool = False) -> SyntheticInfo:
    """Write ``spec.n_events`` events (14 lines each) in the MindBigData text format to ``path``
    (atomically), plus ``<path>.json`` with the :class:`SyntheticInfo`; return the info."""
    spec = spec or SyntheticSpec()
    spec.check()
    t0 = time.perf_counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plan = _event_plan(spec)
    sig = _session_signatures(spec) if spec.label_mode == "session_blocks" else None
    chan_b = [c.encode() for c in CHANNELS]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=spec.n_events, unit="ev", desc=f"writing {path.name}")

    def write_events(fh) -> None:
        line_id = spec.first_event_id
        for lo in range(0, spec.n_events, _BATCH):
            hi = min(spec.n_events, lo + _BATCH)
            x = _simulate(spec, plan, lo, hi, sig)
            sizes = plan["sizes"][lo:hi]
            valid = np.arange(_MAX_SIZE)[None, None, :] < sizes[:, None, None]
            valid = np.broadcast_to(valid, x.shape)
            k = np.rint(x[valid] * 7.8).astype(np.int64)  # event, channel, sample order
            # The last value of each line ends it.
            line_len = np.repeat(sizes, N_CH)
            last = np.zeros(k.size, bool)
            last[np.cumsum(line_len) - 1] = True
            data, vbytes = _format_values(k, last)
            data = data.tobytes()
            line_bytes = np.add.reduceat(vbytes, np.r_[0, np.cumsum(line_len)[:-1]])
            offs = np.r_[0, np.cumsum(line_bytes)]
            parts = []
            li = 0
            for e in range(hi - lo):
                ev, code, size = int(plan["ids"][lo + e]), int(plan["codes"][lo + e]), int(sizes[e])
                for c in range(N_CH):
                    parts.append(b"%d\t%d\tEP\t%s\t%d\t%d\t" % (line_id, ev, chan_b[c], code, size))
                    parts.append(data[offs[li]:offs[li + 1]])
                    line_id += 1
                    li += 1
            fh.write(b"".join(parts))
            if bar is not None:
                bar.update(hi - lo)

    try:
        atomic_write(path, write_events)  # temporary file in the same folder, fsync, rename: never half a file
    finally:
        if bar is not None:
            bar.close()
    acc, se = oracle_accuracy(spec)
    if spec.class_priors is not None:  # no signal: the best guess is the most frequent digit
        acc, se = float(max(spec.class_priors)), 0.0
    starts = []
    if spec.label_mode == "session_blocks":
        starts = [int(i) for i in np.flatnonzero(np.diff(np.r_[-1, plan["blocks"]]))]
    info = SyntheticInfo(path=str(path), n_events=spec.n_events, n_lines=spec.n_events * N_CH,
                         oracle_top1=acc, oracle_se=se,
                         chance_top1=0.1 if spec.class_priors is None else float(max(spec.class_priors)), spec=asdict(spec),
                         block_starts=starts, n_bytes=path.stat().st_size,
                         seconds=round(time.perf_counter() - t0, 3))
    write_text_atomic(info_path(path), json.dumps(info.to_dict(), indent=1) + "\n")
    return info


def info_path(path: str | Path) -> Path:
    """Where :func:`write_synthetic` keeps the info of a file: ``<path>.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_info(path: str | Path) -> SyntheticInfo | None:
    """The info written next to a synthetic file, or None (e.g. for the real data)."""
    p = info_path(path)
    if not p.is_file():
        return None
    return SyntheticInfo(**json.loads(p.read_text()))
