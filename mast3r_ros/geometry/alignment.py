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


def _batched_kabsch(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Rigid fits for [M,k,3] point triplets A -> B; returns [M,4,4] (NaN rows if degenerate)."""
    ma, mb = A.mean(1, keepdims=True), B.mean(1, keepdims=True)
    C = np.einsum("mki,mkj->mij", B - mb, A - ma)
    U, S, Vt = np.linalg.svd(C)
    d = np.sign(np.linalg.det(U @ Vt))
    U[:, :, 2] *= d[:, None]
    R = U @ Vt
    t = mb[:, 0] - np.einsum("mij,mj->mi", R, ma[:, 0])
    T = np.tile(np.eye(4), (len(A), 1, 1))
    T[:, :3, :3], T[:, :3, 3] = R, t
    T[S[:, 1] < 1e-9] = np.nan
    return T


def ransac_rigid(src: np.ndarray, dst: np.ndarray, threshold: float, iterations: int = 300,
                 seed: int = 0, refine_rounds: int = 3, score_points: int = 256
                 ) -> tuple[np.ndarray | None, np.ndarray]:
    """Robust rigid transform ``dst ~= R @ src + t`` (3-point RANSAC + Umeyama refinement).

    Why: RGB-D queries give 3D-3D matches whose alignment does not depend on the colour
    camera's intrinsics, which are often less well known than the depth geometry.

    Args:
        src: [N,3] points in frame b (metres), e.g. query camera frame.
        dst: [N,3] matched points in frame a (metres), e.g. map frame.
        threshold: inlier distance (metres).
        score_points: hypotheses are scored on this many random points (speed); the best one
            is then refined on all inliers.
    Returns:
        (T_a_b [4,4] or None, inliers [N] bool).
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    n = len(src)
    if n < 3:
        return None, np.zeros(n, bool)
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.choice(n, 3, replace=False) for _ in range(iterations)])
    Ts = _batched_kabsch(src[idx], dst[idx])
    sub = rng.choice(n, min(n, score_points), replace=False)
    res = np.einsum("mij,nj->mni", Ts[:, :3, :3], src[sub]) + Ts[:, None, :3, 3] - dst[sub][None]
    counts = np.sum(np.linalg.norm(res, axis=2) < threshold, axis=1)  # NaN hypotheses count 0
    best = Ts[int(np.argmax(counts))]
    inl = np.linalg.norm(src @ best[:3, :3].T + best[:3, 3] - dst, axis=1) < threshold
    T = None
    for _ in range(refine_rounds):
        if inl.sum() < 3:
            return None, inl
        try:
            T, _ = umeyama(src[inl], dst[inl])
        except ValueError:
            return None, inl
        inl = np.linalg.norm(src @ T[:3, :3].T + T[:3, 3] - dst, axis=1) < threshold
    return T, inl
