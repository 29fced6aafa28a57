"""Point-set alignment (Umeyama / Procrustes) for pointmap-to-pointmap pose estimates."""
from __future__ import annotations

import numpy as np

from mast3r_ros.geometry.transforms import make_T


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None,
            with_scale: bool = False) -> tuple[np.ndarray, float]:
    """Least-squares similarity/rigid transform with ``dst ~= s * R @ src + t``.

    Why: the fallback map-free estimate aligns a query pointmap to the reference pointmap;
    weights let per-point confidences down-weight unreliable points.

    Args:
        src: [N,3] points in frame b (metres).
        dst: [N,3] corresponding points in frame a (metres).
        weights: optional [N] non-negative weights.
        with_scale: estimate a scale factor too (otherwise s = 1, a rigid fit).
    Returns:
        T_a_b: [4,4] float64 rigid part ``[R | t]`` (scale not folded into R).
        s: scale factor (1.0 when ``with_scale`` is False).
    Raises:
        ValueError: fewer than 3 points or a degenerate (collinear) configuration.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    if len(src) != len(dst) or len(src) < 3:
        raise ValueError(f"need >= 3 corresponding points, got {len(src)} and {len(dst)}")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if np.sum(w) <= 0:
        raise ValueError("weights sum to zero")
    w = w / np.sum(w)
    mu_s, mu_d = w @ src, w @ dst
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs
    U, S, Vt = np.linalg.svd(cov)
    if S[1] < 1e-12 * max(S[0], 1e-300):
        raise ValueError("degenerate point configuration (collinear or coincident points)")
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1.0
    R = U @ D @ Vt
    s = 1.0
    if with_scale:
        var_s = float(w @ np.sum(xs * xs, axis=1))
        s = float(np.trace(np.diag(S) @ D) / var_s)
    t = mu_d - s * R @ mu_s
    return make_T(R, t), s
