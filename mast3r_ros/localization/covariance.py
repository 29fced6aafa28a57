"""6x6 pose covariance of a localization fix, in ROS ``PoseWithCovariance`` order.

Parameterisation (documented because ROS leaves it implicit): the camera pose ``T_map_cam`` is
perturbed as ``p' = p + dp`` (camera centre in the map frame, metres) and ``R' = exp([dtheta]_x) R``
(small rotations about the *map-frame* x, y, z axes, radians); the state is
``(x, y, z, rot_x, rot_y, rot_z) = (dp, dtheta)``. :func:`camera_to_base` moves it to the robot base
(the nodes publish the base's pose) with the same parameterisation.

The published covariance is the sum of two terms (see :class:`CovarianceConfig`):

1. **Propagated measurement noise** of the estimator that produced the pose, to first order.
   Each inlier ``i`` has a residual ``r_i`` (PnP: reprojection in pixels; RGB-D: 3D-3D distance in
   metres), a Jacobian ``J_i = dr_i / d(dp, dtheta)`` and an a-priori residual covariance ``C_i``
   made of the keypoint noise and the 3D point's own uncertainty (map point and, for RGB-D, the
   query's depth point): sensor depth follows a Kinect-like noise growing with ``z^2``
   (:func:`depth_point_covariance`), MASt3R pointmaps a noise falling with the predicted confidence
   (:func:`pointmap_covariance`). The pose solvers minimise *unweighted* residuals on the inliers,
   so the covariance is the sandwich ``H^-1 (sum J_i^T C_i J_i) H^-1`` with ``H = sum J_i^T J_i``,
   multiplied by the variance factor ``s^2 = sum r_i^T C_i^-1 r_i / (dof)`` when the residuals are
   larger than the a-priori model says (``s^2`` is never taken below 1: RANSAC truncates the
   residuals, so a small sum does not prove a better-than-modelled sensor). This term grows when
   there are fewer inliers, when they cover a narrower field of view or a shallower depth range.
2. **Model error** ``sigma(d)^2 I3`` on position and on rotation (:class:`ModelError`, one for
   RGB-D fixes and one for PnP fixes), with
   ``sigma(d)^2 = sigma_0^2 + (g d)^2`` and ``d`` the distance from the fix to the nearest map
   keyframe: what the measurement model leaves out and no single frame can observe — errors of the
   map itself (keyframe poses: on 7-Scenes the KinectFusion pseudo ground truth drifts by
   centimetres and degrees between parts of the sequence), colour/depth calibration, rolling
   shutter, correlated matching errors. Why it grows with ``d``: these errors reach the pose through
   map points seen from another viewpoint, and the drift between the map's and the query's
   reference grows with the distance travelled (on 7-Scenes the error correlates with ``d`` at
   0.6-0.75 on the temporal split). ``sigma_0`` and ``g`` are calibrated on held-out data by
   ``benchmarks/bench_covariance.py`` (maximum likelihood for the shape, then one scale so that 95 %
   of the calibration errors fall in their 95 % ellipsoids) on the 7-Scenes *interleaved* and
   *reverse temporal* splits, each query mode on its own fixes; the shipped values below are that
   calibration, reported on the temporal split, which shares no query with them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from mast3r_ros.geometry.transforms import invert, rotation_log

NOT_ESTIMABLE = 1e6  # diagonal of the covariance published when the pose is not observable


def _check_non_negative(obj, names) -> None:
    for name in names:
        v = getattr(obj, name)
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"covariance parameter {name} must be finite and >= 0, got {v}")


@dataclass
class ModelError:
    """Model-error term ``sigma(d)^2 = sigma^2 + (growth d)^2`` (position and rotation; module doc).

    sigma_m / sigma_rad: at the keyframes (d = 0).
    growth_m_per_m / growth_rad_per_m: growth with the distance ``d`` to the nearest keyframe.
    """
    sigma_m: float = 0.0
    growth_m_per_m: float = 0.0
    sigma_rad: float = 0.0
    growth_rad_per_m: float = 0.0

    def __post_init__(self) -> None:
        _check_non_negative(self, ("sigma_m", "growth_m_per_m", "sigma_rad", "growth_rad_per_m"))

    def covariance(self, keyframe_distance_m: float = 0.0) -> np.ndarray:
        """[6,6] model-error covariance (m^2, rad^2) of a fix ``keyframe_distance_m`` from the nearest keyframe."""
        d = float(keyframe_distance_m)
        if not np.isfinite(d) or d < 0:
            raise ValueError(f"keyframe distance must be finite and >= 0, got {d}")
        var_m = self.sigma_m**2 + (self.growth_m_per_m * d) ** 2
        var_rad = self.sigma_rad**2 + (self.growth_rad_per_m * d) ** 2
        return np.diag([var_m] * 3 + [var_rad] * 3)


# Calibrated by benchmarks/bench_covariance.py on the 7-Scenes interleaved + reverse temporal splits
# (classical front-end, --rgbd-calib 7scenes); numbers and command in the README "Covariance" section.
MODEL_ERROR_RGBD = ModelError(sigma_m=0.0050, growth_m_per_m=0.114, sigma_rad=0.0048, growth_rad_per_m=0.099)
MODEL_ERROR_PNP = ModelError(sigma_m=0.0074, growth_m_per_m=0.155, sigma_rad=0.0050, growth_rad_per_m=0.110)


@dataclass
class CovarianceConfig:
    """Covariance model parameters (units in the names; see the module doc).

    pixel_sigma_px: a-priori keypoint position noise (query and keyframe pixels).
    depth_sigma_m / depth_sigma_quad / depth_sigma_z0_m: sensor depth noise
        ``sigma_z = depth_sigma_m + depth_sigma_quad * (z - depth_sigma_z0_m)^2`` (Kinect v1 axial
        noise model of Nguyen, Izadi, Lovell, 3DIMPVT 2012: 1.2 mm + 1.9e-3 (z - 0.4 m)^2).
    pointmap_sigma_rel: relative error of a MASt3R point at confidence 1: ``sigma = rel * z / conf``
        (the confidence-weighted regression loss makes the expected error inversely proportional
        to the predicted confidence).
    model_rgbd / model_pnp: model-error terms of RGB-D (3D-3D) and of PnP fixes (PnP also suffers
        from colour-intrinsics errors, which the 3D-3D fit does not see).
    """
    pixel_sigma_px: float = 1.0
    depth_sigma_m: float = 0.0012
    depth_sigma_quad: float = 0.0019
    depth_sigma_z0_m: float = 0.4
    pointmap_sigma_rel: float = 0.02
    model_rgbd: ModelError = field(default_factory=lambda: replace(MODEL_ERROR_RGBD))
    model_pnp: ModelError = field(default_factory=lambda: replace(MODEL_ERROR_PNP))

    def __post_init__(self) -> None:
        _check_non_negative(self, ("pixel_sigma_px", "depth_sigma_m", "depth_sigma_quad", "pointmap_sigma_rel"))

    def without_model_error(self) -> "CovarianceConfig":
        """This configuration with both model-error terms at zero (propagation only)."""
        return replace(self, model_rgbd=ModelError(), model_pnp=ModelError())


def _skew(v: np.ndarray) -> np.ndarray:
    """[N,3] -> [N,3,3] cross-product matrices."""
    z = np.zeros(len(v))
    return np.stack([np.stack([z, -v[:, 2], v[:, 1]], -1),
                     np.stack([v[:, 2], z, -v[:, 0]], -1),
                     np.stack([-v[:, 1], v[:, 0], z], -1)], axis=1)


# ---------------------------------------------------------------------------------- 3D points
def depth_point_covariance(X_cam: np.ndarray, K: np.ndarray, config: CovarianceConfig | None = None
                           ) -> np.ndarray:
    """Covariance of points back-projected from sensor depth, in their camera frame.

    ``X = z K^-1 (u, v, 1)``: the pixel noise moves the point laterally by ``z sigma_px / f``, the
    depth noise along the ray; first order in (u, v, z).

    Args:
        X_cam: [N,3] camera-frame points (metres, z > 0).
        K: [3,3] intrinsics of the pixels they came from.
    Returns:
        [N,3,3] float64 covariances (m^2), camera frame.
    """
    cfg = config or CovarianceConfig()
    X = np.asarray(X_cam, dtype=np.float64).reshape(-1, 3)
    z = X[:, 2]
    sz = cfg.depth_sigma_m + cfg.depth_sigma_quad * (z - cfg.depth_sigma_z0_m) ** 2
    A = np.zeros((len(X), 3, 3))  # d(x, y, z) / d(u, v, z)
    A[:, 0, 0] = z / K[0, 0]
    A[:, 1, 1] = z / K[1, 1]
    A[:, 0, 2] = X[:, 0] / z
    A[:, 1, 2] = X[:, 1] / z
    A[:, 2, 2] = 1.0
    S = np.zeros((len(X), 3, 3))
    S[:, 0, 0] = S[:, 1, 1] = cfg.pixel_sigma_px**2
    S[:, 2, 2] = sz**2
    return A @ S @ A.transpose(0, 2, 1)


def pointmap_covariance(X_cam: np.ndarray, conf: np.ndarray, config: CovarianceConfig | None = None
                        ) -> np.ndarray:
    """Isotropic covariance of predicted (MASt3R) points, ``sigma = rel * z / conf``.

    Args:
        X_cam: [N,3] camera-frame points (metres); conf: [N] predicted confidence (>= 1).
    Returns:
        [N,3,3] float64 covariances (m^2).
    """
    cfg = config or CovarianceConfig()
    X = np.asarray(X_cam, dtype=np.float64).reshape(-1, 3)
    s = cfg.pointmap_sigma_rel * np.abs(X[:, 2]) / np.maximum(np.asarray(conf, np.float64).reshape(-1), 1.0)
    return (s**2)[:, None, None] * np.eye(3)[None]


def rotate_covariance(R: np.ndarray, C: np.ndarray) -> np.ndarray:
    """[N,3,3] covariances of points moved by rotation ``R`` [3,3]: ``R C R^T``."""
    return np.einsum("ij,njk,lk->nil", R, C, R)


# ---------------------------------------------------------------------------------- Jacobians
def reprojection_jacobian(T_map_cam: np.ndarray, K: np.ndarray, X_map: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projected pixels and their Jacobians w.r.t. the pose and the map point.

    Args:
        T_map_cam: [4,4] camera-to-map pose.
        K: [3,3] intrinsics (zero skew).
        X_map: [N,3] map points (metres).
    Returns:
        proj: [N,2] pixels; J: [N,2,6] d(pixel)/d(dp, dtheta); J_X: [N,2,3] d(pixel)/d(X_map).
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
    J_X = dpi @ R.T[None]
    dXc_dw = R.T[None] @ _skew(d)  # d/dw of R^T (I - [w]x) d = R^T [d]x w
    J = np.concatenate([-J_X, dpi @ dXc_dw], axis=2)
    return proj, J, J_X


def _sandwich(J: np.ndarray, C: np.ndarray, r: np.ndarray) -> np.ndarray:
    """First-order covariance of the unweighted least-squares estimate (see module doc).

    J: [N,k,6] residual Jacobians, C: [N,k,k] residual covariances, r: [N,k] residuals.
    """
    n, k = r.shape
    dof = n * k - 6
    if dof <= 0:
        return np.eye(6) * NOT_ESTIMABLE
    Jm = J.reshape(-1, 6)
    H = Jm.T @ Jm
    if not np.all(np.isfinite(H)) or np.linalg.cond(H) > 1e12:
        return np.eye(6) * NOT_ESTIMABLE
    Cinv = np.linalg.inv(C)
    s2 = max(float(np.einsum("ni,nij,nj->", r, Cinv, r)) / dof, 1.0)
    B = np.einsum("nki,nkl,nlj->ij", J, C, J)
    Hinv = np.linalg.inv(H)
    cov = s2 * Hinv @ B @ Hinv
    return 0.5 * (cov + cov.T)


# ---------------------------------------------------------------------------------- estimators
def pnp_covariance(T_map_cam: np.ndarray, K: np.ndarray, xy: np.ndarray, X_map: np.ndarray,
                   X_map_cov: np.ndarray | None = None, config: CovarianceConfig | None = None
                   ) -> np.ndarray:
    """Propagated covariance of a PnP pose (term 1 of the module doc), no model error.

    Args:
        T_map_cam: [4,4] refined pose.
        K: [3,3] intrinsics of the (undistorted) pixels.
        xy: [N,2] inlier pixels (undistorted, centre convention).
        X_map: [N,3] inlier map points (metres).
        X_map_cov: optional [N,3,3] map-frame covariances of ``X_map`` (m^2); None = exact points.
    Returns:
        [6,6] float64 (m^2, rad^2; ROS order), ``NOT_ESTIMABLE`` * I when not observable.
    """
    cfg = config or CovarianceConfig()
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) < 4:
        return np.eye(6) * NOT_ESTIMABLE
    proj, J, J_X = reprojection_jacobian(T_map_cam, K, X_map)
    C = np.broadcast_to(np.eye(2) * cfg.pixel_sigma_px**2, (len(xy), 2, 2)).copy()
    if X_map_cov is not None:
        C += J_X @ np.asarray(X_map_cov, dtype=np.float64) @ J_X.transpose(0, 2, 1)
    C += np.eye(2) * 1e-12
    return _sandwich(J, C, proj - xy)


def rigid_covariance(T_map_cam: np.ndarray, X_cam: np.ndarray, X_map: np.ndarray,
                     X_cam_cov: np.ndarray, X_map_cov: np.ndarray | None = None) -> np.ndarray:
    """Propagated covariance of a 3D-3D (RGB-D) pose, no model error.

    The residual ``R X_cam + p - X_map`` moves by ``dp - [R X_cam]_x dtheta``.

    Args:
        T_map_cam: [4,4] pose; X_cam: [N,3] query points (camera frame, metres);
        X_map: [N,3] matched map points; X_cam_cov: [N,3,3] camera-frame covariances of X_cam;
        X_map_cov: optional [N,3,3] map-frame covariances of X_map (m^2).
    Returns:
        [6,6] float64 (m^2, rad^2; ROS order).
    """
    R, p = T_map_cam[:3, :3], T_map_cam[:3, 3]
    X_cam = np.asarray(X_cam, dtype=np.float64).reshape(-1, 3)
    if len(X_cam) < 3:
        return np.eye(6) * NOT_ESTIMABLE
    RX = X_cam @ R.T
    r = RX + p - np.asarray(X_map, dtype=np.float64).reshape(-1, 3)
    J = np.concatenate([np.broadcast_to(np.eye(3), (len(RX), 3, 3)), -_skew(RX)], axis=2)
    C = rotate_covariance(R, np.asarray(X_cam_cov, dtype=np.float64))
    if X_map_cov is not None:
        C = C + np.asarray(X_map_cov, dtype=np.float64)
    return _sandwich(J, C + np.eye(3) * 1e-12, r)


def pose_covariance(T_map_cam: np.ndarray, K: np.ndarray, xy: np.ndarray, X_map: np.ndarray,
                    min_sigma_px: float = 0.5) -> np.ndarray:
    """Gauss-Newton PnP covariance with exact map points and ``min_sigma_px`` pixel noise (kept
    for callers that have no point uncertainties; equals :func:`pnp_covariance` without map noise)."""
    return pnp_covariance(T_map_cam, K, xy, X_map, None, CovarianceConfig(pixel_sigma_px=min_sigma_px))


def pose_error(T_est: np.ndarray, T_true: np.ndarray) -> np.ndarray:
    """[6] error of ``T_est`` vs ``T_true`` (both [4,4] T_map_cam) in the covariance's
    parameterisation: (dp metres, dtheta radians about map axes)."""
    return np.r_[T_est[:3, 3] - T_true[:3, 3], rotation_log(T_est[:3, :3] @ T_true[:3, :3].T)]


def fraction_inside(err: np.ndarray, cov: np.ndarray, block: slice, level: float = 0.95) -> float:
    """Fraction of errors inside the ``level`` ellipsoid of their covariance's 3x3 ``block``.

    Args:
        err: [M,6] errors (:func:`pose_error`); cov: [M,6,6] their covariances;
        block: ``slice(0, 3)`` (position) or ``slice(3, 6)`` (rotation); level: chi-square level (3 dof).
    """
    from scipy.stats import chi2

    e = np.asarray(err, dtype=np.float64)[:, block]
    if not len(e):
        return float("nan")
    C = np.asarray(cov, dtype=np.float64)[:, block, block]
    d2 = np.einsum("ni,ni->n", e, np.linalg.solve(C, e[..., None])[..., 0])
    return float(np.mean(d2 <= chi2.ppf(level, 3)))


def nearest_keyframe_distance(T_map_cam: np.ndarray, keyframes_T_map_cam: np.ndarray) -> float:
    """Distance (metres) from a pose's camera centre to the nearest of [M,4,4] keyframe poses (0 if none)."""
    K = np.asarray(keyframes_T_map_cam, dtype=np.float64).reshape(-1, 4, 4)
    if not len(K):
        return 0.0
    return float(np.min(np.linalg.norm(K[:, :3, 3] - np.asarray(T_map_cam)[:3, 3], axis=1)))


