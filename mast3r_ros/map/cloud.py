"""A keyframe map as a coloured point cloud, for the localization node's latched ``cloud_map``: rviz
shows the map the robot is localized in, as in mapping mode."""
from __future__ import annotations

import math

import numpy as np

from mast3r_ros.geometry.camera import backproject_depth
from mast3r_ros.map import KeyframeMap


def map_cloud(kmap: KeyframeMap, max_points: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Keyframe depth back-projected into the map frame, subsampled on a pixel grid.

    Returns ([N,3] float32 metres in the map frame, [N,3] uint8 RGB), N <= ``max_points``.
    Per keyframe: its depth-backed features (``sift_X`` of a classical map), else its depth image on
    a pixel grid when stored, else its MASt3R points (``mast3r_X`` at network pixels: a monocular map
    has no depth); keyframes with none of them add nothing.
    """
    ids = kmap.keyframe_ids()
    xyz, rgb = [], []
    budget = max(1, max_points // max(1, len(ids)))
    for k in ids:
        X, colours = _keyframe_points(kmap, k, budget)
        if len(X):
            T = kmap.get_keyframe(k, load_image=False, arrays=[], load_depth=False).T_map_cam
            xyz.append((X @ T[:3, :3].T + T[:3, 3]).astype(np.float32))
            rgb.append(colours)
    if not xyz:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
    xyz_all, rgb_all = np.concatenate(xyz), np.concatenate(rgb)
    if len(xyz_all) > max_points:
        pick = np.linspace(0, len(xyz_all) - 1, max_points).astype(np.int64)
        xyz_all, rgb_all = xyz_all[pick], rgb_all[pick]
    return xyz_all, rgb_all


def _keyframe_points(kmap: KeyframeMap, k: int, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """([M,3] float64 points in the keyframe camera, [M,3] uint8 RGB), M <= budget."""
    names = kmap.array_names(k)
    kf = kmap.get_keyframe(k, load_image=True, arrays=[n for n in ("sift_X", "sift_xy") if n in names],
                           load_depth="sift_X" not in names)
    if kf.depth is None and "sift_X" not in names and {"mast3r_X", "mast3r_tf"} <= set(names):
        return mast3r_keyframe_points(kmap.get_array(k, "mast3r_X"), kmap.get_array(k, "mast3r_tf"), kf.image,
                                      budget)
    H, W = kf.image.shape[:2]
    if "sift_X" in kf.arrays and "sift_xy" in kf.arrays:
        X, xy = np.asarray(kf.arrays["sift_X"], np.float64), np.asarray(kf.arrays["sift_xy"], np.float64)
        ok = np.all(np.isfinite(X), axis=1) & (X[:, 2] > 0)
        X, uv = X[ok], np.clip(np.round(xy[ok]).astype(np.int64), 0, [W - 1, H - 1])
        keep = np.linspace(0, len(X) - 1, min(len(X), budget)).astype(np.int64) if len(X) else keep_none()
        return X[keep], kf.image[uv[keep, 1], uv[keep, 0]]
    if kf.depth is None or kf.depth.shape != (H, W):
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    step = max(1, math.ceil(math.sqrt(H * W / budget)))
    v, u = np.mgrid[0:H:step, 0:W:step]
    z = kf.depth[v, u].astype(np.float64)
    ok = np.isfinite(z) & (z > 0)
    X = backproject_depth(kf.K, np.c_[u[ok], v[ok]].astype(np.float64), z[ok])
    return X, kf.image[v[ok], u[ok]]


def mast3r_keyframe_points(X: np.ndarray | None, tf_array: np.ndarray | None, image: np.ndarray, budget: int
                           ) -> tuple[np.ndarray, np.ndarray]:
    """A MASt3R keyframe's stored points (its ``mast3r_X`` [Hn,Wn,3] float32 m in its camera, NaN = none, and
    ``mast3r_tf`` arrays) coloured by the original pixel nearest each network pixel, on a grid of at most
    ``budget`` points: ([M,3] float64 m, [M,3] uint8); empty when either array is missing or they disagree."""
    # a MASt3R map: the front-end (and torch) is what reads it anyway
    from mast3r_ros.model import ImageTransform

    if X is None or tf_array is None:
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    X = np.asarray(X, np.float64)
    tf = ImageTransform.from_array(tf_array)
    wn, hn = tf.network_wh
    if X.shape != (hn, wn, 3):
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    xy = tf.nearest_original_pixels().reshape(hn, wn, 2)
    step = max(1, math.ceil(math.sqrt(hn * wn / budget)))
    X, xy = X[::step, ::step].reshape(-1, 3), xy[::step, ::step].reshape(-1, 2)
    ok = np.all(np.isfinite(X), axis=1) & (X[:, 2] > 0)
    return X[ok], image[xy[ok, 1], xy[ok, 0]]


def keep_none() -> np.ndarray:
    return np.zeros(0, np.int64)
