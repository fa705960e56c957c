"""open_clip learns this project's architectures (eeg2img-tiny, digit-clip) from JSON files: registered on first use.

Its own module so that helpers.semantic and helpers.digit_clip both use it without importing each other.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import open_clip


def register_model_config(name: str, config: dict) -> None:
    """Make an architecture of this project known to open_clip (it finds architectures by JSON file name).

    Called lazily (by :func:`helpers.semantic.load_clip` and :func:`helpers.digit_clip.create_model`), so importing this module
    writes nothing. The file goes to a shared temporary folder, write-then-rename: parallel processes
    (pytest-xdist, notebooks) never read half a file.
    """
    if name in open_clip.list_models():
        return
    text = json.dumps(config, indent=2)
    try:
        folder = Path(tempfile.gettempdir()) / "eeg2img_open_clip_configs"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.json"
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:  # e.g. the shared folder belongs to another user
        path = Path(tempfile.mkdtemp(prefix="eeg2img_clip_")) / f"{name}.json"
        path.write_text(text)
    open_clip.add_model_config(path)
