"""Alignment outputs: cleaned coloured point cloud and PLY writing.

Cleaning: a depth pixel of view v is kept when it is seen consistently by at least one of the
views it was paired with (its depth re-projected there agrees with that view's depth map within
``rel_tol``) and it does not float in front of a surface another view sees through it
(occlusion check). Survivors are merged on a voxel grid (mean position and colour).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mast3r_ros.files.atomic_io import atomic_write_bytes
from mast3r_ros.geometry.camera import backproject_depth, project_points
from mast3r_ros.geometry.transforms import invert, transform_points
from mast3r_ros.mapping.types import AlignmentResult


@dataclass
class CloudConfig:
    """Point cloud export.

    stride: use every stride-th pixel of each depth map.
    rel_tol: relative depth agreement for the multi-view consistency check.
    voxel_m: voxel size of the merged cloud (metres; 0 = no merging).
    max_points: cap on the exported points (uniform subsampling beyond it).
    """
    stride: int = 4
    rel_tol: float = 0.03
    voxel_m: float = 0.01
    max_points: int = 2_000_000


def clean_point_cloud(result: AlignmentResult, images: list, neighbours: dict[int, list[int]],
                      config: CloudConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fused cloud in the world frame of ``result``.

    Args:
        images: N [H,W,3] uint8 RGB (or None: grey points).
        neighbours: view -> views it was paired with (consistency checks).
    Returns:
        (xyz [P,3] float32 metres, world frame; rgb [P,3] uint8).
    """
    return merge_cloud(consistent_view_points(result, images, neighbours, config), config)


def consistent_view_points(result: AlignmentResult, images: list, neighbours: dict[int, list[int]],
                           config: CloudConfig | None = None, views=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each view's depth pixels that pass the consistency checks (module doc), before merging: per view of
    ``views`` (indices; None = all, in order) (xyz [P_v,3] float64 metres in the world frame of ``result``,
    rgb [P_v,3] uint8). ``images``: all N views' (or None)."""
    cfg = config or CloudConfig()
    depths = [result.depth_map(v) for v in range(len(result.K))]
    T = result.T_world_cam
    parts = []
    for v in range(len(depths)) if views is None else views:
        d = depths[v]
        H, W = d.shape
        ys, xs = np.mgrid[0:H:cfg.stride, 0:W:cfg.stride]
        ys, xs = ys.ravel(), xs.ravel()
        z = d[ys, xs]
        ok = z > 0
        xy = np.stack([xs[ok], ys[ok]], 1).astype(np.float64)
        Xw = transform_points(T[v], backproject_depth(result.K[v], xy, z[ok]))
        seen = np.zeros(len(Xw), bool)
        floating = np.zeros(len(Xw), bool)
        for u in neighbours.get(v, []):
            uv, zu = project_points(result.K[u], transform_points(invert(T[u]), Xw))
            du = depths[u]
            xi, yi = np.rint(uv[:, 0]), np.rint(uv[:, 1])
            inside = (zu > 0) & (xi >= 0) & (yi >= 0) & (xi < du.shape[1]) & (yi < du.shape[0])
            ref = np.zeros(len(Xw))
            ref[inside] = du[yi[inside].astype(int), xi[inside].astype(int)]
            valid = inside & (ref > 0)
            seen |= valid & (np.abs(zu - ref) <= cfg.rel_tol * ref)
            floating |= valid & (zu < ref * (1 - 3 * cfg.rel_tol))
        keep = seen & ~floating
        img = images[v] if images is not None else None
        parts.append((Xw[keep], img[ys[ok][keep], xs[ok][keep]] if img is not None
                      else np.full((int(keep.sum()), 3), 200, np.uint8)))
    return parts


def merge_cloud(parts: list[tuple[np.ndarray, np.ndarray]], config: CloudConfig | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Points of several views ([P_v,3] metres, [P_v,3] uint8) merged on the voxel grid and capped at
    ``max_points``: (xyz [P,3] float32, rgb [P,3] uint8)."""
    cfg = config or CloudConfig()
    xyz = np.concatenate([x for x, _ in parts]) if parts else np.zeros((0, 3))
    rgb = np.concatenate([c for _, c in parts]) if parts else np.zeros((0, 3), np.uint8)
    if cfg.voxel_m > 0 and len(xyz):
        xyz, rgb = _voxel_merge(xyz, rgb, cfg.voxel_m)
    if len(xyz) > cfg.max_points:
        sel = np.random.default_rng(0).choice(len(xyz), cfg.max_points, replace=False)
        xyz, rgb = xyz[sel], rgb[sel]
    return xyz.astype(np.float32), rgb.astype(np.uint8)


def _voxel_merge(xyz: np.ndarray, rgb: np.ndarray, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    key = np.floor(xyz / voxel).astype(np.int64)
    _, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    out = np.zeros((len(cnt), 3))
    np.add.at(out, inv, xyz)
    col = np.zeros((len(cnt), 3))
    np.add.at(col, inv, rgb.astype(np.float64))
    return out / cnt[:, None], np.clip(np.rint(col / cnt[:, None]), 0, 255)


def write_ply(path: str | Path, xyz: np.ndarray, rgb: np.ndarray | None = None) -> Path:
    """Atomically write a binary little-endian PLY (x, y, z float32; red, green, blue uchar).

    Args:
        xyz: [P,3] points (metres). rgb: optional [P,3] uint8.
    """
    xyz = np.asarray(xyz, np.float32).reshape(-1, 3)
    rgb = np.full((len(xyz), 3), 200, np.uint8) if rgb is None else np.asarray(rgb, np.uint8).reshape(-1, 3)
    rec = np.empty(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                    ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    rec["x"], rec["y"], rec["z"] = xyz.T
    rec["red"], rec["green"], rec["blue"] = rgb.T
    header = ("ply\nformat binary_little_endian 1.0\ncomment mast3r_ros map cloud (map frame, metres)\n"
              f"element vertex {len(xyz)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    atomic_write_bytes(Path(path), header.encode("ascii") + rec.tobytes())
    return Path(path)


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a PLY written by :func:`write_ply` -> (xyz [P,3] float32, rgb [P,3] uint8)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    n = int([ln for ln in data[:end].decode("ascii").splitlines() if ln.startswith("element vertex")][0].split()[-1])
    rec = np.frombuffer(data[end:], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                           ("red", "u1"), ("green", "u1"), ("blue", "u1")], count=n)
    return np.stack([rec["x"], rec["y"], rec["z"]], 1), np.stack([rec["red"], rec["green"], rec["blue"]], 1)
