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
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable

__all__ = ["atomic_write", "write_bytes_atomic", "write_text_atomic", "fsync_dir"]


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
