"""Reading user image files safely: pixel count bounded before decoding, 16-bit images scaled to 8 bits.

Why: a small PNG can declare 20000x10000 pixels (600 MB decoded); PIL then raises its own
DecompressionBombError with a traceback. And PIL's ``convert('RGB')`` clips 16-bit values to 255, so a
16-bit PNG became an all-white network input.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import PIL.Image

MAX_IMAGE_PIXELS = 80_000_000  # 80 Mpx (a 10000x8000 photo); below PIL's own warning threshold (89 Mpx)


def check_pixels(path: str | Path, size: tuple[int, int], what: str = "image") -> None:
    """ValueError naming the file when ``size`` (W, H) exceeds MAX_IMAGE_PIXELS."""
    w, h = size
    if w * h > MAX_IMAGE_PIXELS:
        raise ValueError(f"{what} {path} is {w}x{h} = {w * h / 1e6:.0f} Mpx, more than the "
                         f"{MAX_IMAGE_PIXELS / 1e6:.0f} Mpx this tool decodes; downscale it first")


def open_image(path: str | Path, what: str = "image") -> PIL.Image.Image:
    """Open an image file lazily (header only) with its pixel count checked; ValueError naming the file
    (``what``: how to call it in messages, e.g. 'colour image')."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            img = PIL.Image.open(path)
    except PIL.Image.DecompressionBombError as exc:  # PIL's own limit (2 x 89 Mpx) fired first
        m = re.search(r"\((\d+) pixels\)", str(exc))
        n = f"{int(m.group(1)) / 1e6:.0f} Mpx" if m else "too many pixels"
        raise ValueError(f"{what} {path} is {n}, more than the {MAX_IMAGE_PIXELS / 1e6:.0f} Mpx this tool "
                         "decodes; downscale it first") from None
    except (OSError, ValueError, PIL.UnidentifiedImageError) as exc:
        raise ValueError(f"cannot read {what} {path}: {' '.join(str(exc).split())}") from None
    try:
        check_pixels(path, img.size, what)
    except ValueError:
        img.close()
        raise
    return img


def to_rgb8(img: PIL.Image.Image, source: str | Path = "image") -> PIL.Image.Image:
    """8-bit RGB version of ``img``: 16-bit and 32-bit integer grey levels are scaled (65535 -> 255), not
    clipped; float images are refused (their range is unknown)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        if img.mode == "I" and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(f"{source}: 32-bit integer image with values outside [0, 65535]")
        grey = np.round(arr * (255.0 / 65535.0)).astype(np.uint8)
        return PIL.Image.fromarray(np.repeat(grey[..., None], 3, axis=2), "RGB")
    if img.mode == "F":
        raise ValueError(f"{source}: floating-point images are not supported (save it as 8- or 16-bit)")
    return img.convert("RGB")
