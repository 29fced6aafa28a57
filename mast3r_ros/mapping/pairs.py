"""Pair selection (which image pairs the front-end predicts) and classical RGB-D pair inputs.

Selection: every pair for small sets (complete graph), else a sequential window (consecutive
keyframes overlap) plus retrieval top-k (loop closures: revisits far apart in time).

Classical inputs: SIFT matches between keyframes (mutual NN + ratio) and each keyframe's sensor
depth as its pointmap prior, from the arrays the classical front-end stores in the map.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mast3r_ros.localization.frontends.classical import mutual_ratio_match, root_sift
from mast3r_ros.mapping.types import PairData


@dataclass
class PairSelectionConfig:
    """Which pairs to build.

    complete_below: use the complete graph when there are at most this many views.
    sequential_window: pair each view with the next ``sequential_window`` views.
    retrieval_k: pair each view with its ``retrieval_k`` most similar views (global descriptors)
        outside the sequential window.
    """
    complete_below: int = 12
    sequential_window: int = 3
    retrieval_k: int = 5


def select_pairs(n: int, config: PairSelectionConfig | None = None,
                 descriptors: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, sorted.

    Args:
        n: number of views (in acquisition order).
        descriptors: optional [n,D] float unit-norm global descriptors (retrieval).
    """
    cfg = config or PairSelectionConfig()
    if n <= cfg.complete_below:
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    out = {(i, j) for i in range(n) for j in range(i + 1, min(n, i + 1 + cfg.sequential_window))}
    if descriptors is not None and cfg.retrieval_k > 0:
        D = np.asarray(descriptors, np.float64)
        S = D @ D.T
        idx = np.arange(n)
        S[np.abs(idx[:, None] - idx[None]) <= cfg.sequential_window] = -np.inf
        for i in range(n):
            for j in np.argsort(-S[i])[:cfg.retrieval_k]:
                if np.isfinite(S[i, j]):
                    out.add((min(i, int(j)), max(i, int(j))))
    return sorted(out)


def classical_pair(i: int, j: int, arrays_i: dict, arrays_j: dict, ratio: float = 0.85,
                   min_conf: float = 0.05) -> PairData:
    """SIFT matches between two keyframes (arrays as stored by the classical front-end).

    Only keypoints with a reliable depth (finite ``sift_X``) are kept. Confidence is
    ``max(1 - distance ratio, min_conf)``.
    """
    def usable(a):
        ok = np.isfinite(np.asarray(a["sift_X"])).all(1)
        return np.asarray(a["sift_xy"])[ok], root_sift(np.asarray(a["sift_desc"])[ok])

    xy_i, d_i = usable(arrays_i)
    xy_j, d_j = usable(arrays_j)
    qi, kj, r = mutual_ratio_match(d_i, d_j, ratio, True)
    return PairData(i, j, xy_i[qi], xy_j[kj], np.maximum(1.0 - r, min_conf))
