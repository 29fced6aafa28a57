"""Absolute pose from 2D-3D correspondences: PnP + RANSAC + non-linear refinement.

Two back-ends with the same contract: ``poselib`` (LO-RANSAC with P3P + Levenberg-Marquardt
on a truncated robust loss) and OpenCV USAC (MAGSAC++ with P3P, then ``solvePnPRefineLM`` on
the inliers). Both run at full image resolution on undistorted pixels; ``poselib`` is the
default (the comparison on 7-Scenes is logged in ``benchmarks/README.md``).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mast3r_ros.config_fields import setting
from mast3r_ros.geometry.alignment import ransac_rigid
from mast3r_ros.geometry.camera import backproject_depth, project_points, sample_depth_robust, undistort_points
from mast3r_ros.geometry.transforms import invert, make_T, transform_points
from mast3r_ros.localization.covariance import (
    CovarianceConfig,
    depth_point_covariance,
    pnp_covariance,
    published_covariance,
    rigid_covariance,
)


@dataclass
class PnPConfig:
    """PnP parameters.

    solver: 'poselib' or 'opencv' (USAC MAGSAC++).
    max_reproj_px: RANSAC inlier threshold in pixels (full resolution).
    max_iterations / min_iterations: RANSAC iteration bounds.
    confidence: RANSAC success probability.
    seed: RANSAC seed (deterministic results for a given input).
    """
    solver: str = setting("poselib", "PnP back-end", choices=("poselib", "opencv"))
    max_reproj_px: float = setting(8.0, "PnP RANSAC inlier threshold (pixels)", min=0.1, max=100.0)
    max_iterations: int = 10_000
    min_iterations: int = 100
    confidence: float = 0.9999
    seed: int = 0


@dataclass
class PnPResult:
    """Outcome of :func:`solve_pnp`.

    T_map_cam: [4,4] float64 camera-to-map pose (OpenCV optical camera), None on failure.
    inliers: [N] bool mask over the input correspondences.
    reproj_err_px: [N] float64 reprojection error of every input point under the final pose
        (inf behind the camera / on failure).
    message: why it failed ('' on success).
    residual_m: [N] float64 3D-3D residuals (metres) for RGB-D poses, else None.
    X_query: [N,3] float64 query-camera points from the query depth (metres, NaN where no depth)
        for RGB-D poses, else None (the covariance needs them).
    """
    T_map_cam: np.ndarray | None
    inliers: np.ndarray
    reproj_err_px: np.ndarray
    message: str = ""
    residual_m: np.ndarray | None = None
    X_query: np.ndarray | None = None

    @property
    def n_inliers(self) -> int:
        return int(self.inliers.sum())

    @property
    def success(self) -> bool:
        return self.T_map_cam is not None


def reprojection_errors(T_map_cam: np.ndarray, K: np.ndarray, xy: np.ndarray, X_map: np.ndarray
                        ) -> np.ndarray:
    """[N] pixel distances between ``xy`` (undistorted) and projected map points (inf if z<=0)."""
    X_cam = transform_points(invert(T_map_cam), X_map)
    proj, z = project_points(K, X_cam)
    err = np.linalg.norm(proj - xy, axis=1)
    return np.where(z > 1e-9, err, np.inf)


def solve_pnp(xy: np.ndarray, X_map: np.ndarray, K: np.ndarray, image_size: tuple[int, int],
              config: PnPConfig | None = None, dist: np.ndarray | None = None,
              conf: np.ndarray | None = None) -> PnPResult:
    """Robust camera pose from 2D-3D matches.

    Args:
        xy: [N,2] float64 pixels of the query image (centre convention; distorted if ``dist``).
        X_map: [N,3] float64 points in the map frame (metres).
        K: [3,3] intrinsics of the query image.
        image_size: (W, H) of the query image.
        config: :class:`PnPConfig`.
        dist: OpenCV distortion coefficients (pixels are undistorted first) or None.
        conf: optional [N] confidences; used to order samples (PROSAC) in poselib.
    Returns:
        :class:`PnPResult` (never raises for degenerate input; ``message`` explains failures).
    """
    cfg = config or PnPConfig()
    xy = undistort_points(K, dist, np.asarray(xy, dtype=np.float64).reshape(-1, 2))
    X_map = np.asarray(X_map, dtype=np.float64).reshape(-1, 3)
    n = len(xy)
    fail = PnPResult(None, np.zeros(n, bool), np.full(n, np.inf))
    good = np.all(np.isfinite(xy), axis=1) & np.all(np.isfinite(X_map), axis=1)
    if good.sum() < 4:
        fail.message = f"too few valid correspondences for PnP ({int(good.sum())} < 4)"
        return fail
    if conf is not None:
        order = np.argsort(-np.asarray(conf, dtype=np.float64)[good], kind="stable")
    else:
        order = np.arange(int(good.sum()))
    idx = np.flatnonzero(good)[order]
    if cfg.solver == "poselib":
        T = _poselib(xy[idx], X_map[idx], K, image_size, cfg, prosac=conf is not None)
    elif cfg.solver == "opencv":
        T = _opencv(xy[idx], X_map[idx], K, cfg)
    else:
        raise ValueError(f"unknown PnP solver {cfg.solver!r}; choose 'poselib' or 'opencv'")
    if T is None or not np.all(np.isfinite(T)):
        fail.message = "PnP RANSAC found no pose"
        return fail
    err = reprojection_errors(T, K, xy, X_map)
    err[~good] = np.inf
    return PnPResult(T, err <= cfg.max_reproj_px, err)


def _poselib(xy, X, K, image_size, cfg: PnPConfig, prosac: bool) -> np.ndarray | None:
    import poselib

    camera = {"model": "PINHOLE", "width": int(image_size[0]), "height": int(image_size[1]),
              "params": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]}
    ransac = {"max_reproj_error": cfg.max_reproj_px, "max_iterations": cfg.max_iterations,
              "min_iterations": cfg.min_iterations, "success_prob": cfg.confidence,
              "seed": cfg.seed, "progressive_sampling": bool(prosac)}
    pose, info = poselib.estimate_absolute_pose(xy, X, camera, ransac, {})
    if info.get("num_inliers", 0) < 4:
        return None
    return invert(make_T(pose.R, pose.t))


def _opencv(xy, X, K, cfg: PnPConfig) -> np.ndarray | None:
    params = cv2.UsacParams()
    params.threshold = cfg.max_reproj_px
    params.confidence = cfg.confidence
    params.maxIterations = cfg.max_iterations
    params.sampler = cv2.SAMPLING_PROSAC
    params.score = cv2.SCORE_METHOD_MAGSAC
    params.loMethod = cv2.LOCAL_OPTIM_SIGMA
    params.randomGeneratorState = cfg.seed
    try:
        ok, _, rvec, tvec, inl = cv2.solvePnPRansac(X.reshape(-1, 1, 3), xy.reshape(-1, 1, 2), K,
                                                 None, params=params)
    except cv2.error:
        return None
    if not ok or inl is None or len(inl) < 4:
        return None
    inl = inl.ravel()
    rvec, tvec = cv2.solvePnPRefineLM(X[inl].reshape(-1, 1, 3), xy[inl].reshape(-1, 1, 2), K, None,
                                      rvec, tvec)
    R, _ = cv2.Rodrigues(rvec)
    return invert(make_T(R, tvec.ravel()))


def solve_pose_rgbd(xy: np.ndarray, X_map: np.ndarray, depth: np.ndarray, K: np.ndarray,
                    inlier_m: float = 0.05, dist: np.ndarray | None = None, seed: int = 0,
                    min_points: int = 12) -> PnPResult:
    """Pose of an RGB-D query from 3D-3D matches (query depth vs map points).

    Why: the 3D-3D alignment uses the depth geometry, which is what RGB-D ground truth and the
    map's 3D points are made of, and is insensitive to errors in the colour intrinsics.

    Args:
        xy: [N,2] query pixels (centre convention, as detected).
        X_map: [N,3] matched map points (metres).
        depth: [H,W] float32 query depth registered to the query image (metres, 0 invalid).
        K: [3,3] query intrinsics; dist: optional distortion.
        inlier_m: 3D inlier distance (metres).
    Returns:
        :class:`PnPResult` whose ``inliers`` are the 3D-3D inliers (False where no depth) and
        ``reproj_err_px`` the reprojection errors under the found pose; failure message if
        fewer than ``min_points`` matches have depth.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    X_map = np.asarray(X_map, dtype=np.float64).reshape(-1, 3)
    n = len(xy)
    z = sample_depth_robust(np.asarray(depth, dtype=np.float32), xy)
    has = np.isfinite(z) & np.all(np.isfinite(X_map), axis=1)
    if has.sum() < min_points:
        return PnPResult(None, np.zeros(n, bool), np.full(n, np.inf),
                         f"too few matches with query depth ({int(has.sum())} < {min_points})")
    xy_u = undistort_points(K, dist, xy)
    X_cam = backproject_depth(K, xy_u[has], z[has])
    T, inl = ransac_rigid(X_cam, X_map[has], inlier_m, seed=seed)
    if T is None:
        return PnPResult(None, np.zeros(n, bool), np.full(n, np.inf), "3D-3D RANSAC found no pose")
    inliers = np.zeros(n, bool)
    inliers[np.flatnonzero(has)[inl]] = True
    residual = np.full(n, np.inf)
    residual[has] = np.linalg.norm(transform_points(T, X_cam) - X_map[has], axis=1)
    X_query = np.full((n, 3), np.nan)
    X_query[has] = X_cam
    return PnPResult(T, inliers, reprojection_errors(T, K, xy_u, X_map), residual_m=residual,
                     X_query=X_query)


