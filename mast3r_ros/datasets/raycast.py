"""Vectorised numpy ray-caster over textured axis-aligned boxes (the synthetic room's renderer).

Why axis-aligned boxes: a room (walls/floor/ceiling seen from inside) plus furniture (boxes,
table tops, legs) is enough depth structure for localization tests, and the slab test makes the
exact per-pixel intersection a handful of array operations, so a 640x480 frame renders in tens
of milliseconds with exact depth.

Conventions: world points/directions are [N,3] float32 metres; a face is identified by
``box * 6 + axis * 2 + side`` (side 0 = the ``lo`` face, 1 = the ``hi`` face).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

# in-plane (u, v) axes of a face orthogonal to each axis; v runs "down" (-z) on vertical faces
_UV_AXES = {0: (1, 2), 1: (0, 2), 2: (0, 1)}
_REMAP_COLS = 1024


@dataclass
class Box:
    """Axis-aligned box [lo, hi] (metres, world frame). ``inside``: the camera is inside it (the
    room) and sees its inner faces. ``textures[face]``: [H,W,3] uint8 RGB per face 0..5."""

    lo: np.ndarray
    hi: np.ndarray
    inside: bool = False
    textures: list[np.ndarray] = field(default_factory=list)


def raycast(origin: np.ndarray, dirs: np.ndarray, boxes: list[Box], t_min: float = 1e-4,
            regions: list[tuple[slice, ...] | None] | None = None):
    """Nearest hit of each ray ``origin + t * dirs`` (t > t_min).

    Args:
        origin: [3] ray origin, metres, world frame.
        dirs: [3,...] float32 ray directions, axis-major (e.g. [3,H,W]: one ray per pixel).
        regions: optional per-box index (tuple of slices over the trailing dims) of the only rays
            that can hit that box, a conservative screen-space bound (None = all rays). Testing
            only those rays, through views rather than gathers, is what makes rendering fast.
    Returns:
        t: [...] float32 ray parameter of the hit (inf where nothing is hit).
        face: [...] int32 global face id (-1 where nothing is hit).
    """
    origin = np.asarray(origin, np.float32)
    with np.errstate(divide="ignore"):
        inv_d = 1.0 / np.where(dirs == 0, np.float32(1e-12), dirs).astype(np.float32)
    best_t = np.full(dirs.shape[1:], np.inf, np.float32)
    best_face = np.full(dirs.shape[1:], -1, np.int32)
    everything = (slice(None),) * (dirs.ndim - 1)
    for b, box in enumerate(boxes):
        region = everything if regions is None or regions[b] is None else regions[b]
        sub = (slice(None),) + region
        if dirs[sub][0].size == 0:
            continue
        t, face = _hit_box(origin, dirs[sub], inv_d[sub], box, b, t_min)
        bt, bf = best_t[region], best_face[region]  # views: assignments write through
        closer = t < bt
        bt[closer] = t[closer]
        bf[closer] = face[closer]
    return best_t, best_face


def _hit_box(origin, dirs, inv_d, box: Box, b: int, t_min: float):
    """Slab test of rays against one box -> (t [M], face id [M]); t = inf where missed."""
    positive = [dirs[a] > 0 for a in range(3)]
    t1 = [(box.lo[a] - origin[a]) * inv_d[a] for a in range(3)]
    t2 = [(box.hi[a] - origin[a]) * inv_d[a] for a in range(3)]
    if box.inside:  # exit point: smallest of the per-axis far distances
        far = [np.where(positive[a], t2[a], t1[a]) for a in range(3)]
        t, axis = _arg_extreme(far, np.less)
        side = _pick(axis, positive)           # exit through the hi face when moving +axis
        hit = t > t_min
    else:  # entry point: largest of the per-axis near distances, must precede the exit
        near = [np.where(positive[a], t1[a], t2[a]) for a in range(3)]
        far = [np.where(positive[a], t2[a], t1[a]) for a in range(3)]
        t, axis = _arg_extreme(near, np.greater)
        side = ~_pick(axis, positive)          # enter through the hi face when moving -axis
        hit = (t > t_min) & (t <= np.minimum(np.minimum(far[0], far[1]), far[2]))
    return np.where(hit, t, np.inf).astype(np.float32), (b * 6 + axis * 2 + side.astype(np.int32))


def _arg_extreme(vals: list[np.ndarray], better) -> tuple[np.ndarray, np.ndarray]:
    """Element-wise best of three [N] arrays under ``better`` and its index (0..2, int32)."""
    m1 = better(vals[1], vals[0])
    best = np.where(m1, vals[1], vals[0])
    m2 = better(vals[2], best)
    return np.where(m2, vals[2], best), np.where(m2, np.int32(2), m1.astype(np.int32))


def _pick(axis: np.ndarray, per_axis: list[np.ndarray]) -> np.ndarray:
    return np.where(axis == 0, per_axis[0], np.where(axis == 1, per_axis[1], per_axis[2]))


def face_normal(face: int, boxes: list[Box]) -> np.ndarray:
    """[3] float32 unit normal of a face, pointing toward the viewer's side."""
    b, axis, side = face // 6, (face % 6) // 2, face % 2
    n = np.zeros(3, np.float32)
    outward = 1.0 if side == 1 else -1.0
    n[axis] = -outward if boxes[b].inside else outward
    return n


