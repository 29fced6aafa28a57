"""Turn views + pairs into the flat arrays the optimiser iterates on.

Steps: canonical view per image -> initial intrinsics -> per pair, matched pixels lifted to 3D
with the canonical depths and a robust rigid fit (relative pose, inlier matches, pair score and
status) -> de-duplicated features tied to anchors -> match list -> fallback regression terms for
pairs whose matches are poor but that carry a cross-view pointmap.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mast3r_ros.geometry.alignment import ransac_rigid, umeyama
from mast3r_ros.geometry.camera import backproject_depth, depth_to_pointmap
from mast3r_ros.mapping.canonical import CanonicalView, estimate_focal, fuse_view
from mast3r_ros.mapping.types import MappingError, PairData, ViewData


@dataclass
class PairCheckConfig:
    """Robust pair check (relative pose + inliers) before the global alignment.

    inlier_m: 3D-3D RANSAC inlier distance (metres) between matched canonical points.
    min_inliers: fewer inliers make a pair 'poor' (fallback regression or dropped).
    min_inlier_fraction: so does an inlier fraction of the pair's matches below this (0 = off). Why:
        dense matching (FRM) returns reciprocal neighbours even between views that share nothing, and
        a few hundred such matches can hold a chance 3D consensus above ``min_inliers``.
    matching_conf_thr: a pair is poor when its best match confidence is not above this
        (MASt3R descriptor confidences; None disables the check, e.g. for SIFT).
    ransac_iterations: RANSAC hypotheses per pair.
    keep_outliers: keep RANSAC outliers in the loss (the robust loss must then cope alone).
    """
    inlier_m: float = 0.05
    min_inliers: int = 20
    min_inlier_fraction: float = 0.0
    matching_conf_thr: float | None = None
    ransac_iterations: int = 100
    keep_outliers: bool = False


@dataclass
class Problem:
    """Flat optimisation problem (numpy; see field comments for shapes).

    Features are de-duplicated matched pixels; each is tied to one anchor by a fixed
    multiplicative depth offset. Anchor ``a`` of view ``v`` has initial depth ``anchor_z0[a]``.
    """
    n_views: int
    sizes: list                      # N x (W, H)
    canon: list                      # N CanonicalView
    K0: np.ndarray                   # [N,3,3] float64 initial intrinsics
    anchor_start: np.ndarray         # [N+1] int64 offsets of each view's anchors
    anchor_z0: np.ndarray            # [A] float64 initial anchor depth (m), 0 = unusable
    anchor_xy: np.ndarray            # [A,2] float64 anchor centre pixels
    anchor_view: np.ndarray          # [A] int64
    feat_view: np.ndarray            # [F] int64
    feat_xy: np.ndarray              # [F,2] float64 pixel (integer centre) the 3D point is lifted from
    feat_anchor: np.ndarray          # [F] int64 global anchor index
    feat_offset: np.ndarray          # [F] float64 depth / anchor depth
    match_a: np.ndarray              # [M] int64 feature index (view i side)
    match_b: np.ndarray              # [M] int64 feature index (view j side)
    match_w: np.ndarray              # [M] float64 confidence weight
    match_xy: np.ndarray             # [M,2,2] float64 observed (sub-pixel) pixels of both ends
    fb_anchor: np.ndarray            # [T] int64 anchor regressed onto a pointmap prediction
    fb_ref: np.ndarray               # [T] int64 view whose camera the target is expressed in
    fb_target: np.ndarray            # [T,3] float64 target point in camera fb_ref (m)
    fb_w: np.ndarray                 # [T] float64 weight
    rel_pose: dict = field(default_factory=dict)    # (i, j) -> [4,4] T_i_j (camera j in camera i)
    scores: dict = field(default_factory=dict)      # (i, j) -> float
    status: dict = field(default_factory=dict)      # (i, j) -> 'ok' | 'fallback' | 'dropped'
    inliers: dict = field(default_factory=dict)     # (i, j) -> [M] bool


def _K_of(view: ViewData, canon_points: np.ndarray, conf: np.ndarray, known: bool) -> np.ndarray:
    W, H = view.size
    if view.K is not None:
        return np.asarray(view.K, np.float64)
    if known:
        raise MappingError(f"view {view.name!r}: known intrinsics requested but K is missing")
    f = estimate_focal(canon_points, conf)
    return np.array([[f, 0, (W - 1) / 2.0], [0, f, (H - 1) / 2.0], [0, 0, 1.0]])


def build_canonical(views: list[ViewData], pairs: list[PairData], subsample: int, mode: str
                    ) -> list[CanonicalView]:
    """Canonical view of every view from its depth prior and the pairs' X_ii pointmaps."""
    maps: list[list] = [[] for _ in views]
    for p in pairs:
        if p.X_ii is not None:
            C = p.C_ii if p.C_ii is not None else np.full(p.X_ii.shape[:2], 2.0, np.float32)
            maps[p.i].append((p.X_ii, C))
    out = []
    for v, view in enumerate(views):
        W, H = view.size
        if view.depth is not None:
            if view.K is None:
                raise MappingError(f"view {v} ({view.name}): a depth prior needs the intrinsics K")
            d = np.asarray(view.depth, np.float32)
            if d.shape != (H, W):
                raise MappingError(f"view {v}: depth shape {d.shape} != size (H,W)=({H},{W})")
            X = depth_to_pointmap(np.asarray(view.K, np.float64), d).astype(np.float32)
            maps[v].append((X, np.where(d > 0, view.depth_conf, 0.0).astype(np.float32)))
        for X, _ in maps[v]:
            if X.shape[:2] != (H, W):
                raise MappingError(f"view {v}: pointmap shape {X.shape[:2]} != size (H,W)=({H},{W})")
        if not maps[v]:
            raise MappingError(f"view {v} ({view.name}) has neither a depth prior nor a pointmap")
        out.append(fuse_view([m[0] for m in maps[v]], [m[1] for m in maps[v]], subsample, mode))
    return out


