"""Pinhole camera helpers: projection, back-projection, intrinsics scaling, undistortion.

Pixel convention: (x, y) with the centre of the top-left pixel at (0, 0) (OpenCV), so a pixel
maps to the ray ``K^-1 [x, y, 1]``. Points are in the OpenCV optical camera frame, metres.
"""
from __future__ import annotations

import numpy as np


def check_intrinsics(K) -> np.ndarray:
    """Validate and return ``K`` as a [3,3] float64 pinhole matrix.

    Why: intrinsics arrive from YAML/ROS messages/CLI; a wrong shape or a zero focal length
    must become a clear ``ValueError`` rather than a silent NaN pose later.
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape == (9,):
        K = K.reshape(3, 3)
    if K.shape != (3, 3):
        raise ValueError(f"intrinsics K must be a 3x3 matrix, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError("intrinsics K contain non-finite values")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or abs(K[2, 2] - 1.0) > 1e-9 or np.any(K[2, :2] != 0):
        raise ValueError(f"intrinsics K are not a pinhole matrix: {K.tolist()}")
    return K


def project_points(K: np.ndarray, X_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project camera-frame points to pixels.

    Args:
        K: [3,3] intrinsics.
        X_cam: [N,3] float points in the camera frame (metres).
    Returns:
        xy: [N,2] float64 pixels (centre convention); undefined where ``z <= 0``.
        z: [N] float64 depth along the optical axis (metres).
    """
    X = np.asarray(X_cam, dtype=np.float64).reshape(-1, 3)
    z = X[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = X[:, :2] / z[:, None]
    xy = uv * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])
    xy[:, 0] += K[0, 1] * uv[:, 1]
    return xy, z


def backproject_depth(K: np.ndarray, xy: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Lift pixels with known depth to camera-frame 3D points.

    Args:
        K: [3,3] intrinsics.
        xy: [N,2] pixels (centre convention).
        depth: [N] depth along the optical axis (metres).
    Returns:
        [N,3] float64 points in the camera frame (metres).
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    rays = np.c_[xy, np.ones(len(xy))] @ np.linalg.inv(K).T
    return rays * np.asarray(depth, dtype=np.float64).reshape(-1, 1)


def depth_to_pointmap(K: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Per-pixel camera-frame points from a depth image.

    Args:
        K: [3,3] intrinsics of the depth image.
        depth: [H,W] depth (metres), 0 = invalid.
    Returns:
        [H,W,3] float64 points in the camera frame; invalid pixels get z = 0.
    """
    H, W = depth.shape
    # K^-1 is upper triangular, so the ray of pixel (x, y) is separable into a row term and a
    # column term: broadcasting them is several times faster than a [H*W,3] matmul
    Ki = np.linalg.inv(np.asarray(K, dtype=np.float64))
    x = np.arange(W, dtype=np.float64)[None, :]
    y = np.arange(H, dtype=np.float64)[:, None]
    d = np.asarray(depth, dtype=np.float64)
    return np.stack([(Ki[0, 0] * x + Ki[0, 1] * y + Ki[0, 2]) * d, (Ki[1, 1] * y + Ki[1, 2]) * d, d], -1)


def scale_intrinsics(K: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int],
                     crop: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Intrinsics after an optional crop then a resize (camera image -> network image).

    Why: the network runs at e.g. 512x384 while PnP must run at the full camera resolution;
    this maps K between the two with the pixel-centre convention (a resize by s maps pixel
    centre x to ``(x + 0.5) * s - 0.5``).

    Args:
        K: [3,3] intrinsics of the image of size ``from_size``.
        from_size: (W, H) of the original image in pixels.
        to_size: (W, H) after cropping and resizing.
        crop: optional (x0, y0, x1, y1) crop box in original pixels (x1, y1 exclusive),
            applied before resizing; default the full image.
    Returns:
        [3,3] float64 intrinsics of the resulting image.
    """
    K = check_intrinsics(K).copy()
    x0, y0, x1, y1 = crop if crop is not None else (0, 0, from_size[0], from_size[1])
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty crop {crop}")
    K[0, 2] -= x0
    K[1, 2] -= y0
    sx = to_size[0] / float(x1 - x0)
    sy = to_size[1] / float(y1 - y0)
    S = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])
    return S @ K


