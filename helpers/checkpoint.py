"""Checkpoints that are written atomically, carry their own checksum, and can never run code when loaded.

A checkpoint holds tensors and plain data only (dicts, lists, str, int, float, bool, None), so it loads
with ``torch.load(weights_only=True)``: a file from elsewhere cannot execute anything.

Checksum: the file is what ``torch.save`` writes (a zip archive), with a SHA-256 of the whole file stored
in the zip's own archive comment at its very end (``eeg2img-sha256:<64 hex>``). ``torch.load`` still reads
it as it is, and :func:`load_checkpoint` verifies it first, so a flipped byte anywhere, a file cut short at
any point (even by one byte) or another file in its place is a :class:`CheckpointError` with one line that
says what is wrong, never a silently different model or a traceback.

Writing goes through :func:`helpers.atomic.atomic_write` (temporary file in the same folder, fsync,
``os.replace``, fsync of the folder): a run killed mid-write, or a full disk, leaves the previous checkpoint
intact. With ``previous=``, the checkpoint being replaced is kept under that name (when it is intact), so
that a checkpoint damaged later on disk still leaves one good one to resume from
(:func:`load_checkpoint_or_previous`).
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
from pathlib import Path
from typing import Any, Callable

import torch

from helpers.atomic import atomic_write, fsync_dir, write_bytes_atomic, write_text_atomic  # noqa: F401 (re-exported)

_TAG = b"eeg2img-sha256:"
_DIGEST_LEN = 64  # hex characters of a SHA-256
_TRAILER_LEN = len(_TAG) + _DIGEST_LEN
_EOCD = b"PK\x05\x06"  # zip end-of-central-directory record: 22 bytes + the archive comment
_EOCD_LEN = 22


class CheckpointError(RuntimeError):
    """A checkpoint could not be read: missing, truncated, corrupt, or carrying code."""


def _seal(data: bytes | memoryview) -> bytes:
    """``torch.save`` bytes -> the same archive with the checksum as its zip comment."""
    data = bytes(data)
    eocd = len(data) - _EOCD_LEN
    if eocd < 0 or data[eocd:eocd + 4] != _EOCD or data[-2:] != b"\x00\x00":
        raise ValueError("torch.save did not end its archive with a comment-less zip directory record")
    body = data[:-2] + _TRAILER_LEN.to_bytes(2, "little") + _TAG
    return body + hashlib.sha256(body).hexdigest().encode("ascii")


def _verified(path: Path, data: bytes) -> None:
    """Raise CheckpointError unless ``data`` ends in a checksum trailer that matches the rest."""
    tail = data[-(_EOCD_LEN + _TRAILER_LEN):]
    if (len(data) < _EOCD_LEN + _TRAILER_LEN or tail[:4] != _EOCD
            or tail[20:22] != _TRAILER_LEN.to_bytes(2, "little") or tail[_EOCD_LEN:_EOCD_LEN + len(_TAG)] != _TAG):
        raise CheckpointError(
            f"{path} is truncated or not a checkpoint of this project: it does not end with the checksum that "
            f"save_checkpoint writes ({len(data)} bytes). Delete it to start afresh, or restore a good copy.")
    if hashlib.sha256(data[:-_DIGEST_LEN]).hexdigest().encode("ascii") != data[-_DIGEST_LEN:]:
        raise CheckpointError(
            f"{path} is corrupt: its SHA-256 checksum does not match its content (a byte changed on disk or "
            f"in a copy). Delete it to start afresh, or restore a good copy.")


def is_intact(path: str | Path) -> bool:
    """Whether ``path`` is a checkpoint whose checksum matches (no unpickling)."""
    try:
        _verified(Path(path), Path(path).read_bytes())
        return True
    except (OSError, CheckpointError):
        return False


def save_checkpoint(obj: dict[str, Any], path: str | Path, previous: str | Path | None = None) -> Path:
    """Write ``obj`` to ``path`` atomically, with its checksum.

    ``previous``: where to keep the checkpoint that ``path`` held until now, if it is intact (a damaged one
    is never rotated over a good previous one). ``path`` exists at every moment: the old file is hard-linked
    to ``previous`` before the new one replaces it (renamed where links are not supported).
    """
    path = Path(path)
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = _seal(buf.getbuffer())
    del buf

    def keep_previous() -> None:
        if previous is None or not path.is_file() or not is_intact(path):
            return
        prev = Path(previous)
        link = prev.with_name(f".{prev.name}.{os.getpid()}.link")
        try:
            link.unlink(missing_ok=True)
            os.link(path, link)
            os.replace(link, prev)
        except OSError:
            link.unlink(missing_ok=True)
            os.replace(path, prev)
        if prev.parent != path.parent:
            fsync_dir(prev.parent)

    return write_bytes_atomic(path, data, before_replace=keep_previous)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Verify the checksum, then load with ``weights_only=True``; every failure is one CheckpointError line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path} cannot be read ({e.strerror or e})") from None
    _verified(path, data)
    try:
        obj = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses globals it does not know: exactly what a crafted pickle needs.
        raise CheckpointError(
            f"{path} was refused: it holds objects other than tensors and plain data, so loading it could run "
            f"code. Only load checkpoints written by this project. ({str(e).splitlines()[0]})") from None
    except Exception as e:  # noqa: BLE001 - a checksummed file torch cannot read: say so in one line
        detail = str(e).splitlines()[0] if str(e) else "no detail"
        raise CheckpointError(f"{path} is corrupt and cannot be read ({type(e).__name__}: {detail}). Delete it "
                              f"to start afresh, or restore a good copy.") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} does not hold a checkpoint dictionary (found {type(obj).__name__})")
    return obj


def load_checkpoint_or_previous(path: str | Path, previous: str | Path,
                                map_location: str | torch.device = "cpu",
                                log: Callable[[str], None] | None = None) -> tuple[dict[str, Any], Path]:
    """Load ``path``; if it is missing or damaged, fall back to ``previous`` and say so through ``log``
    (a warning naming both files). Returns ``(checkpoint, the file it came from)``.

    Neither readable: CheckpointError naming both reasons; nothing on disk is touched either way.
    """
    path, previous = Path(path), Path(previous)
    try:
        return load_checkpoint(path, map_location), path
    except CheckpointError as e:
        first = str(e)
    if not previous.is_file():
        raise CheckpointError(f"{first} (and there is no previous checkpoint {previous.name} to fall back to)")
    try:
        obj = load_checkpoint(previous, map_location)
    except CheckpointError as e:
        raise CheckpointError(f"no good checkpoint to resume from, nothing was changed: {path.name}: {first} "
                              f"| {previous.name}: {e}") from None
    msg = (f"WARNING: {path} cannot be used ({first}); falling back to the previous good checkpoint {previous} "
           f"(epoch {obj.get('epoch', '?')}). {path.name} will be replaced at the next save.")
    if log is None:
        import warnings

        warnings.warn(msg, CheckpointFallbackWarning, stacklevel=2)
    else:
        log(msg)
    return obj, previous


class CheckpointFallbackWarning(UserWarning):
    """The last checkpoint was damaged; the previous good one was used instead."""
