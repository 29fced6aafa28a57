"""Crop-pair selection for coarse-to-fine matching (MASt3R paper section 3.4).

Same results as the official ``select_pairs_of_crops`` (verified on the c2f fixtures); own code.

1. Each image is covered by an overlapping grid of windows whose long side is ``maxdim`` (sizes rounded
   down to multiples of 16; at least ``overlap`` overlap; first window at 0, last flush with the edge).
2. Windows are normalised to the forced (H, W) working resolution of their image (centred, then shifted
   inside the image), or, without forced resolution, to a 3.01/4 aspect ratio.
3. For every window of one image holding >= 10 coarse matches, the corresponding window in the other
   image is centred on the mean of the matched points there, scaled by the ratio of the robust spreads
   (10 %-90 % quantile ranges, at least 20 px) and normalised as in 2. Done from both images.
4. Each candidate pair weights each of its matches by Gaussian proximity to both window centres;
   pairs are picked greedily (largest remaining total weight first, weights already covered are
   subtracted) until 90 % of the total best-case weight is covered.

Boxes are (x0, y0, x1, y1) int64 in full-resolution pixels, right/bottom exclusive.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

Box = tuple[int, int, int, int]

# (W / H aspect of a landscape image) -> (H, W) working resolution at maxdim 512
_RESOLUTIONS_512 = {4 / 3: (384, 512), 32 / 21: (336, 512), 16 / 9: (288, 512), 2 / 1: (256, 512),
                    16 / 5: (160, 512)}


def working_resolution(H: int, W: int, maxdim: int = 512) -> tuple[int, int]:
    """(H, W) network resolution for an image of size (H, W): nearest aspect ratio of the 512 table
    (landscape: 512x384, 512x336, 512x288, 512x256, 512x160), transposed for portrait images."""
    if maxdim != 512:
        raise ValueError(f"only maxdim=512 has a resolution table, got {maxdim}")
    if H <= 0 or W <= 0:
        raise ValueError(f"image size must be positive, got (H, W) = ({H}, {W})")
    keys = np.array(list(_RESOLUTIONS_512))
    landscape = W >= H
    diff = np.abs(W / H - (keys if landscape else 1 / keys))
    h, w = _RESOLUTIONS_512[float(keys[int(np.argmin(diff))])]
    return (h, w) if landscape else (w, h)


def window_starts(total: int, win: int, overlap: float) -> np.ndarray:
    """Start offsets (int64) of windows of size ``win`` covering ``total`` with at least ``overlap``."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if total < win:
        raise ValueError(f"image side {total} is smaller than the crop window {win}")
    last = total - win
    n = 2 + int((last - 1) // (win * (1 - overlap)))
    return np.linspace(0, last, n).round().astype(np.int64)


def overlapping_grid(H: int, W: int, size: int = 512, overlap: float = 0.5) -> np.ndarray:
    """Window grid, int64 [M, 4] boxes (x0, y0, x1, y1), row-major (y outer, x inner)."""
    h = (H * size // max(H, W)) // 16 * 16
    w = (W * size // max(H, W)) // 16 * 16
    xs, ys = window_starts(W, w, overlap), window_starts(H, h, overlap)
    x0 = np.tile(xs, len(ys))
    y0 = np.repeat(ys, len(xs))
    return np.stack([x0, y0, x0 + w, y0 + h], axis=1)


def normalize_windows(cells: np.ndarray, H: int, W: int, forced_hw: Sequence[int] | None = None) -> np.ndarray:
    """Resize float boxes [M, 4] about their centre to (forced H, W) (or aspect 3.01/4 when None) and
    shift them inside the image; int64 [M, 4]."""
    cells = np.asarray(cells, dtype=np.float64)
    w, h = cells[:, 2] - cells[:, 0], cells[:, 3] - cells[:, 1]
    if (w < 0).any() or (h < 0).any():
        raise ValueError("boxes with negative size")
    w2, h2 = w.clip(max=W), h.clip(max=H)
    if forced_hw is None:
        tall = w < h
        w2[tall] = (h2[tall] * 3.01 / 4).clip(max=W)
        h2[~tall] = (w2[~tall] * 3.01 / 4).clip(max=H)
    else:
        fh, fw = int(forced_hw[0]), int(forced_hw[1])
        if fh > H or fw > W:
            raise ValueError(f"forced resolution (H, W) = ({fh}, {fw}) is larger than the image ({H}, {W})")
        w2[:], h2[:] = fw, fh
    out = cells.copy()
    out[:, 0] -= (w2 - w) / 2
    out[:, 2] += (w2 - w) / 2
    out[:, 1] -= (h2 - h) / 2
    out[:, 3] += (h2 - h) / 2
    out = np.floor(out).astype(np.int64)
    out[:, 0] += (out[:, 2] - out[:, 0]) - w2.astype(np.int64)   # exact target size after flooring
    out[:, 1] += (out[:, 3] - out[:, 1]) - h2.astype(np.int64)
    out[:, 0::2] -= np.minimum(out[:, [0]], 0)                    # shift right/down into the image
    out[:, 1::2] -= np.minimum(out[:, [1]], 0)
    out[:, 0::2] -= np.maximum(out[:, [2]], W) - W                # shift left/up into the image
    out[:, 1::2] -= np.maximum(out[:, [3]], H) - H
    return out


def _gauss_weights(cells: np.ndarray, pts: np.ndarray, assigned: np.ndarray, var: float = 2.0) -> np.ndarray:
    """[C, N] weights exp(-var * |(centre - p) / size|^2) for assigned points, else 0."""
    centre = cells.reshape(-1, 2, 2).mean(axis=1)
    size = np.stack([cells[:, 2] - cells[:, 0], cells[:, 3] - cells[:, 1]], axis=1)
    d2 = np.square((centre[:, None] - pts[None]) / size[:, None]).sum(axis=-1)
    return np.where(assigned, np.exp(-var * d2), 0)


def _score_cells(cells1: np.ndarray, H2: int, W2: int, p1: np.ndarray, p2: np.ndarray,
                 forced2: Sequence[int] | None, min_corres: int = 10):
    """Candidate pairs (cells1, cells2, weights [C, N]) for the windows of image 1."""
    x, y = p1[:, 0], p1[:, 1]
    inside = ((cells1[:, [0]] <= x) & (x < cells1[:, [2]]) & (cells1[:, [1]] <= y) & (y < cells1[:, [3]]))
    valid = inside.sum(axis=1) >= min_corres
    cells1, inside = cells1[valid], inside[valid]
    if not valid.any():
        return cells1, cells1, np.zeros((0, len(p1)))
    # float32 copies with NaN outside each window (same precision as the reference for the statistics)
    a1 = np.empty((len(cells1), len(p1), 2), dtype=np.float32)
    a2 = np.empty((len(cells1), len(p2), 2), dtype=np.float32)
    a1[:], a2[:] = p1[None], p2[None]
    a1[~inside] = np.nan
    a2[~inside] = np.nan
    centre2 = np.nanmean(a2, axis=1)
    lo1, hi1 = np.nanquantile(a1, (0.1, 0.9), axis=1)
    lo2, hi2 = np.nanquantile(a2, (0.1, 0.9), axis=1)
    spread1, spread2 = (hi1 - lo1).clip(20.0), (hi2 - lo2).clip(20.0)
    size2 = (cells1[:, 2:4] - cells1[:, 0:2]) * spread2 / spread1
    cells2 = normalize_windows(np.c_[centre2 - size2 / 2, centre2 + size2 / 2], H2, W2, forced2)
    weights = _gauss_weights(cells1, p1, inside) * _gauss_weights(cells2, p2, inside)
    return cells1, cells2, weights


def greedy_cover(weights: np.ndarray, target: float = 0.9) -> list[int]:
    """Row indices picked greedily until ``target`` of sum_p max_c weights[c, p] is covered."""
    w = weights.copy()
    goal = target * w.max(axis=0).sum()
    cur = np.zeros(w.shape[1])
    picked: list[int] = []
    while cur.sum() < goal:
        sums = w.sum(axis=1)
        best = int(sums.argmax())
        if sums[best] <= 0:      # nothing left to gain (cannot happen with target <= 1; guard anyway)
            break
        picked.append(best)
        cur += w[best]
        w = (w - w[best]).clip(min=0)
    return picked


def _parse_forced(forced_resolution) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    if forced_resolution is None:
        return None, None
    fr = np.asarray(forced_resolution, dtype=np.int64)
    if fr.shape == (2,):
        return (int(fr[0]), int(fr[1])), (int(fr[0]), int(fr[1]))
    if fr.shape == (2, 2):
        return (int(fr[0, 0]), int(fr[0, 1])), (int(fr[1, 0]), int(fr[1, 1]))
    raise ValueError(f"forced_resolution must be None, (H, W) or [(Hq, Wq), (Hr, Wr)], got shape {fr.shape}")


def _check_points(p: np.ndarray, name: str) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"{name} must be [N, 2] (x, y), got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return p


def select_crop_pairs(shape_q: Sequence[int], shape_ref: Sequence[int], xy_q: np.ndarray, xy_ref: np.ndarray,
                      maxdim: int = 512, overlap: float = 0.5,
                      forced_resolution=None) -> list[tuple[Box, Box]]:
    """Ordered list of (crop_q, crop_ref) boxes (x0, y0, x1, y1) for the fine matching pass.

    shape_q, shape_ref: (H, W) of the full-resolution images (extra trailing dims are ignored).
    xy_q, xy_ref: float [N, 2] (x, y) coarse correspondences in full-resolution pixel coordinates.
    forced_resolution: (H, W) for both images, or [(Hq, Wq), (Hr, Wr)], or None (3.01/4 aspect rule).
    Returns the pairs in greedy selection order (empty when no window holds >= 10 matches).
    """
    Hq, Wq = int(shape_q[0]), int(shape_q[1])
    Hr, Wr = int(shape_ref[0]), int(shape_ref[1])
    pq, pr = _check_points(xy_q, "xy_q"), _check_points(xy_ref, "xy_ref")
    if pq.shape != pr.shape:
        raise ValueError(f"xy_q and xy_ref must have the same shape, got {pq.shape} and {pr.shape}")
    fq, fr = _parse_forced(forced_resolution)
    grid_q = normalize_windows(overlapping_grid(Hq, Wq, maxdim, overlap).astype(np.float64), Hq, Wq, fq)
    grid_r = normalize_windows(overlapping_grid(Hr, Wr, maxdim, overlap).astype(np.float64), Hr, Wr, fr)
    q1, r1, w1 = _score_cells(grid_q, Hr, Wr, pq, pr, fr)
    r2, q2, w2 = _score_cells(grid_r, Hq, Wq, pr, pq, fq)
    cells_q, cells_r, weights = np.concatenate([q1, q2]), np.concatenate([r1, r2]), np.concatenate([w1, w2])
    if len(weights) == 0:
        return []
    return [(tuple(int(v) for v in cells_q[i]), tuple(int(v) for v in cells_r[i])) for i in greedy_cover(weights)]


def crop_slice(box: Sequence[int]) -> tuple[slice, slice]:
    """(rows, cols) slices of a box (x0, y0, x1, y1), for indexing [H, W, ...] arrays."""
    return slice(int(box[1]), int(box[3])), slice(int(box[0]), int(box[2]))
