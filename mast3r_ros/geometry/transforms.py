"""Rigid transforms (SE(3) as [4,4] float64 matrices) and pose error metrics.

``T_a_b`` maps points from frame ``b`` to frame ``a``; translations in metres.
"""
from __future__ import annotations

import numpy as np

# |R^T R - I| and |det R - 1| of a pose: 7-Scenes redkitchen ground truth reaches 3.8e-4 / 5.4e-4 (all 1000
# poses); 1e-2 leaves room for other real ground truth while a scaled rotation (det 8; 1.03 for 1 %) is refused.
ROTATION_TOL = 1e-2


def make_T(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Build a [4,4] transform from a [3,3] rotation and a [3] translation (metres)."""
    T = np.eye(4)
    T[:3, :3] = np.asarray(R, dtype=np.float64)
    T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform (``T_b_a`` from ``T_a_b``), exact for rotations."""
    T = np.asarray(T, dtype=np.float64)
    R, t = T[:3, :3], T[:3, 3]
    return make_T(R.T, -R.T @ t)


def compose(*Ts: np.ndarray) -> np.ndarray:
    """Chain transforms left to right: ``compose(T_a_b, T_b_c) == T_a_c``."""
    out = np.eye(4)
    for T in Ts:
        out = out @ np.asarray(T, dtype=np.float64)
    return out


def transform_points(T: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Apply ``T_a_b`` to [N,3] points in frame b; returns [N,3] float64 points in frame a."""
    X = np.asarray(X, dtype=np.float64).reshape(-1, 3)
    return X @ T[:3, :3].T + T[:3, 3]


def rotation_error_deg(R_est: np.ndarray, R_gt: np.ndarray) -> float:
    """Geodesic angle (degrees) between two rotations, robust to rounding near 0 and 180."""
    R = np.asarray(R_est)[:3, :3].T @ np.asarray(R_gt)[:3, :3]
    c = np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)
    s = np.linalg.norm([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / 2.0
    return float(np.degrees(np.arctan2(s, c)))


def translation_error(T_est: np.ndarray, T_gt: np.ndarray) -> float:
    """Distance (metres) between the camera positions of two camera-to-world poses."""
    return float(np.linalg.norm(np.asarray(T_est)[:3, 3] - np.asarray(T_gt)[:3, 3]))


def pose_errors(T_est: np.ndarray, T_gt: np.ndarray) -> tuple[float, float]:
    """(translation error in metres, rotation error in degrees) of camera-to-world poses."""
    return translation_error(T_est, T_gt), rotation_error_deg(T_est, T_gt)


def rotation_log(R: np.ndarray) -> np.ndarray:
    """Axis-angle vector [3] (radians) of a rotation matrix."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_rotvec()


def rotation_exp(w: np.ndarray) -> np.ndarray:
    """Rotation matrix [3,3] from an axis-angle vector [3] (radians)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.asarray(w, dtype=np.float64).reshape(3)).as_matrix()


def nearest_rotation(R: np.ndarray) -> np.ndarray:
    """Closest proper rotation(s) in the Frobenius norm (SVD projection, det = +1).

    R: [..., 3, 3]; returns float64 [..., 3, 3]. Why: optimiser outputs drift off SO(3), and
    7-Scenes' KinectFusion rotations are orthonormal to ~4e-4 only (evo and pose messages need better).
    """
    U, _, Vt = np.linalg.svd(np.asarray(R, dtype=np.float64))
    U[..., :, 2] *= np.sign(np.linalg.det(U @ Vt))[..., None]
    return U @ Vt


def with_nearest_rotation(T: np.ndarray) -> np.ndarray:
    """Copy of pose(s) T [..., 4, 4] with their rotation blocks replaced by :func:`nearest_rotation`."""
    out = np.array(T, dtype=np.float64)
    out[..., :3, :3] = nearest_rotation(out[..., :3, :3])
    return out


def rigid_problem(T: np.ndarray) -> str:
    """'' when ``T`` [4,4] is a finite rigid transform (rotation orthonormal within ROTATION_TOL, last row
    0 0 0 1), else what is wrong with it."""
    T = np.asarray(T, np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        return "is not a finite 4x4 matrix"
    R = T[:3, :3]
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    det = float(np.linalg.det(R))
    if err > ROTATION_TOL or abs(det - 1.0) > ROTATION_TOL:
        return f"has a rotation that is not rigid (det {det:.3g}, |R^T R - I| {err:.2g})"
    if np.abs(T[3] - (0, 0, 0, 1)).max() > 1e-9:
        return f"has last row {T[3].tolist()}, not [0, 0, 0, 1]"
    return ""
