"""Fast reciprocal nearest neighbours (FRM, MASt3R paper section 3.3).

Semantics (same as the official ``fast_reciprocal_NNs``; our own implementation):

* Start points in image 1: the grid rows/cols S//2, S//2+S, ... (``subsample`` = S) or explicit points;
  duplicates are removed, points are processed in increasing flat index y*W1+x.
* One iteration = forward NN (image 1 -> 2) for the active points, then backward NN (2 -> 1).
  A point stops ("converged") when its forward NN equals the one of the previous iteration, or its
  backward NN returns to the pixel it started that iteration from; converged points are reciprocal
  pairs (x1 = NN21(x2) and x2 = NN12(x1)) and are kept. Points still moving after ``max_iter``
  iterations are dropped.
* ``pixel_tol > 0`` (or explicit start points): one round trip by default; a point is kept when the
  round trip lands at Euclidean distance < pixel_tol (on (row, col)) from its start point, and the
  returned image-1 point is the *start* point (the localisation mode: "does this map point match?").
* Output: int64 (x, y) pixel arrays [N, 2], unique pairs, sorted by flat index in image 1, ties by flat
  index in image 2.

Pixel coordinates are integer pixel centres (x = column, y = row) of the descriptor maps.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .config import ArrayLike, MatchingConfig, as_desc_map, check_device, check_same_dim
from .index import CachedNN, build_index

InitXY = tuple[ArrayLike, ArrayLike] | np.ndarray | torch.Tensor | None


def grid_points(H: int, W: int, subsample: int) -> np.ndarray:
    """Flat indices (int64 [N], increasing) of the FRM start grid rows/cols S//2, S//2+S, ..."""
    ys = np.arange(subsample // 2, H, subsample, dtype=np.int64)
    xs = np.arange(subsample // 2, W, subsample, dtype=np.int64)
    return (ys[:, None] * W + xs[None, :]).ravel()


def _init_flat(init_xy: InitXY, H: int, W: int) -> np.ndarray:
    """Explicit start points -> unique sorted flat indices. Accepts (x, y) of 1-D arrays or [N, 2] (x, y)."""
    if isinstance(init_xy, (tuple, list)) and len(init_xy) == 2:
        x, y = (np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v) for v in init_xy)
    else:
        a = np.asarray(init_xy.detach().cpu() if isinstance(init_xy, torch.Tensor) else init_xy)
        if a.ndim != 2 or a.shape[1] != 2:
            raise ValueError(f"init_xy must be a tuple (x, y) of 1-D arrays or an [N, 2] (x, y) array, "
                             f"got shape {a.shape}")
        x, y = a[:, 0], a[:, 1]
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"init_xy x and y must be 1-D arrays of equal length, got {x.shape} and {y.shape}")
    if len(x) == 0:
        raise ValueError("init_xy is empty")
    if not (np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer)):
        raise ValueError(f"init_xy must hold integer pixel coordinates, got dtypes {x.dtype}, {y.dtype}")
    if x.min() < 0 or x.max() >= W or y.min() < 0 or y.max() >= H:
        raise ValueError(f"init_xy points outside image 1 (W={W}, H={H}): x in [{x.min()}, {x.max()}], "
                         f"y in [{y.min()}, {y.max()}]")
    return np.unique(x.astype(np.int64) + W * y.astype(np.int64))