def sample_face(face: int, points: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """Bilinearly sample a face's texture at world points on it.

    Args:
        points: [3,M] float32 world points lying on the face, metres.
    Returns:
        [M,3] float32 RGB.
    """
    box = boxes[face // 6]
    axis, side = (face % 6) // 2, face % 2
    tex = box.textures[face % 6]
    ua, va = _UV_AXES[axis]
    size = box.hi - box.lo
    th, tw = tex.shape[:2]
    u = (points[ua] - box.lo[ua]) / size[ua]
    if _mirrored(axis, side, box.inside):  # so text reads left-to-right from the viewer's side
        u = 1.0 - u
    m = points.shape[1]
    rows = -(-m // _REMAP_COLS)  # cv2.remap needs maps narrower than 32767 columns
    maps = np.zeros((2, rows * _REMAP_COLS), np.float32)
    maps[0, :m] = u * tw - 0.5
    maps[1, :m] = (box.hi[va] - points[va]) / size[va] * th - 0.5
    out = cv2.remap(tex, maps[0].reshape(rows, _REMAP_COLS), maps[1].reshape(rows, _REMAP_COLS),
                    cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, 3)[:m].astype(np.float32)


def face_texel_points(box: Box, face_in_box: int, h: int, w: int) -> np.ndarray:
    """[3,h,w] float32 world points (metres) of the texel centres of an h x w texture on a box
    face: the exact inverse of the mapping used by :func:`sample_face` (used to bake lighting)."""
    axis, side = face_in_box // 2, face_in_box % 2
    ua, va = _UV_AXES[axis]
    size = box.hi - box.lo
    u = (np.arange(w, dtype=np.float32) + 0.5) / w
    if _mirrored(axis, side, box.inside):
        u = 1.0 - u
    pts = np.empty((3, h, w), np.float32)
    pts[ua] = (box.lo[ua] + u * size[ua])[None, :]
    pts[va] = (box.hi[va] - (np.arange(h, dtype=np.float32) + 0.5) / h * size[va])[:, None]
    pts[axis] = box.hi[axis] if side == 1 else box.lo[axis]
    return pts


def _mirrored(axis: int, side: int, inside: bool) -> bool:
    if axis == 0:
        return inside == (side == 1)
    if axis == 1:
        return inside == (side == 0)
    return False


def face_size_m(box: Box, face_in_box: int) -> tuple[float, float]:
    """(width, height) in metres of a box face's texture (its in-plane u, v extents)."""
    ua, va = _UV_AXES[face_in_box // 2]
    size = box.hi - box.lo
    return float(size[ua]), float(size[va])
