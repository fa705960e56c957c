"""The project's one way to write a file: all or nothing, even on a crash, a kill or a full disk.

Every writer (checkpoints, JSON/CSV results, the parse cache, the synthetic data file, the judge) goes
through :func:`atomic_write`:

1. the content goes to a temporary file in the destination's own folder (``os.replace`` is atomic only
   within one file system), created with ``mkstemp`` so that two processes never share it;
2. it is flushed and ``fsync``-ed, so that the bytes are on disk before the name points at them;
3. ``os.replace`` puts it in place in one step: a reader sees the old file or the new one, never half;
4. the folder is ``fsync``-ed, so that the rename itself survives a power cut.

If anything fails before step 3 (a full disk, ``File too large``, a kill, an exception in the writer) the
temporary file is removed and the previous file is left exactly as it was.

Results go out as strict JSON through :func:`write_json_atomic`, after :func:`to_plain` has turned numpy and torch
values into plain ones (and refused NaN and inf), before anything touches the disk.
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np

__all__ = ["atomic_write", "write_bytes_atomic", "write_text_atomic", "fsync_dir", "to_plain", "write_json_atomic"]


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None], *, mode: int = 0o644,
                 before_replace: Callable[[], None] | None = None) -> Path:
    """Write ``path`` through ``write(binary_file)`` so that it is replaced completely or not at all.

    ``before_replace`` runs after the new content is safely on disk and just before it takes the name
    (checkpoints use it to keep the previous one). An ``OSError`` names the file and says that the previous
    version is unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600; results are for reading
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.errno is None:
            raise
        raise OSError(e.errno, f"{e.strerror} while writing {path} (the previous version, if any, is unchanged)"
                      ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes | bytearray | memoryview, **kw) -> Path:
    """Write bytes with :func:`atomic_write`."""
    return atomic_write(path, lambda f: f.write(data), **kw)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text with :func:`atomic_write`: never a half-written file."""
    return write_bytes_atomic(path, text.encode("utf-8"))


# ----------------------------------------------------------------------------------------------
# Plain JSON, written atomically
# ----------------------------------------------------------------------------------------------

def to_plain(obj: Any, where: str = "$") -> Any:
    """Convert to plain JSON types (numpy/torch scalars and arrays, tuples, Paths, ``to_dict()`` objects).

    Refuses NaN/inf and unknown types with an error that names where in the structure they are,
    so that ``metrics.json`` is always strict JSON that any reader accepts.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        if not math.isfinite(float(obj)):
            raise ValueError(f"{where}: {float(obj)} is not allowed in JSON (strict JSON has no NaN/inf)")
        return float(obj)
    torch = sys.modules.get("torch")  # a tensor exists only once torch is imported: no import here
    if torch is not None and isinstance(obj, torch.Tensor):
        return to_plain(obj.detach().cpu().numpy(), where)
    if isinstance(obj, np.ndarray):
        return to_plain(obj.tolist(), where)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int, np.integer)) or isinstance(k, bool):
                raise TypeError(f"{where}: key {k!r} of type {type(k).__name__} is not a JSON key")
            out[str(k)] = to_plain(v, f"{where}.{k}")
        return out
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_plain(obj.to_dict(), where)
    raise TypeError(f"{where}: value of type {type(obj).__name__} cannot be written as JSON")


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON to ``path`` with :func:`write_text_atomic`.

    Conversion (:func:`to_plain`) happens before anything touches the disk, and the old file is only
    replaced once the new one is complete and flushed: a crash at any point leaves the previous
    file intact and no temporary file behind.
    """
    text = json.dumps(to_plain(obj), indent=indent, allow_nan=False) + "\n"
    return write_text_atomic(path, text)
