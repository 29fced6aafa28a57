"""Two-view geometry: essential matrix, triangulation and metric scale from known depth.

Frames: view 1 is the reference camera, view 2 the query; the returned relative pose is
``T_2_1`` (maps view-1 camera points to view-2 camera points), OpenCV optical frames.
"""
from __future__ import annotations

import cv2
import numpy as np

from mast3r_ros.geometry.transforms import make_T


def _normalize(K: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Pixels (centre convention) -> [N,2] normalised image coordinates ``K^-1 [x, y, 1]``."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    h = np.c_[xy, np.ones(len(xy))] @ np.linalg.inv(K).T
    return h[:, :2] / h[:, 2:]


def essential_relative_pose(xy1: np.ndarray, xy2: np.ndarray, K1: np.ndarray, K2: np.ndarray,
                            threshold_px: float = 1.0, confidence: float = 0.9999,
                            image_size: tuple[int, int] = (640, 480), seed: int = 0
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Relative rotation and unit translation from matched pixels.

    poselib's LO-RANSAC (5-point essential) followed by a non-linear refinement of the Sampson
    error on the inliers; the refinement is what brings the rotation to ~0.1 deg on real data.

    Args:
        xy1, xy2: [N,2] matched pixels in views 1 and 2 (centre convention).
        K1, K2: [3,3] intrinsics of the two views (may differ).
        threshold_px: epipolar inlier threshold in pixels.
        image_size: (W, H), only used to describe the cameras to poselib.
    Returns:
        (R_2_1 [3,3], t_2_1 [3] unit-norm, inliers [N] bool), or None when degenerate.
    """
    import poselib

    if len(xy1) < 5:
        return None
    cams = [{"model": "PINHOLE", "width": int(image_size[0]), "height": int(image_size[1]),
             "params": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]} for K in (K1, K2)]
    ransac = {"max_epipolar_error": threshold_px, "success_prob": confidence, "seed": seed}
    pose, info = poselib.estimate_relative_pose(np.asarray(xy1, np.float64), np.asarray(xy2, np.float64),
                                                cams[0], cams[1], ransac, {})
    inl = np.asarray(info.get("inliers", []), dtype=bool)
    t = np.asarray(pose.t, dtype=np.float64)
    if inl.sum() < 5 or not np.isfinite(t).all() or np.linalg.norm(t) < 1e-12:
        return None
    return np.asarray(pose.R), t / np.linalg.norm(t), inl


def triangulate(R_2_1: np.ndarray, t_2_1: np.ndarray, xy1: np.ndarray, xy2: np.ndarray,
                K1: np.ndarray, K2: np.ndarray) -> np.ndarray:
    """Linear (DLT) triangulation; returns [N,3] points in the view-1 camera frame."""
    P1 = K1 @ np.eye(3, 4)
    P2 = K2 @ make_T(R_2_1, t_2_1)[:3]
    Xh = cv2.triangulatePoints(P1, P2, np.asarray(xy1, np.float64).T, np.asarray(xy2, np.float64).T)
    return (Xh[:3] / Xh[3]).T


def metric_scale(z_unit: np.ndarray, z_metric: np.ndarray, min_points: int = 5) -> float | None:
    """Robust scale s with ``z_metric ~= s * z_unit`` (median of ratios over valid points).

    Why the median: depth sensor / pointmap outliers would bias a least-squares scale.
    """
    z_unit = np.asarray(z_unit, dtype=np.float64)
    z_metric = np.asarray(z_metric, dtype=np.float64)
    ok = np.isfinite(z_unit) & np.isfinite(z_metric) & (z_unit > 1e-9) & (z_metric > 1e-9)
    if ok.sum() < min_points:
        return None
    return float(np.median(z_metric[ok] / z_unit[ok]))