def _lookup(canon: CanonicalView, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rounded pixel index [M] int64 into the flat image, canonical depth [M]) at pixels."""
    H, W = canon.offsets.shape
    x = np.clip(np.rint(xy[:, 0]).astype(np.int64), 0, W - 1)
    y = np.clip(np.rint(xy[:, 1]).astype(np.int64), 0, H - 1)
    return y * W + x, canon.depth.reshape(-1)[y * W + x].astype(np.float64)


def check_pair(p: PairData, canon: list, K: np.ndarray, cfg: PairCheckConfig, seed: int = 0
               ) -> tuple[np.ndarray | None, np.ndarray, str, float]:
    """Relative pose T_i_j, inlier mask [M], status and score of one pair."""
    inl = np.zeros(len(p.conf), bool)
    _, zi = _lookup(canon[p.i], p.xy_i)
    _, zj = _lookup(canon[p.j], p.xy_j)
    ok3d = (zi > 0) & (zj > 0)
    T = None
    good_conf = cfg.matching_conf_thr is None or (len(p.conf) and p.conf.max() > cfg.matching_conf_thr)
    if ok3d.sum() >= max(3, cfg.min_inliers) and good_conf:
        Xi = backproject_depth(K[p.i], p.xy_i[ok3d], zi[ok3d])
        Xj = backproject_depth(K[p.j], p.xy_j[ok3d], zj[ok3d])
        T, sub = ransac_rigid(Xj, Xi, cfg.inlier_m, cfg.ransac_iterations, seed=seed)
        inl[np.flatnonzero(ok3d)[sub]] = True
    if T is not None and inl.sum() >= max(cfg.min_inliers, cfg.min_inlier_fraction * len(p.conf)):
        return T, inl, "ok", float(p.conf[inl].sum())
    if p.X_ji is not None:  # poor matches: relative pose from the dense cross-view pointmap
        cj = canon[p.j]
        w = np.isfinite(cj.points).all(-1) & np.isfinite(p.X_ji).all(-1) & (cj.conf > 0)
        if p.C_ji is not None:
            w &= p.C_ji > 0.999
        if w.sum() >= 3:
            wt = (p.C_ji[w] - 0.999) if p.C_ji is not None else None
            T, _ = umeyama(cj.points[w], p.X_ji[w], wt)
            return T, inl & False, "fallback", 1e-3 * float(w.mean())
    return None, inl & False, "dropped", 0.0


def build_problem(views: list[ViewData], pairs: list[PairData], subsample: int = 8,
                  mode: str = "avg-angle", known_intrinsics: bool = False,
                  check: PairCheckConfig | None = None) -> Problem:
    """Assemble the :class:`Problem` (see module doc)."""
    check = check or PairCheckConfig()
    n = len(views)
    for p in pairs:
        if not (0 <= p.i < n and 0 <= p.j < n):
            raise MappingError(f"pair ({p.i},{p.j}) refers to a view outside 0..{n - 1}")
    canon = build_canonical(views, pairs, subsample, mode)
    K0 = np.stack([_K_of(v, c.points, c.conf, known_intrinsics) for v, c in zip(views, canon)])
    # anchors
    starts, z0, axy, aview = [0], [], [], []
    s = subsample
    for v, c in enumerate(canon):
        Ha, Wa = c.anchor_depth.shape
        H, W = c.offsets.shape
        ay, ax = np.mgrid[0:Ha, 0:Wa]
        axy.append(np.stack([np.minimum(ax * s + s // 2, W - 1), np.minimum(ay * s + s // 2, H - 1)],
                            -1).reshape(-1, 2))
        z0.append(c.anchor_depth.reshape(-1))
        aview.append(np.full(Ha * Wa, v))
        starts.append(starts[-1] + Ha * Wa)
    prob = Problem(n, [v.size for v in views], canon, K0, np.asarray(starts, np.int64),
                   np.concatenate(z0).astype(np.float64), np.concatenate(axy).astype(np.float64),
                   np.concatenate(aview).astype(np.int64), *([None] * 12))
    # pairs -> matched endpoints (view, rounded pixel), de-duplicated into features at the end
    keys, xys, mw = [], [], []
    fb = ([], [], [], [])
    big = max(W * H for W, H in prob.sizes)
    for k, p in enumerate(pairs):
        T, inl, status, score = check_pair(p, canon, K0, check, seed=k)
        key = (p.i, p.j)
        prob.status[key], prob.scores[key], prob.inliers[key] = status, score, inl
        if T is not None:
            prob.rel_pose[key] = T
        if status == "ok":
            keep = np.ones_like(inl) if check.keep_outliers else inl
            pix_i, zi = _lookup(canon[p.i], p.xy_i)
            pix_j, zj = _lookup(canon[p.j], p.xy_j)
            keep = keep & (zi > 0) & (zj > 0)
            keys.append(np.stack([p.i * big + pix_i[keep], p.j * big + pix_j[keep]], 1))
            xys.append(np.stack([p.xy_i[keep], p.xy_j[keep]], 1))
            mw.append(p.conf[keep].astype(np.float64))
        elif status == "fallback":
            _fallback_terms(prob, p, fb)
    def cat(xs: list, dt, shape: tuple) -> np.ndarray:
        return np.concatenate(xs).astype(dt) if xs else np.zeros(shape, dt)

    allkeys = cat(keys, np.int64, (0, 2))
    allxy = cat(xys, np.float64, (0, 2, 2))
    uniq, first, inverse = np.unique(allkeys.reshape(-1), return_index=True, return_inverse=True)
    prob.feat_view = (uniq // big).astype(np.int64)
    pix = uniq % big
    # a feature's 3D point is lifted along the ray of the pixel its depth was read at; the
    # sub-pixel observations stay in match_xy for the re-projection loss (mixing a sub-pixel ray
    # with a rounded pixel's depth biases the geometry on slanted surfaces)
    prob.feat_xy = np.zeros((len(uniq), 2))
    prob.match_xy = allxy
    prob.feat_anchor = np.zeros(len(uniq), np.int64)
    prob.feat_offset = np.zeros(len(uniq), np.float64)
    for v in range(n):
        sel = np.flatnonzero(prob.feat_view == v)
        W = prob.sizes[v][0]
        y, x = pix[sel] // W, pix[sel] % W
        Wa = canon[v].anchor_depth.shape[1]
        prob.feat_anchor[sel] = starts[v] + (y // s) * Wa + x // s
        prob.feat_xy[sel] = np.stack([x, y], 1)
        prob.feat_offset[sel] = canon[v].offsets[y, x]
    inverse = inverse.reshape(-1, 2)
    prob.match_a, prob.match_b = inverse[:, 0].astype(np.int64), inverse[:, 1].astype(np.int64)
    prob.match_w = cat(mw, np.float64, (0,))
    prob.fb_anchor, prob.fb_ref = cat(fb[0], np.int64, (0,)), cat(fb[1], np.int64, (0,))
    prob.fb_target, prob.fb_w = cat(fb[2], np.float64, (0, 3)), cat(fb[3], np.float64, (0,))
    return prob


def _fallback_terms(prob: Problem, p: PairData, fb: tuple) -> None:
    """Anchors of views i and j regressed onto the pair's pointmaps X_ii / X_ji (camera i)."""
    for v, X, C in ((p.i, p.X_ii, p.C_ii), (p.j, p.X_ji, p.C_ji)):
        if X is None:
            continue
        a0, a1 = prob.anchor_start[v], prob.anchor_start[v + 1]
        xy = prob.anchor_xy[a0:a1].astype(np.int64)
        tgt = X[xy[:, 1], xy[:, 0]].astype(np.float64)
        c = C[xy[:, 1], xy[:, 0]] if C is not None else np.full(len(xy), 2.0)
        ok = np.isfinite(tgt).all(1) & (tgt[:, 2] > 0) & (c > 0.999) & (prob.anchor_z0[a0:a1] > 0)
        fb[0].append(np.arange(a0, a1)[ok])
        fb[1].append(np.full(int(ok.sum()), p.i))
        fb[2].append(tgt[ok])
        fb[3].append((c[ok] - 0.999).astype(np.float64))