def published_covariance(propagated: np.ndarray, model: ModelError, keyframe_distance_m: float = 0.0
                         ) -> np.ndarray:
    """Propagated covariance plus the model-error term: what a fix publishes ([6,6])."""
    return np.asarray(propagated, dtype=np.float64) + model.covariance(keyframe_distance_m)


def camera_to_base(T_map_cam: np.ndarray, cov_cam: np.ndarray | None, T_base_cam: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """Pose and covariance of the robot base from those of its (optical) camera.

    Args:
        T_map_cam: [4,4] camera-to-map pose (OpenCV optical camera frame).
        cov_cam: [6,6] covariance of (position, rotation about map axes) of the camera, ROS order, or None.
        T_base_cam: [4,4] camera optical frame expressed in the base frame (from TF).
    Returns:
        T_map_base [4,4] and its [6,6] covariance (same parameterisation). The base position is
        ``p_cam + R_cam t_cam_base``, so a rotation error moves it by ``-[a]x dtheta`` with
        ``a = p_base - p_cam``; the rotation error itself is shared.
    """
    T_map_base = T_map_cam @ invert(T_base_cam)
    if cov_cam is None:
        return T_map_base, None
    J = np.eye(6)
    J[:3, 3:] = -_skew((T_map_base[:3, 3] - T_map_cam[:3, 3])[None])[0]
    return T_map_base, J @ cov_cam @ J.T
