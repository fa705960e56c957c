"""The 10 stimulus images: rendered digits 0-9, or a user folder of ``0.jpg`` .. ``9.jpg``.

The EPOC subject of MindBigData saw font-rendered digits (docs/DESIGN.md#stimuli). We render them
deterministically with DejaVu Sans, which ships with matplotlib, so every machine gets the same
pixels without downloading anything. Rendering uses Pillow (a matplotlib dependency) with the font
file that matplotlib's font manager finds.

Conventions: stimuli are ``uint8 [10, S, S, 3]`` (black digit on white, index = digit);
model-side tensors are ``float32 [10, 3, S, S]`` in ``[-1, 1]``.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

N_DIGITS = 10
DEFAULT_FONT = "DejaVu Sans"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Supersampling factor: the glyph is drawn this many times larger, then reduced with a
# Lanczos filter, which gives smooth anti-aliased edges at any output size.
_SUPERSAMPLE = 4


def matplotlib_font_dir() -> Path:
    """The folder of TrueType fonts bundled with matplotlib (DejaVu, STIX, Computer Modern)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=64)
def font_path(font: str = DEFAULT_FONT) -> Path:
    """Resolve a font to a file: a path, a file name in matplotlib's font folder, or a family name.

    Family names go through matplotlib's font manager with ``fallback_to_default=False``, so an
    unknown font is an error rather than silently becoming another one.
    """
    p = Path(font)
    if p.suffix.lower() in (".ttf", ".otf"):
        if p.is_file():
            return p
        bundled = matplotlib_font_dir() / p.name
        if bundled.is_file():
            return bundled
        raise FileNotFoundError(f"font file {font!r} not found (looked as a path and in {matplotlib_font_dir()})")
    from matplotlib import font_manager

    try:
        found = font_manager.findfont(font_manager.FontProperties(family=font), fallback_to_default=False)
    except ValueError as e:
        raise ValueError(f"font family {font!r} not found by matplotlib's font manager") from e
    return Path(found)


def _check_digit(digit) -> int:
    if isinstance(digit, bool) or not isinstance(digit, (int, np.integer)) or not 0 <= int(digit) <= 9:
        raise ValueError(f"digit must be an integer 0-9, got {digit!r}")
    return int(digit)


