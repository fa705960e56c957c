"""``python -m helpers download``: the official MindBigData zip over HTTP(S), resumable and checked.

* A partial download lives beside the target as ``<name>.part``; running the command again asks the server for the
  rest (HTTP ``Range``) and appends it. A server that ignores ``Range`` (answers 200) restarts the file cleanly.
* The finished file must have the length the server announced, and every member of a zip must pass its CRC
  (``zipfile.ZipFile.testzip``) before it is moved into place (``os.replace``): a damaged download is refused and
  removed, never left where the pipeline would read it.
* Its SHA-256 is printed and written next to it (``<name>.sha256``) for the user to compare with what others
  downloaded; MindBigData publishes no checksum of its own.
* Without a network: one line naming the URL and what to do by hand.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from urllib.parse import urlparse

from helpers.atomic import fsync_dir, write_text_atomic
from helpers.log import progress_enabled

# The files the MindBigData "open database" page links (https://mindbigdata.com/opendb/), one per device.
OFFICIAL_URLS = {dev: f"https://mindbigdata.com/opendb/MindBigData-{dev}-v1.0.zip" for dev in ("EP", "MW", "MU", "IN")}
CHUNK = 1 << 20
TIMEOUT_S = 30


class DownloadError(RuntimeError):
    """The download could not finish or did not check out; the message says what to do."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _by_hand(url: str, out_dir: Path) -> str:
    return (f"download {url} in a browser (or from https://mindbigdata.com/opendb/) and put it in {out_dir}/; "
            f"the zip works as it is (`python -m helpers inspect {out_dir}/{Path(urlparse(url).path).name}`)")


def _check_zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:  # CRC, inflate or a cut member
        raise DownloadError(f"{path.name} is not a readable zip ({e})") from None
    if bad is not None:
        raise DownloadError(f"{path.name}: member {bad} fails its CRC check")


def download(url: str, out_dir: str | Path = "dataset", progress: bool | None = None,
             timeout: float = TIMEOUT_S) -> tuple[Path, str]:
    """Fetch ``url`` into ``out_dir`` (resuming a ``.part`` file), check it, move it into place.

    Returns ``(path, sha256)``. Raises :class:`DownloadError` with a one-line, actionable message.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    name = Path(urlparse(url).path).name
    if not name:
        raise DownloadError(f"{url} names no file to download")
    out_dir.mkdir(parents=True, exist_ok=True)
    target, part = out_dir / name, out_dir / f"{name}.part"
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the .part is complete (checked below)
            response = None
        else:
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}; {_by_hand(url, out_dir)}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot reach {url} ({reason}); {_by_hand(url, out_dir)}") from None
    if response is not None:
        with response:
            resumed = response.status == 206
            if not resumed:
                have = 0  # the server sent the whole file: start the .part again
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            show = progress if progress is not None else progress_enabled()
            bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=f"downloading {name}",
                       disable=not show)
            try:
                with open(part, "ab" if resumed else "wb") as fh:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        fh.write(block)
                        bar.update(len(block))
                    fh.flush()
                    os.fsync(fh.fileno())
            except (OSError, urllib.error.URLError, http.client.HTTPException) as e:
                raise DownloadError(f"{url}: interrupted after {part.stat().st_size:,} bytes ({e}); run the same "
                                    f"command again to resume") from None
            finally:
                bar.close()
            got = part.stat().st_size
            if total is not None and got != total:
                raise DownloadError(f"{url}: the connection closed after {got:,} of {total:,} bytes; run the same "
                                    f"command again to resume")
    try:
        if zipfile.is_zipfile(part) or name.lower().endswith(".zip"):
            _check_zip(part)
    except DownloadError as e:
        part.unlink()
        raise DownloadError(f"{e}: the download is damaged and was removed; run the command again") from None
    os.replace(part, target)
    fsync_dir(out_dir)
    digest = _sha256(target)
    write_text_atomic(out_dir / f"{name}.sha256", f"{digest}  {name}\n")
    return target, digest


def cli_download(args) -> int:
    """``python -m helpers download [--device EP] [--url URL] [--out dataset/]``."""
    url = args.url or OFFICIAL_URLS.get(args.device)
    if url is None:
        print(f"error: unknown device {args.device!r}; choose one of {', '.join(OFFICIAL_URLS)} or give --url",
              file=sys.stderr)
        return 2
    from helpers.config import dataset_dir

    try:
        path, digest = download(url, args.out or dataset_dir())
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{path}: complete, every zip member passed its CRC check")
    print(f"sha256 {digest} (also in {path.name}.sha256): compare it with what others downloaded")
    return 0
