"""Procedural, non-repeating surface textures for the synthetic room.

Why these ingredients: feature matchers (SIFT, MASt3R) need many distinctive, non-repeating
structures at several scales. Multi-octave value noise gives texture at every scale, random
coloured shapes give blob/corner features, and random text-like strings give dense, unique
high-frequency detail (like posters and labels in a real room). Everything is drawn from the
given ``numpy.random.Generator`` so textures are deterministic from a seed.
"""
from __future__ import annotations

import string

import cv2
import numpy as np

_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
          cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX)
_CHARS = string.ascii_letters + string.digits + "#%&+-=<>"


def value_noise(rng: np.random.Generator, h: int, w: int, cell_px: float) -> np.ndarray:
    """[h,w] float32 smooth noise in about [0,1]: a random grid upsampled bicubically."""
    gh, gw = int(np.ceil(h / cell_px)) + 2, int(np.ceil(w / cell_px)) + 2
    grid = rng.random((gh, gw), dtype=np.float32)
    big = cv2.resize(grid, (int((gw - 1) * cell_px), int((gh - 1) * cell_px)), interpolation=cv2.INTER_CUBIC)
    return big[:h, :w]


def fbm(rng: np.random.Generator, h: int, w: int, base_cell_px: float, octaves: int = 5) -> np.ndarray:
    """[h,w] float32 fractal (multi-octave) noise normalised to [0,1]."""
    out = np.zeros((h, w), np.float32)
    amp, cell = 1.0, base_cell_px
    for _ in range(octaves):
        out += amp * value_noise(rng, h, w, max(cell, 2.0))
        amp *= 0.55
        cell /= 2.0
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def _random_color(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _draw_shapes(rng: np.random.Generator, img: np.ndarray, n: int, px_per_m: float) -> None:
    h, w = img.shape[:2]
    for _ in range(n):
        kind = rng.integers(0, 4)
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        size = int(px_per_m * rng.uniform(0.02, 0.15))
        color = _random_color(rng)
        if kind == 0:
            cv2.circle(img, c, max(size, 2), color, -1 if rng.random() < 0.6 else int(rng.integers(1, 4)),
                       cv2.LINE_AA)
        elif kind == 1:
            p2 = (c[0] + int(size * rng.uniform(0.5, 2.5)), c[1] + int(size * rng.uniform(0.5, 2.5)))
            cv2.rectangle(img, c, p2, color, -1 if rng.random() < 0.6 else int(rng.integers(1, 4)))
        elif kind == 2:
            pts = np.asarray(c) + rng.normal(0, max(size, 2), (int(rng.integers(3, 6)), 2))
            cv2.fillPoly(img, [pts.astype(np.int32)], color, cv2.LINE_AA)
        else:
            p2 = (c[0] + int(rng.normal(0, 2 * size + 1)), c[1] + int(rng.normal(0, 2 * size + 1)))
            cv2.line(img, c, p2, color, int(rng.integers(1, 5)), cv2.LINE_AA)


def _draw_text(rng: np.random.Generator, img: np.ndarray, n: int, px_per_m: float) -> None:
    h, w = img.shape[:2]
    for _ in range(n):
        text = "".join(rng.choice(list(_CHARS), int(rng.integers(3, 10))))
        font = _FONTS[int(rng.integers(0, len(_FONTS)))]
        scale = px_per_m * rng.uniform(0.04, 0.12) / 22.0  # Hershey glyphs are ~22 px tall at scale 1
        org = (int(rng.integers(-20, w)), int(rng.integers(0, h + 20)))
        thick = max(1, int(round(scale * rng.uniform(1.0, 2.5))))
        cv2.putText(img, text, org, font, scale, _random_color(rng), thick, cv2.LINE_AA)


def make_texture(rng: np.random.Generator, size_m: tuple[float, float], res_m: float,
                 base_rgb: tuple[int, int, int], density: float = 1.0, max_px: int = 2048) -> np.ndarray:
    """Render one surface texture.

    Args:
        size_m: (width, height) of the surface in metres.
        res_m: metres per texel (capped so neither side exceeds ``max_px``).
        base_rgb: dominant colour of the surface (0..255).
        density: multiplier of shapes/text per square metre.
    Returns:
        [H,W,3] uint8 RGB texture covering the whole surface (texel (0,0) at the surface origin).
    """
    px_per_m = min(1.0 / res_m, max_px / max(size_m))
    w, h = max(int(np.ceil(size_m[0] * px_per_m)), 4), max(int(np.ceil(size_m[1] * px_per_m)), 4)
    base = np.asarray(base_rgb, np.float32)
    lum = fbm(rng, h, w, base_cell_px=0.5 * px_per_m)
    tint = np.stack([fbm(rng, h, w, 0.8 * px_per_m, octaves=3) for _ in range(3)], axis=-1) - 0.5
    img = base * (0.55 + 0.8 * lum[..., None]) + 60.0 * tint
    img = np.clip(img, 0, 255).astype(np.uint8)
    area = size_m[0] * size_m[1]
    _draw_shapes(rng, img, int(np.ceil(22 * density * area)), px_per_m)
    _draw_text(rng, img, int(np.ceil(16 * density * area)), px_per_m)
    fine = (value_noise(rng, h, w, 3.0) - 0.5) * 40.0  # fine grain keeps even flat shapes matchable
    return np.clip(img.astype(np.float32) + fine[..., None], 0, 255).astype(np.uint8)