def render_digit(digit: int, size: int = 224, font: str = DEFAULT_FONT, height_frac: float = 0.7,
                 dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """Render one digit, black on white, as ``uint8 [size, size, 3]``.

    The glyph's ink is scaled so that its height is ``height_frac * size`` (digits are lining
    figures, so all ten end up the same height) and its ink box is centred; ``dx``/``dy`` shift it
    by that fraction of ``size`` (used by the judge's augmentation, zero for the stimuli).
    Deterministic: same arguments, same pixels.
    """
    digit = _check_digit(digit)
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    if not 0.1 <= height_frac <= 0.95:
        raise ValueError(f"height_frac must be in [0.1, 0.95], got {height_frac}")
    big = size * _SUPERSAMPLE
    pil_font = ImageFont.truetype(str(font_path(font)), size=big)
    left, top, right, bottom = pil_font.getbbox(str(digit))
    pad = big // 4
    canvas = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(canvas).text((pad - left, pad - top), str(digit), fill=255, font=pil_font)
    ink_box = canvas.getbbox()
    if ink_box is None:  # a font without this glyph draws nothing: say so rather than return a blank
        raise ValueError(f"font {font!r} draws no ink for digit {digit}")
    glyph = canvas.crop(ink_box)
    gw, gh = glyph.size
    scale = min(height_frac * big / gh, 0.95 * big / gw)
    new_w, new_h = max(1, round(gw * scale)), max(1, round(gh * scale))
    glyph = glyph.resize((new_w, new_h), Image.LANCZOS)
    ink = Image.new("L", (big, big), 0)
    x0 = round((big - new_w) / 2 + dx * big)
    y0 = round((big - new_h) / 2 + dy * big)
    ink.paste(glyph, (x0, y0))
    ink = ink.resize((size, size), Image.LANCZOS)
    gray = 255 - np.asarray(ink, dtype=np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def render_digits(size: int = 224, font: str = DEFAULT_FONT, height_frac: float = 0.7) -> np.ndarray:
    """All ten digits rendered with :func:`render_digit`: ``uint8 [10, size, size, 3]``, index = digit."""
    return np.stack([render_digit(d, size=size, font=font, height_frac=height_frac) for d in range(N_DIGITS)])


def _find_digit_file(folder: Path, digit: int) -> Path | None:
    # Case-insensitive match on the suffix, so "3.JPG" from a camera or Windows works too.
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.stem == str(digit) and p.suffix.lower() in IMAGE_SUFFIXES:
            return p
    return None


def _square_resize(img: Image.Image, size: int) -> np.ndarray:
    """Pad to a square with white (keeping the aspect ratio of the digit), then resize."""
    w, h = img.size
    if w != h:
        side = max(w, h)
        sq = Image.new("RGB", (side, side), (255, 255, 255))
        sq.paste(img, ((side - w) // 2, (side - h) // 2))
        img = sq
    if img.size != (size, size):
        img = img.resize((size, size), Image.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


def load_stimuli(folder: str | os.PathLike, size: int = 224) -> np.ndarray:
    """Load ``0.jpg`` .. ``9.jpg`` (``.jpeg``/``.png`` also accepted) as ``uint8 [10, size, size, 3]``.

    Every digit must be present: a missing one raises ``FileNotFoundError`` naming it (the seed's
    prototype silently reused other images). A file that is not a readable image raises
    ``ValueError`` naming the file. Non-square images are padded with white, then resized.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"stimulus folder {folder} does not exist")
    files = {d: _find_digit_file(folder, d) for d in range(N_DIGITS)}
    missing = [d for d, p in files.items() if p is None]
    if missing:
        names = ", ".join(f"{d}.jpg" for d in missing)
        raise FileNotFoundError(f"stimulus folder {folder} lacks digit(s) {missing} (expected {names}; "
                                f".jpeg/.png also accepted)")
    out = []
    for d in range(N_DIGITS):
        path = files[d]
        try:
            with Image.open(path) as im:
                im.load()
                rgb = im.convert("RGB")
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"stimulus image {path} cannot be read as an image: {e}") from e
        out.append(_square_resize(rgb, size))
    return np.stack(out)


def to_tensor(images: np.ndarray, size: int | None = None) -> torch.Tensor:
    """``uint8 [N, H, W, 3]`` -> ``float32 [N, 3, S, S]`` in ``[-1, 1]``, resized with antialiasing if ``size``."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [N, H, W, 3]; got shape {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0-255); got {images.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = x.clamp(-1.0, 1.0)  # bilinear cannot overshoot, but keep the range exact after float error
    return x.contiguous()


def default_stimulus_folder() -> Path:
    """Where a user's own stimulus images go: ``dataset/stimuli``."""
    from .config import dataset_dir

    return dataset_dir() / "stimuli"


def get_stimuli(folder: str | os.PathLike | None = None, size: int = 224) -> np.ndarray:
    """The stimuli a run uses: the given folder, else ``dataset/stimuli`` if it exists, else rendered.

    An explicitly given folder must exist; the default one is optional.
    """
    if folder is not None:
        return load_stimuli(folder, size=size)
    default = default_stimulus_folder()
    if default.is_dir():
        return load_stimuli(default, size=size)
    return render_digits(size=size)


def stimuli_source(folder: str | os.PathLike | None = None) -> str:
    """A one-line description of where :func:`get_stimuli` takes its images from (for logs and figures)."""
    if folder is not None:
        return f"folder {folder}"
    default = default_stimulus_folder()
    if default.is_dir():
        return f"folder {default}"
    return f"rendered ({DEFAULT_FONT}, matplotlib {_mpl_version()})"


def _mpl_version() -> str:
    import matplotlib

    return matplotlib.__version__
