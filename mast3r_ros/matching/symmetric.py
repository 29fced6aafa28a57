"""Symmetric correspondence extraction: FRM in both directions, merged and de-duplicated.

Same semantics as the official ``extract_correspondences_nonsym`` (dot-product matcher): matches of
FRM(1 -> 2) and of FRM(2 -> 1) (swapped back) are concatenated, made unique and sorted by the flat index
in image 1 (ties by image 2); each match gets conf = min(conf1[xy1], conf2[xy2]).
With ``pixel_tol > 0`` both directions start from their own grid and make one round trip with the
tolerance test (start point returned).

Speed: the two directions search the same two functions NN(1 -> 2) and NN(2 -> 1); both FRM runs share
one memoised search per direction, so no pixel is searched twice (results identical to two separate
runs).

Post-filters (all optional, applied in this order): border margin, confidence threshold, spatially
uniform thinning to ``max_matches``.
"""
from __future__ import annotations

import numpy as np

from .config import ArrayLike, MatchingConfig, as_conf_map, as_desc_map, check_device, check_same_dim
from .frm import frm_flat, grid_points, merge_pairs, to_xy
from .index import CachedNN, build_index


def match_symmetric(desc1: ArrayLike, desc2: ArrayLike, conf1: ArrayLike, conf2: ArrayLike,
                    subsample: int = 8, pixel_tol: float = 0,
                    config: MatchingConfig | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both-direction reciprocal matches between two dense descriptor maps.

    desc1 [H1, W1, D], desc2 [H2, W2, D]: numpy/torch float descriptor maps (compared by dot product).
    conf1 [H1, W1], conf2 [H2, W2]: per-pixel confidences (any float dtype; returned as float32).
    subsample, pixel_tol: as in ``fast_reciprocal_nn`` (explicit arguments win over ``config``).
    config: backend/device/fp16 and the post-filters border / conf_thr / max_matches.
    Returns xy1 int64 [N, 2] (x, y) in image 1, xy2 int64 [N, 2] in image 2, conf float32 [N].
    """
    cfg = config or MatchingConfig()
    MatchingConfig(subsample=subsample, pixel_tol=pixel_tol, max_iter=cfg.max_iter)  # validate arguments
    dev = check_device(cfg.device)
    d1 = as_desc_map(desc1, "desc1", dev)
    d2 = as_desc_map(desc2, "desc2", dev)
    check_same_dim(d1, d2)
    (H1, W1, D), (H2, W2, _) = d1.shape, d2.shape
    c1 = as_conf_map(conf1, "conf1", (H1, W1)).ravel()
    c2 = as_conf_map(conf2, "conf2", (H2, W2)).ravel()

    f1, f2 = d1.reshape(-1, D), d2.reshape(-1, D)
    idx1 = build_index(f1, cfg.backend, dev, cfg.fp16, (H1, W1))
    idx2 = build_index(f2, cfg.backend, dev, cfg.fp16, (H2, W2))
    nn12, nn21 = CachedNN(f1, idx2), CachedNN(f2, idx1)
    explicit = pixel_tol > 0
    n_iter = cfg.max_iter if cfg.max_iter is not None else (1 if explicit else 10)
    a1, a2 = frm_flat(nn12, nn21, grid_points(H1, W1, subsample), W1, n_iter, pixel_tol, explicit)
    b2, b1 = frm_flat(nn21, nn12, grid_points(H2, W2, subsample), W2, n_iter, pixel_tol, explicit)
    k1, k2, _ = merge_pairs(np.r_[a1, b1], np.r_[a2, b2])
    conf = np.minimum(c1[k1], c2[k2]).astype(np.float32)
    xy1, xy2 = to_xy(k1, W1), to_xy(k2, W2)
    return filter_matches(xy1, xy2, conf, (H1, W1), (H2, W2), cfg)


def filter_matches(xy1: np.ndarray, xy2: np.ndarray, conf: np.ndarray, hw1: tuple[int, int],
                   hw2: tuple[int, int], cfg: MatchingConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Border margin, confidence threshold and uniform thinning (order of the input is preserved)."""
    keep = np.ones(len(conf), dtype=bool)
    if cfg.border > 0:
        b = cfg.border
        for xy, (H, W) in ((xy1, hw1), (xy2, hw2)):
            keep &= (xy[:, 0] >= b) & (xy[:, 0] < W - b) & (xy[:, 1] >= b) & (xy[:, 1] < H - b)
    if cfg.conf_thr is not None:
        keep &= conf >= cfg.conf_thr
    xy1, xy2, conf = xy1[keep], xy2[keep], conf[keep]
    if cfg.max_matches is not None and len(conf) > cfg.max_matches:
        sel = uniform_thinning(xy1, conf, hw1, cfg.max_matches)
        xy1, xy2, conf = xy1[sel], xy2[sel], conf[sel]
    return xy1, xy2, conf


def uniform_thinning(xy: np.ndarray, conf: np.ndarray, hw: tuple[int, int], k: int) -> np.ndarray:
    """Indices (sorted, int64 [<= k]) of a spatially uniform subset of matches.

    Why: truncating by confidence clusters the matches on textured areas, which weakens pose estimation.
    Image 1 is cut into square cells of side s ~ sqrt(H*W / k) (enlarged until at most k cells are
    occupied); matches are taken round-robin over the cells, each cell giving its best remaining match
    (highest conf, ties by input order) per round; the last, partial round is filled by confidence.
    Deterministic.
    """
    n = len(conf)
    if k >= n:
        return np.arange(n)
    H, W = hw
    side = max(1.0, float(np.sqrt(H * W / k)))
    while True:
        cx = (xy[:, 0] / side).astype(np.int64)
        cy = (xy[:, 1] / side).astype(np.int64)
        cell = cy * (int(W / side) + 2) + cx
        if len(np.unique(cell)) <= k:
            break
        side *= 1.25
    order = np.lexsort((np.arange(n), -conf, cell))         # by cell, then conf desc, then input order
    cs = cell[order]
    first = np.r_[0, np.flatnonzero(cs[1:] != cs[:-1]) + 1]
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(first, np.diff(np.r_[first, n]))
    pick = np.lexsort((np.arange(n), -conf, rank))[:k]       # round-robin rounds, best first within a round
    return np.sort(pick)