def undistort_points(K: np.ndarray, dist: np.ndarray | None, xy: np.ndarray) -> np.ndarray:
    """Remove lens distortion from pixel coordinates (OpenCV distortion model).

    Args:
        K: [3,3] intrinsics.
        dist: OpenCV distortion coefficients (k1, k2, p1, p2[, k3...]) or None / all zero.
        xy: [N,2] distorted pixels.
    Returns:
        [N,2] float64 undistorted pixels expressed with the same ``K``.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if dist is None or not np.any(np.asarray(dist)):
        return xy
    import cv2

    out = cv2.undistortPoints(xy.reshape(-1, 1, 2), K, np.asarray(dist, dtype=np.float64), P=K)
    return out.reshape(-1, 2)


def register_depth(depth: np.ndarray, K_depth: np.ndarray, K_rgb: np.ndarray, T_rgb_depth: np.ndarray,
                   rgb_size: tuple[int, int]) -> np.ndarray:
    """Re-project a depth image into the colour camera (z-buffered, nearest pixel).

    Why: on Kinect-style sensors (7-Scenes) depth and colour come from two cameras with
    different intrinsics and a few-cm baseline; sampling the raw depth at a colour pixel reads
    the depth of another scene point, which biases every 3D point of the map.

    Args:
        depth: [Hd,Wd] float32 metres in the depth camera (0 = invalid).
        K_depth: [3,3] depth intrinsics.
        K_rgb: [3,3] colour intrinsics.
        T_rgb_depth: [4,4] depth-camera-to-colour-camera transform (metres).
        rgb_size: (W, H) of the colour image.
    Returns:
        [H,W] float32 depth along the colour camera's optical axis (metres), 0 where unknown.
    """
    ys, xs = np.nonzero(depth > 0)
    X = backproject_depth(K_depth, np.stack([xs, ys], 1), depth[ys, xs])
    X = X @ T_rgb_depth[:3, :3].T + T_rgb_depth[:3, 3]
    xy, z = project_points(K_rgb, X)
    W, H = rgb_size
    with np.errstate(invalid="ignore"):
        u = np.rint(xy[:, 0])
        v = np.rint(xy[:, 1])
    ok = (z > 0) & (u >= 0) & (v >= 0) & (u < W) & (v < H)
    out = np.full((H, W), np.inf, np.float32)
    np.minimum.at(out, (v[ok].astype(np.int64), u[ok].astype(np.int64)), z[ok].astype(np.float32))
    out[~np.isfinite(out)] = 0.0
    return out


def sample_depth_robust(depth: np.ndarray, xy: np.ndarray, max_spread_m: float = 0.05,
                        min_m: float = 0.1, max_m: float = 8.0) -> np.ndarray:
    """Depth at pixels: median of the 3x3 neighbourhood, NaN where unreliable.

    Why 3x3: near depth edges (and with imperfect RGB-depth registration) a single pixel can
    belong to the other side of the edge; a neighbourhood whose depth spans more than
    ``max_spread_m`` is rejected instead.

    Args:
        depth: [H,W] float32 metres (0 = invalid).
        xy: [N,2] pixels (centre convention).
    Returns:
        [N] float64 metres, NaN where any neighbour is invalid/out of range or too spread.
    """
    H, W = depth.shape
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    out = np.full(len(xy), np.nan)
    with np.errstate(invalid="ignore"):
        cx = np.rint(xy[:, 0])
        cy = np.rint(xy[:, 1])
    inside = (cx >= 1) & (cy >= 1) & (cx < W - 1) & (cy < H - 1)
    if not inside.any():
        return out
    ox, oy = np.meshgrid([-1, 0, 1], [-1, 0, 1])
    px = cx[inside].astype(np.int64)[:, None] + ox.ravel()[None]
    py = cy[inside].astype(np.int64)[:, None] + oy.ravel()[None]
    nb = depth[py, px].astype(np.float64)  # [n,9]
    valid = np.all((nb >= min_m) & (nb <= max_m) & np.isfinite(nb), axis=1)
    ok = valid & (nb.max(axis=1) - nb.min(axis=1) <= max_spread_m)
    out[np.flatnonzero(inside)[ok]] = np.median(nb[ok], axis=1)
    return out