def fix_covariance(result: PnPResult, xy: np.ndarray, X_map: np.ndarray, X_map_cov: np.ndarray | None,
                   K: np.ndarray, dist: np.ndarray | None = None,
                   config: CovarianceConfig | None = None, keyframe_distance_m: float = 0.0) -> np.ndarray:
    """Published [6,6] covariance of a successful pose (model in ``covariance.py``).

    Args:
        result: a successful :class:`PnPResult` from :func:`solve_pnp` or :func:`solve_pose_rgbd`
            (RGB-D when ``result.X_query`` is set: 3D-3D propagation with the query depth noise).
        xy: [N,2] query pixels as given to the solver (distorted if ``dist``).
        X_map: [N,3] map points; X_map_cov: optional [N,3,3] their map-frame covariances (m^2).
        K: [3,3] query intrinsics; dist: optional distortion.
        keyframe_distance_m: distance from the pose to the nearest map keyframe (model-error term).
    Returns:
        [6,6] float64, ROS order (x, y, z, rot_x, rot_y, rot_z), m^2 / rad^2, map axes.
    """
    cfg = config or CovarianceConfig()
    inl = np.asarray(result.inliers, bool)
    C_map = None if X_map_cov is None else np.asarray(X_map_cov, dtype=np.float64)[inl]
    X_map = np.asarray(X_map, dtype=np.float64).reshape(-1, 3)[inl]
    if result.X_query is not None:
        X_cam = result.X_query[inl]
        prop = rigid_covariance(result.T_map_cam, X_cam, X_map, depth_point_covariance(X_cam, K, cfg), C_map)
        return published_covariance(prop, cfg.model_rgbd, keyframe_distance_m)
    xy_u = undistort_points(K, dist, np.asarray(xy, dtype=np.float64).reshape(-1, 2)[inl])
    prop = pnp_covariance(result.T_map_cam, K, xy_u, X_map, C_map, cfg)
    return published_covariance(prop, cfg.model_pnp, keyframe_distance_m)
