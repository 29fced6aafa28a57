"""Oracle pairwise predictions from an RGB-D dataset with ground-truth poses.

Why: the optimiser must be testable (and benchmarkable) independently of any network. From
depth + GT poses we build exactly what MASt3R would predict for a pair (X11 = view i in camera
i, X21 = view j in camera i, confidences, pixel matches), then corrupt it with Gaussian point
noise, pixel noise and a fraction of random outlier matches. The intrinsics are *not* given to
the views, so the focal length must be recovered from the pointmaps and the reprojection stage.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mast3r_ros.datasets.readers import RgbdDataset
from mast3r_ros.geometry.camera import depth_to_pointmap, project_points, register_depth
from mast3r_ros.geometry.transforms import invert, transform_points
from mast3r_ros.mapping.types import PairData, ViewData


@dataclass
class OracleConfig:
    """Oracle corruption and size.

    stride: keep every stride-th pixel of the dataset depth (smaller, faster images).
    n_matches: matches sampled per pair (before visibility checks).
    pixel_noise: std of the Gaussian noise on matched pixels in view j (pixels).
    point_noise_rel: std of the isotropic Gaussian noise on pointmaps, relative to depth.
    outlier_frac: fraction of matches replaced by uniformly random pixels in view j.
    conf: (min, max) of the uniform random match / pointmap confidences (MASt3R-like, >= 1).
    visibility_m: a match is kept when view j's depth agrees with the projected point within
        this (metres); sensor depth maps of two views are not exactly consistent, so a tight
        value keeps the oracle close to one consistent scene.
    consistent: replace every view's depth by the middle view's full-resolution depth rendered
        into it with the GT poses (z-buffer). Why: 7-Scenes depth maps of different frames
        disagree by millimetres to centimetres (sensor noise, depth distortion, pseudo-GT
        poses), enough to bias the focal length by ~1 %; an oracle must be one exact scene.
    """
    stride: int = 4
    n_matches: int = 400
    pixel_noise: float = 0.3
    point_noise_rel: float = 0.005
    outlier_frac: float = 0.1
    conf: tuple[float, float] = (2.0, 10.0)
    visibility_m: float = 0.01
    consistent: bool = True


@dataclass
class OracleScene:
    """views/pairs for the optimiser plus the truth: T_world_cam [N,4,4] camera-to-world (m),
    K [3,3] intrinsics of the (strided) images, depth: N [H,W] float32 metres (0 = invalid)."""
    views: list
    pairs: list
    T_world_cam: np.ndarray
    K: np.ndarray
    depth: list


def load_views(dataset: RgbdDataset, indices: list[int], stride: int, consistent: bool = False
               ) -> tuple[list, list, np.ndarray, np.ndarray]:
    """(rgb list, depth list [H,W] float32, T_world_cam [N,4,4], K [3,3]) at the strided size.

    Pixel x' of the strided image is pixel ``stride * x' + stride // 2`` of the original, so
    ``f' = f / stride`` and ``c' = (c - stride // 2) / stride`` exactly.
    """
    frames = {f.index: f for f in dataset.frames()}
    o = stride // 2
    rgb, depth, T = [], [], []
    ref = frames[indices[len(indices) // 2]]
    ref_depth = dataset.load_depth(ref)
    for i in indices:
        f = frames[i]
        rgb.append(np.ascontiguousarray(dataset.load_rgb(f)[o::stride, o::stride]))
        d = dataset.load_depth(f)
        if consistent:
            d = register_depth(ref_depth, dataset.K, dataset.K, invert(f.T_world_cam) @ ref.T_world_cam,
                               (d.shape[1], d.shape[0]))
        depth.append(np.ascontiguousarray(d[o::stride, o::stride]))
        T.append(f.T_world_cam)
    K = dataset.K.copy()
    K[:2, :2] /= stride
    K[:2, 2] = (K[:2, 2] - o) / stride
    return rgb, depth, np.stack(T), K


def oracle_pair(i: int, j: int, depth: list, T_world_cam: np.ndarray, K: np.ndarray,
                cfg: OracleConfig, rng: np.random.Generator) -> PairData | None:
    """One corrupted oracle pair (None when fewer than 10 matches are visible in both views)."""
    H, W = depth[i].shape
    T_i_w = invert(T_world_cam[i])
    T_i_j = T_i_w @ T_world_cam[j]
    lo, hi = cfg.conf

    def noisy(X, d):
        Xn = X + rng.normal(0, 1, X.shape) * (cfg.point_noise_rel * d)[..., None]
        Xn[d <= 0] = np.nan
        return Xn.astype(np.float32)

    X_ii = noisy(depth_to_pointmap(K, depth[i]), depth[i])
    Xj = depth_to_pointmap(K, depth[j])
    X_ji = noisy(transform_points(T_i_j, Xj.reshape(-1, 3)).reshape(H, W, 3), depth[j])
    C_ii = np.where(depth[i] > 0, rng.uniform(lo, hi, (H, W)), 0).astype(np.float32)
    C_ji = np.where(depth[j] > 0, rng.uniform(lo, hi, (H, W)), 0).astype(np.float32)
    ys, xs = np.nonzero(depth[i] > 0)
    pick = rng.choice(len(xs), min(cfg.n_matches, len(xs)), replace=False)
    xy_i = np.stack([xs[pick], ys[pick]], 1).astype(np.float64)
    X = transform_points(invert(T_i_j), depth_to_pointmap(K, depth[i])[ys[pick], xs[pick]])
    xy_j, z = project_points(K, X)
    u, v = np.rint(xy_j[:, 0]), np.rint(xy_j[:, 1])
    inb = (z > 0) & (u >= 0) & (v >= 0) & (u < W) & (v < H)
    dj = np.zeros(len(z))
    dj[inb] = depth[j][v[inb].astype(int), u[inb].astype(int)]
    vis = inb & (np.abs(dj - z) < cfg.visibility_m)
    if vis.sum() < 10:
        return None
    xy_i, xy_j = xy_i[vis], xy_j[vis] + rng.normal(0, cfg.pixel_noise, (int(vis.sum()), 2))
    n_out = int(round(cfg.outlier_frac * len(xy_j)))
    out = rng.choice(len(xy_j), n_out, replace=False)
    xy_j[out] = rng.uniform([0, 0], [W - 1, H - 1], (n_out, 2))
    xy_j = np.clip(xy_j, 0, [W - 1, H - 1])
    conf = rng.uniform(lo, hi, len(xy_i)).astype(np.float32)
    return PairData(i, j, xy_i, xy_j, conf, X_ii, C_ii, X_ji, C_ji)


def oracle_scene(dataset: RgbdDataset, indices: list[int], pairs: list[tuple[int, int]] | None = None,
                 config: OracleConfig | None = None, seed: int = 0) -> OracleScene:
    """Oracle views and pairs for the frames ``indices`` of ``dataset``.

    ``pairs`` are view-index pairs (i, j) into ``indices``; default: complete graph, both
    directions (as MASt3R runs every pair both ways).
    """
    cfg = config or OracleConfig()
    rng = np.random.default_rng(seed)
    rgb, depth, T, K = load_views(dataset, indices, cfg.stride, cfg.consistent)
    n = len(indices)
    if pairs is None:
        pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    out = [p for p in (oracle_pair(i, j, depth, T, K, cfg, rng) for i, j in pairs) if p is not None]
    views = [ViewData(size=(d.shape[1], d.shape[0]), image=im, name=str(idx))
             for d, im, idx in zip(depth, rgb, indices)]
    return OracleScene(views, out, T, K, depth)
