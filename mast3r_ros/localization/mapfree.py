"""Map-free localization: one reference image with a known pose and a metric pointmap.

The query pose comes from (in order of preference, first that succeeds):

1. ``pnp``: PnP + RANSAC on query pixels matched to the reference pointmap (MASt3R predicts
   this pointmap; any metric [H,W,3] reference-camera-frame pointmap works, e.g. from depth);
2. ``essential``: essential matrix on the matched pixels, metric scale from the pointmap depth
   of the inliers (needs translation, i.e. fails for pure rotation);
3. ``procrustes``: rigid alignment of the query's own pointmap onto the reference's at the
   matches (needs a query pointmap, e.g. MASt3R's second head or query depth).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mast3r_ros.config_fields import setting
from mast3r_ros.geometry.alignment import umeyama
from mast3r_ros.geometry.camera import check_intrinsics
from mast3r_ros.geometry.transforms import compose, invert, make_T, transform_points
from mast3r_ros.geometry.twoview import essential_relative_pose, metric_scale, triangulate
from mast3r_ros.localization.pose import PnPConfig, solve_pnp

METHODS = ("pnp", "essential", "procrustes")


@dataclass
class MapFreeConfig:
    """Map-free solver parameters.

    methods: solvers tried in order.
    min_inliers: inliers needed for a method's pose to be accepted.
    min_inlier_ratio: fraction of the matches that must be inliers: below it the views barely
        overlap and the few inliers fit a wrong pose as well as the right one, so the query is
        refused instead (measured on 7-Scenes: README, "MASt3R paths without the released weights").
    min_conf: pointmap confidence below which a pixel's 3D point is ignored.
    essential_threshold_px: epipolar RANSAC threshold.
    procrustes_inlier_m: residual (metres) below which a point counts as a Procrustes inlier.
    """
    methods: tuple[str, ...] = METHODS
    min_inliers: int = setting(12, "inliers needed for a method's pose to be accepted", min=4, max=100000)
    min_inlier_ratio: float = setting(0.05, "fraction of the matches that must be inliers (else refused)",
                                      min=0.0, max=1.0)
    min_conf: float = setting(0.0, "pointmap confidence below which a pixel's 3D point is ignored", min=0.0,
                              max=1e6)
    pnp: PnPConfig = field(default_factory=lambda: PnPConfig(max_reproj_px=4.0))
    essential_threshold_px: float = setting(1.0, "epipolar RANSAC threshold (pixels)", min=0.01, max=100.0)
    procrustes_inlier_m: float = setting(0.05, "Procrustes inlier residual (m)", min=0.0, max=10.0)


@dataclass
class MapFreeResult:
    """T_map_cam: [4,4] query camera-to-map pose or None; method: which solver produced it."""
    T_map_cam: np.ndarray | None
    method: str = ""
    n_inliers: int = 0
    message: str = ""


def sample_pointmap(pointmap: np.ndarray, xy: np.ndarray, conf: np.ndarray | None = None,
                    min_conf: float = 0.0) -> np.ndarray:
    """Points of a pointmap at pixels (nearest pixel); NaN where invalid or low confidence.

    Args:
        pointmap: [H,W,3] points in that image's camera frame (metres); z <= 0 = invalid.
        xy: [N,2] pixels (centre convention).
        conf: optional [H,W] confidence.
    Returns:
        [N,3] float64.
    """
    H, W = pointmap.shape[:2]
    ix = np.rint(xy[:, 0]).astype(np.int64)
    iy = np.rint(xy[:, 1]).astype(np.int64)
    inside = (ix >= 0) & (iy >= 0) & (ix < W) & (iy < H)
    out = np.full((len(xy), 3), np.nan)
    out[inside] = pointmap[iy[inside], ix[inside]]
    bad = ~np.all(np.isfinite(out), axis=1) | ~(out[:, 2] > 0)
    if conf is not None:
        c = np.full(len(xy), -np.inf)
        c[inside] = conf[iy[inside], ix[inside]]
        bad |= c < min_conf
    out[bad] = np.nan
    return out


def solve_mapfree(xy_query: np.ndarray, xy_ref: np.ndarray, K_query: np.ndarray,
                  query_size: tuple[int, int], pointmap_ref: np.ndarray, K_ref: np.ndarray,
                  T_map_ref: np.ndarray | None = None, conf_ref: np.ndarray | None = None,
                  pointmap_query: np.ndarray | None = None,
                  config: MapFreeConfig | None = None) -> MapFreeResult:
    """Query pose from matches to a single posed reference image.

    Args:
        xy_query, xy_ref: [N,2] matched pixels (centre convention) in query and reference.
        K_query, K_ref: [3,3] intrinsics of the query and reference images.
        query_size: (W, H) of the query image.
        pointmap_ref: [H,W,3] metric points of the reference, reference camera frame (metres).
        T_map_ref: [4,4] reference camera-to-map pose (identity: result is relative, T_ref_query).
        conf_ref: optional [H,W] confidences of ``pointmap_ref``.
        pointmap_query: optional [H,W,3] metric points of the query in its own camera frame
            (enables the Procrustes fallback).
    Returns:
        :class:`MapFreeResult` (never raises on degenerate geometry).
    """
    cfg = config or MapFreeConfig()
    K_query, K_ref = check_intrinsics(K_query), check_intrinsics(K_ref)
    T_map_ref = np.eye(4) if T_map_ref is None else np.asarray(T_map_ref, dtype=np.float64)
    xy_query = np.asarray(xy_query, dtype=np.float64).reshape(-1, 2)
    xy_ref = np.asarray(xy_ref, dtype=np.float64).reshape(-1, 2)
    if len(xy_query) != len(xy_ref):
        raise ValueError(f"{len(xy_query)} query pixels but {len(xy_ref)} reference pixels")
    X_ref = sample_pointmap(pointmap_ref, xy_ref, conf_ref, cfg.min_conf)
    reasons = []
    for method in cfg.methods:
        if method == "pnp":
            res = _pnp(xy_query, X_ref, K_query, query_size, cfg)
        elif method == "essential":
            res = _essential(xy_query, xy_ref, X_ref, K_query, K_ref, cfg)
        elif method == "procrustes":
            res = _procrustes(xy_query, X_ref, pointmap_query, cfg)
        else:
            raise ValueError(f"unknown map-free method {method!r}; choose from {METHODS}")
        refusal = _weak_evidence(res.n_inliers, len(xy_query), cfg)
        if res.T_map_cam is None:
            refusal = res.message or refusal or "no pose"
        if not refusal:
            res.T_map_cam = compose(T_map_ref, res.T_map_cam)  # T_ref_query -> T_map_query
            return res
        reasons.append(f"{method}: {refusal}")
        if res.T_map_cam is not None and res.n_inliers >= cfg.min_inliers:
            break  # too few of the matches agree: a looser model on the same matches would only fit chance
    return MapFreeResult(None, "", 0, "; ".join(reasons))


def _weak_evidence(n_inliers: int, n_matches: int, cfg: MapFreeConfig) -> str:
    """Why a pose with ``n_inliers`` of ``n_matches`` is not accepted ('' when it is)."""
    if n_inliers < cfg.min_inliers:
        return f"{n_inliers} inliers < {cfg.min_inliers}"
    if n_inliers < cfg.min_inlier_ratio * n_matches:
        return (f"{n_inliers} inliers of {n_matches} matches ({n_inliers / n_matches:.1%}) < "
                f"{cfg.min_inlier_ratio:.0%}: the views barely overlap")
    return ""


def _pnp(xy_q, X_ref, K_q, size, cfg) -> MapFreeResult:
    ok = np.all(np.isfinite(X_ref), axis=1)
    r = solve_pnp(xy_q[ok], X_ref[ok], K_q, size, cfg.pnp)
    return MapFreeResult(r.T_map_cam, "pnp", r.n_inliers, r.message)


def _essential(xy_q, xy_r, X_ref, K_q, K_r, cfg) -> MapFreeResult:
    est = essential_relative_pose(xy_r, xy_q, K_r, K_q, cfg.essential_threshold_px)
    if est is None:
        return MapFreeResult(None, "essential", 0, "essential matrix estimation failed")
    R, t, inl = est
    X_unit = triangulate(R, t, xy_r[inl], xy_q[inl], K_r, K_q)
    s = metric_scale(X_unit[:, 2], X_ref[inl, 2])
    if s is None:
        return MapFreeResult(None, "essential", int(inl.sum()), "no metric depth at the inliers")
    T_q_r = make_T(R, s * t)
    return MapFreeResult(invert(T_q_r), "essential", int(inl.sum()))


def _procrustes(xy_q, X_ref, pointmap_q, cfg) -> MapFreeResult:
    if pointmap_q is None:
        return MapFreeResult(None, "procrustes", 0, "no query pointmap")
    X_q = sample_pointmap(pointmap_q, xy_q)
    ok = np.all(np.isfinite(X_q), axis=1) & np.all(np.isfinite(X_ref), axis=1)
    if ok.sum() < 3:
        return MapFreeResult(None, "procrustes", 0, "fewer than 3 valid point pairs")
    src, dst = X_q[ok], X_ref[ok]
    keep = np.ones(len(src), bool)
    try:
        for _ in range(5):  # iteratively re-weighted: drop points with large residuals
            T, _ = umeyama(src[keep], dst[keep])
            res = np.linalg.norm(transform_points(T, src) - dst, axis=1)
            new = res < max(cfg.procrustes_inlier_m, 2.5 * np.median(res))
            if new.sum() < 3 or np.array_equal(new, keep):
                break
            keep = new
    except ValueError as exc:
        return MapFreeResult(None, "procrustes", 0, str(exc))
    n_inl = int(np.sum(res < cfg.procrustes_inlier_m))
    return MapFreeResult(T, "procrustes", n_inl)


# ---------------------------------------------------------------------------- front-ends
@dataclass
class MapFreeQuery:
    """A query for :func:`relocalize_pair`: image [H,W,3] uint8 RGB and its K [3,3]."""
    image: np.ndarray
    K: np.ndarray


def relocalize_mast3r(model, ref_image: np.ndarray, K_ref: np.ndarray, T_map_ref: np.ndarray,
                      query: MapFreeQuery, frontend_config=None, config: MapFreeConfig | None = None
                      ) -> MapFreeResult:
    """Map-free pose of ``query`` from one posed reference with a MASt3R-interface model.

    One pair (view 1 = reference): the reference's metric pointmap (its own head) and both
    descriptor maps; FRM from the reference's confident pixels (``min_pts_conf``) with the
    front-end's pixel tolerance; with ``procrustes`` among the methods, the query's own pointmap
    from the swapped pair. Everything is solved in network pixels (K scaled to the network
    image), which gives the same pose as original pixels.
    """
    from mast3r_ros.localization.frontends.mast3r import Mast3rFrontEndConfig
    from mast3r_ros.matching import MatchingConfig, fast_reciprocal_nn
    from mast3r_ros.model import preprocess_array

    fcfg = frontend_config or Mast3rFrontEndConfig()
    cfg = config or MapFreeConfig()
    ref = preprocess_array(np.asarray(ref_image), fcfg.image_size)
    qry = preprocess_array(np.asarray(query.image), fcfg.image_size)
    enc_r, enc_q = model.encode(ref.tensor), model.encode(qry.tensor)
    pred_r, pred_q = model.infer(enc_r, enc_q, heads1={"pts3d", "desc"}, heads2={"desc"})
    pts_r = pred_r["pts3d"][0].float().cpu().numpy()
    conf_r = pred_r["conf"][0].float().cpu().numpy()
    step = fcfg.subsample
    grid = np.zeros(conf_r.shape, bool)
    grid[step // 2::step, step // 2::step] = True
    ys, xs = np.nonzero(grid & (conf_r >= fcfg.min_pts_conf))
    if len(xs) == 0:
        return MapFreeResult(None, "", 0, "no confident reference pixels")
    matching = MatchingConfig(subsample=step, pixel_tol=fcfg.pixel_tol, backend=fcfg.nn_backend, device=fcfg.device)
    xy_r, xy_q = fast_reciprocal_nn(pred_r["desc"][0], pred_q["desc"][0], init_xy=(xs, ys),
                                    pixel_tol=fcfg.pixel_tol, config=matching)
    pointmap_q = None
    if "procrustes" in cfg.methods:
        pred_qq, _ = model.infer(enc_q, enc_r, heads1={"pts3d"}, heads2=set())
        pointmap_q = pred_qq["pts3d"][0].float().cpu().numpy()
    K_r = ref.transform.intrinsics_to_network(K_ref)
    K_q = qry.transform.intrinsics_to_network(query.K)
    return solve_mapfree(xy_q.astype(np.float64), xy_r.astype(np.float64), K_q, qry.transform.network_wh,
                         pts_r, K_r, T_map_ref, conf_r, pointmap_q, cfg)


def relocalize_classical(ref_image: np.ndarray, K_ref: np.ndarray, ref_depth: np.ndarray, T_map_ref: np.ndarray,
                         query: MapFreeQuery, classical=None, config: MapFreeConfig | None = None
                         ) -> MapFreeResult:
    """Map-free pose of ``query`` from one posed RGB-D reference: SIFT (RootSIFT, ratio + mutual)
    matches, the reference's sensor depth as its metric pointmap ([H,W] float32 m, 0 = none)."""
    from mast3r_ros.geometry.camera import depth_to_pointmap
    from mast3r_ros.localization.frontends.classical import ClassicalConfig, detect_sift, mutual_ratio_match, root_sift

    ccfg = classical or ClassicalConfig()
    if ref_depth is None:
        raise ValueError("the classical map-free front-end needs the reference's depth image")
    xy_r, d_r = detect_sift(ref_image, ccfg.max_features)
    xy_q, d_q = detect_sift(query.image, ccfg.max_features)
    qi, ri, _ = mutual_ratio_match(root_sift(d_q), root_sift(d_r), ccfg.ratio, ccfg.mutual)
    pointmap = depth_to_pointmap(check_intrinsics(K_ref), np.asarray(ref_depth, np.float32))
    H, W = np.asarray(query.image).shape[:2]
    return solve_mapfree(xy_q[qi].astype(np.float64), xy_r[ri].astype(np.float64), query.K, (W, H), pointmap,
                         K_ref, T_map_ref, None, None, config)
