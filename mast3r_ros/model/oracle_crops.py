"""Which registered frame, and which window of it, a network-sized crop is (for coarse-to-fine).

Coarse-to-fine matching (``matching/coarse_to_fine.py``) sends the network windows of a full-resolution
image, cut at its working resolution without resizing, so a crop's pixels are exactly a window of the
original RGB image. A window may start at any pixel (the second image's windows are centred on matched
points), so a content hash of the whole crop cannot be registered in advance. Instead every registered
frame contributes the hashes of its 4x4-pixel patches on a 16-px lattice; a crop holds lattice patches
at one of 16x16 phases, so hashing the crop's patches at all phases finds candidate (frame, x0, y0),
each verified by comparing the whole crop with the frame's pixels (exact equality, so a hash collision
or a repeated texture never resolves a crop to a wrong window).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

PATCH = 4     # side of a hashed patch (pixels)
STEP = 16     # lattice spacing of the hashed patches in the frame (pixels)
MAX_VERIFY = 64  # candidate windows compared per crop before giving up (flat, repeated textures)

_WEIGHTS = np.random.default_rng(20240611).integers(1, 2**63, PATCH * PATCH * 3, dtype=np.uint64) | np.uint64(1)


def _patch_keys(rgb: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """uint64 hash of the PATCH x PATCH x 3 patches with top-left (ys[i], xs[i]) of an RGB uint8 image."""
    d = np.arange(PATCH)
    rows = ys[:, None, None] + d[None, :, None]
    cols = xs[:, None, None] + d[None, None, :]
    patches = rgb[rows, cols].reshape(len(ys), -1).astype(np.uint64)   # [N, 48]
    with np.errstate(over="ignore"):
        return (patches * _WEIGHTS).sum(axis=1, dtype=np.uint64)


def _lattice(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) int [N]: top-left corners of a frame's lattice patches, row-major."""
    ys, xs = np.meshgrid(np.arange(0, height - PATCH + 1, STEP), np.arange(0, width - PATCH + 1, STEP), indexing="ij")
    return ys.ravel(), xs.ravel()


def frame_patch_keys(rgb: np.ndarray) -> np.ndarray:
    """uint64 [N]: hashes of the lattice patches of an [H, W, 3] uint8 frame (:meth:`CropIndex.add_keys`)."""
    ys, xs = _lattice(rgb.shape[1], rgb.shape[0])
    return _patch_keys(rgb, ys, xs)


class CropIndex:
    """Lattice-patch hashes of registered full-resolution frames (see module doc).

    ``add_keys(index, frame_patch_keys(rgb), W, H)`` indexes a frame; ``find(crop, load_rgb)`` returns
    ``(index, x0, y0)`` of the window equal to ``crop`` ([h, w, 3] uint8) or None; ``load_rgb(index)``
    gives the frame's [H, W, 3] uint8 pixels for the verification.
    """

    def __init__(self):
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []   # (keys uint64 [N], rows int32 [N, 3])
        self._keys: np.ndarray | None = None
        self._rows: np.ndarray | None = None

    def add_keys(self, index: int, keys: np.ndarray, width: int, height: int) -> None:
        """Index a width x height frame by its :func:`frame_patch_keys` (uint64 [N], lattice order)."""
        ys, xs = _lattice(width, height)
        if len(keys) != len(ys):
            raise ValueError(f"{len(keys)} patch keys for a {width}x{height} frame's {len(ys)} lattice patches")
        rows = np.stack([np.full(len(ys), index), xs, ys], axis=1).astype(np.int32)
        self._parts.append((np.asarray(keys, np.uint64), rows))
        self._keys = None

    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        if self._keys is None:
            keys = np.concatenate([k for k, _ in self._parts]) if self._parts else np.zeros(0, np.uint64)
            rows = np.concatenate([r for _, r in self._parts]) if self._parts else np.zeros((0, 3), np.int32)
            order = np.argsort(keys, kind="stable")
            self._keys, self._rows = keys[order], rows[order]
        return self._keys, self._rows

    def find(self, crop: np.ndarray, load_rgb: Callable[[int], np.ndarray]) -> tuple[int, int, int] | None:
        h, w = crop.shape[:2]
        if h < STEP + PATCH or w < STEP + PATCH:
            return None
        keys, rows = self._sorted()
        py, px = np.meshgrid(np.arange(STEP), np.arange(STEP), indexing="ij")
        py, px = py.ravel(), px.ravel()
        probe = _patch_keys(crop, py, px)
        lo, hi = np.searchsorted(keys, probe, "left"), np.searchsorted(keys, probe, "right")
        tried: set[tuple[int, int, int]] = set()
        for k in np.argsort(hi - lo, kind="stable"):      # the most distinctive patches first
            for r in rows[lo[k]:hi[k]]:
                cand = (int(r[0]), int(r[1]) - int(px[k]), int(r[2]) - int(py[k]))
                if cand in tried or cand[1] < 0 or cand[2] < 0:
                    continue
                tried.add(cand)
                rgb = load_rgb(cand[0])
                window = rgb[cand[2]:cand[2] + h, cand[1]:cand[1] + w]
                if window.shape == crop.shape and np.array_equal(window, crop):
                    return cand
                if len(tried) >= MAX_VERIFY:
                    return None
        return None