def merge_pairs(flat1: np.ndarray, flat2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique (flat1, flat2) pairs sorted by flat1 then flat2, plus the index of each pair's first occurrence."""
    key = flat1.astype(np.int64) << 32 | flat2.astype(np.int64)
    key, first = np.unique(key, return_index=True)
    return key >> 32, key & 0xFFFFFFFF, first


def to_xy(flat: np.ndarray, W: int) -> np.ndarray:
    """Flat indices int64 [N] -> (x, y) int64 [N, 2]."""
    return np.stack([flat % W, flat // W], axis=1).astype(np.int64)


def frm_flat(nn12: CachedNN, nn21: CachedNN, start: np.ndarray, W1: int, max_iter: int,
             pixel_tol: float, return_start: bool) -> tuple[np.ndarray, np.ndarray]:
    """Core FRM iteration on flat indices; returns unmerged (flat1, flat2) of the kept points.

    nn12 / nn21: memoised searches image 1 -> 2 and 2 -> 1. start: unique int64 flat indices in image 1.
    """
    xy1 = start.copy()
    xy2 = np.full_like(xy1, -1)
    prev1 = xy1.copy()          # position at the start of the current iteration
    prev2 = xy2.copy()
    active = np.ones(len(xy1), dtype=bool)
    for it in range(max_iter):
        # score hints for bounded searches: xy1 = NN21(prev2) already scores nn21.score[prev2] against
        # image 2, and the new xy2 = NN12(xy1) scores nn12.score[xy1] against image 1
        a = np.flatnonzero(active)
        p2 = prev2[a]
        xy2[a] = nn12(xy1[a], np.where(p2 >= 0, nn21.score[np.maximum(p2, 0)], -np.inf))
        active[a] &= xy2[a] != prev2[a]
        a = np.flatnonzero(active)
        xy1[a] = nn21(xy2[a], nn12.score[xy1[a]])
        active[a] &= xy1[a] != prev1[a]
        if it + 1 == max_iter or not active.any():
            break
        prev1[:] = xy1
        prev2[:] = xy2
    if pixel_tol > 0:
        dy = prev1 // W1 - xy1 // W1
        dx = prev1 % W1 - xy1 % W1
        keep = np.sqrt(dx * dx + dy * dy) < pixel_tol
        if return_start:
            xy1 = prev1
    else:
        keep = ~active
    return xy1[keep], xy2[keep]


def fast_reciprocal_nn(desc1: ArrayLike, desc2: ArrayLike, subsample: int = 8, init_xy: InitXY = None,
                       pixel_tol: float = 0, max_iter: int | None = None,
                       config: MatchingConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal matches between two dense descriptor maps (see module docstring for the semantics).

    desc1: [H1, W1, D], desc2: [H2, W2, D] numpy or torch (float16/32/64; computed in float32, on
        ``config.device``). Descriptors are compared by dot product (MASt3R descriptors are unit-norm).
    subsample: grid step of the start points when ``init_xy`` is None.
    init_xy: explicit start points in image 1 (tuple (x, y) of 1-D int arrays, or int [N, 2] (x, y)).
    pixel_tol: > 0 selects the tolerance mode (module docstring); measured in image-1 pixels.
    max_iter: round trips; None = 10 for the grid start with pixel_tol 0, else 1 (official behaviour).
    config: backend / device / fp16 (its subsample/pixel_tol/max_iter are ignored here: the explicit
        arguments win, so the signature mirrors the official function).
    Returns (xy1, xy2): int64 [N, 2] (x, y) pixel coordinates in image 1 and image 2.
    """
    cfg = config or MatchingConfig()
    dev = check_device(cfg.device)
    d1 = as_desc_map(desc1, "desc1", dev)
    d2 = as_desc_map(desc2, "desc2", dev)
    check_same_dim(d1, d2)
    MatchingConfig(subsample=subsample, pixel_tol=pixel_tol, max_iter=max_iter)  # validates the arguments
    H1, W1, D = d1.shape
    H2, W2, _ = d2.shape
    explicit = init_xy is not None or pixel_tol > 0
    start = _init_flat(init_xy, H1, W1) if init_xy is not None else grid_points(H1, W1, subsample)
    n_iter = max_iter if max_iter is not None else (1 if explicit else 10)
    f1 = d1.reshape(-1, D)
    f2 = d2.reshape(-1, D)
    nn12 = CachedNN(f1, build_index(f2, cfg.backend, dev, cfg.fp16, (H2, W2)))
    nn21 = CachedNN(f2, build_index(f1, cfg.backend, dev, cfg.fp16, (H1, W1)))
    k1, k2 = frm_flat(nn12, nn21, start, W1, n_iter, pixel_tol, return_start=explicit)
    k1, k2, _ = merge_pairs(k1, k2)
    return to_xy(k1, W1), to_xy(k2, W2)


__all__: Sequence[str] = ["fast_reciprocal_nn", "grid_points", "merge_pairs", "to_xy", "frm_flat"]
