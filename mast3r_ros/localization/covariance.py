"""6x6 pose covariance of a PnP solution, in ROS ``PoseWithCovariance`` order.

Parameterisation (documented because ROS leaves it implicit): the camera pose ``T_map_cam``
is perturbed as ``p' = p + dp`` (camera centre in the map frame, metres) and
``R' = exp([dtheta]_x) R`` (small rotations about the *map-frame* x, y, z axes, radians), so the
state is ``(x, y, z, roll, pitch, yaw) = (dp, dtheta)``. The covariance is the Gauss-Newton
estimate ``sigma^2 (J^T J)^-1`` at the refined pose, with ``J`` the Jacobian of the inlier
reprojection residuals (pixels) and ``sigma^2`` the residual variance (sum r^2 / (2N - 6)).
"""
from __future__ import annotations

import numpy as np


def _skew(v: np.ndarray) -> np.ndarray:
    """[N,3] -> [N,3,3] cross-product matrices."""
    z = np.zeros(len(v))
    return np.stack([np.stack([z, -v[:, 2], v[:, 1]], -1),
                     np.stack([v[:, 2], z, -v[:, 0]], -1),
                     np.stack([-v[:, 1], v[:, 0], z], -1)], axis=1)


def reprojection_jacobian(T_map_cam: np.ndarray, K: np.ndarray, X_map: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Projected pixels and their Jacobian w.r.t. (dp, dtheta).

    Args:
        T_map_cam: [4,4] camera-to-map pose.
        K: [3,3] intrinsics (zero skew).
        X_map: [N,3] map points (metres).
    Returns:
        proj: [N,2] pixels; J: [N,2,6] d(pixel)/d(dp, dtheta).
    """
    R, p = T_map_cam[:3, :3], T_map_cam[:3, 3]
    d = np.asarray(X_map, dtype=np.float64) - p
    Xc = d @ R  # R^T d per row
    x, y, z = Xc[:, 0], Xc[:, 1], Xc[:, 2]
    fx, fy = K[0, 0], K[1, 1]
    proj = np.stack([fx * x / z + K[0, 2], fy * y / z + K[1, 2]], axis=1)
    dpi = np.zeros((len(Xc), 2, 3))
    dpi[:, 0, 0] = fx / z
    dpi[:, 0, 2] = -fx * x / z**2
    dpi[:, 1, 1] = fy / z
    dpi[:, 1, 2] = -fy * y / z**2
    dXc_dp = -R.T[None].repeat(len(Xc), 0)
    dXc_dw = R.T[None] @ _skew(d)  # d/dw of R^T (I - [w]x) d = R^T [d]x w
    J = np.concatenate([dpi @ dXc_dp, dpi @ dXc_dw], axis=2)
    return proj, J


def pose_covariance(T_map_cam: np.ndarray, K: np.ndarray, xy: np.ndarray, X_map: np.ndarray,
                    min_sigma_px: float = 0.5) -> np.ndarray:
    """6x6 covariance (ROS order x, y, z, roll, pitch, yaw; m^2 / rad^2; see module doc).

    Args:
        T_map_cam: [4,4] refined pose.
        K: [3,3] intrinsics of the (undistorted) pixels.
        xy: [N,2] inlier pixels (undistorted, centre convention).
        X_map: [N,3] inlier map points (metres).
        min_sigma_px: floor on the residual std so that a lucky near-zero residual does not
            claim an impossibly tight pose.
    Returns:
        [6,6] float64 symmetric covariance; a large diagonal (1e6) when it is not estimable
        (fewer than 4 points or a singular system).
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    n = len(xy)
    if n < 4:
        return np.eye(6) * 1e6
    proj, J = reprojection_jacobian(T_map_cam, K, X_map)
    r = (proj - xy).ravel()
    dof = max(2 * n - 6, 1)
    sigma2 = max(float(r @ r) / dof, min_sigma_px**2)
    Jm = J.reshape(-1, 6)
    H = Jm.T @ Jm
    if not np.all(np.isfinite(H)) or np.linalg.cond(H) > 1e12:
        return np.eye(6) * 1e6
    cov = sigma2 * np.linalg.inv(H)
    return 0.5 * (cov + cov.T)
