"""Where pretrained CLIP weights come from: the local caches (Hugging Face, open_clip's URL cache) or the hub.

Split from helpers.semantic, which wraps whatever weights are loaded. Offline, a missing file is found out
within seconds (:data:`PROBE_TIMEOUT_S`, not open_clip's retries) and :class:`ClipUnavailableError` lists the
ways out (a checkpoint file, a populated cache, untrained weights, digit-CLIP). See
docs/DESIGN.md#loading-clip_weights.
"""
from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlparse

import open_clip
from torch import nn

from helpers.digit_clip import DIGIT_CLIP_NAME

PROBE_TIMEOUT_S = 3.0  # how long we wait to learn that the hub is unreachable (instead of 45 s of retries)


class ClipUnavailableError(RuntimeError):
    """Pretrained CLIP weights were asked for but cannot be had (offline, not cached, unknown tag)."""


def _hf_offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    try:
        from huggingface_hub import constants
        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # no huggingface_hub: open_clip falls back to URLs
        return False


def _hf_cache_dir() -> str:
    # Read at call time (huggingface_hub reads it once at import), so tests and users can redirect it.
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")


def cached_weights_file(pcfg: dict) -> str | None:
    """The local file of a pretrained tag if it was downloaded before (HF cache or open_clip's URL cache)."""
    hub = pcfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
            from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
        except ImportError:
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            repo, filename = os.path.split(hub)  # as open_clip does: "org/repo/" means the default file
            names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
            if filename.endswith((".bin", ".pth")):
                names.insert(0, filename[:-4] + ".safetensors")
            for name in names:
                found = try_to_load_from_cache(repo, name, cache_dir=_hf_cache_dir())
                if isinstance(found, str) and os.path.isfile(found):
                    return found
    url = pcfg.get("url", "")
    if url:
        local = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(local):
            return local
    return None


def _reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Can we open a TCP connection to the host of ``url`` within ``timeout`` seconds (DNS included)?"""
    host = urlparse(url).hostname
    if not host:
        return False
    port = urlparse(url).port or (443 if url.startswith("https") else 80)
    result = {"ok": False}

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result["ok"] = True
        except OSError:
            pass

    # DNS resolution ignores socket timeouts, so the probe runs in a daemon thread we stop waiting for.
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return result["ok"]


def _ways_out(model_name: str, tag: str, pcfg: dict | None) -> str:
    repo = (pcfg or {}).get("hf_hub", "").rstrip("/") or "(the tag's hub repository)"
    return ("Ways out:\n"
            f"  1. a local checkpoint file: clip_weights=/path/to/file (a state_dict of {model_name}, e.g. "
            f"open_clip_pytorch_model.bin), e.g. --set clip_weights=/path/to/file;\n"
            f"  2. a populated Hugging Face cache: download {repo} once where there is internet "
            f"(into {_hf_cache_dir()}, or set HF_HOME), then it is used offline;\n"
            "  3. clip_weights=untrained: random CLIP weights, mechanics only; semantic results reflect image "
            "likeness, not meaning;\n"
            f"  4. clip_model={DIGIT_CLIP_NAME}: the small CLIP this project trains on digits (what "
            "clip_weights=auto falls back to).")


def load_pretrained(model_name: str, tag: str) -> nn.Module:
    """Pretrained weights from the cache, else from the hub if reachable; ClipUnavailableError otherwise."""
    pcfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not pcfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise ClipUnavailableError(
            f"no pretrained weights {tag!r} for CLIP {model_name!r} "
            f"(known tags: {', '.join(tags) if tags else 'none'}).\n" + _ways_out(model_name, tag, None))
    # The tag's preprocessing (mean/std) goes with the weights, also when they come from a file.
    pp = {k: pcfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in pcfg}
    cached = cached_weights_file(pcfg)
    if cached:
        return open_clip.create_model(model_name, pretrained=cached, force_preprocess_cfg=pp)
    if _hf_offline():
        raise ClipUnavailableError(
            f"pretrained CLIP {model_name} / {tag} is not in the local cache and HF_HUB_OFFLINE is set.\n"
            + _ways_out(model_name, tag, pcfg))
    try:
        from huggingface_hub import constants
        endpoint = constants.ENDPOINT
    except ImportError:
        endpoint = pcfg.get("url", "")
    if not _reachable(endpoint if pcfg.get("hf_hub") else pcfg.get("url", "")):
        raise ClipUnavailableError(
            f"pretrained CLIP {model_name} / {tag} is not cached and {urlparse(endpoint).hostname} cannot be "
            f"reached (no network?).\n" + _ways_out(model_name, tag, pcfg))
    try:
        return open_clip.create_model(model_name, pretrained=tag)
    except Exception as e:
        raise ClipUnavailableError(f"downloading CLIP {model_name} / {tag} failed: {e}\n"
                                   + _ways_out(model_name, tag, pcfg)) from e
