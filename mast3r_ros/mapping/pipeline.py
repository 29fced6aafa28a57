"""Optimise a keyframe map in place: pairs -> sparse global alignment -> poses, K, depth, cloud.

Used by ``mast3r-ros map build --optimize``. The stored keyframe poses are *not* read: poses
start from the kinematic chain of pairwise estimates, so the result is a genuine estimate.
Written into the map directory (map store API, atomic):

* keyframe ``T_map_cam`` and ``K`` (one transaction); the map frame is the first keyframe's camera;
* keyframe array ``opt_depth`` [H,W] float32 metres (0 = invalid), the optimised depth map;
* ``trajectory_tum.txt`` (optimised poses) and ``trajectory_chain_tum.txt`` (the chained
  pairwise poses the optimiser started from, for comparison);
* ``cloud.ply``: the cleaned coloured point cloud (map frame, metres).

Supported input: maps built with the classical front-end and stored depth (``--store-depth``), and
maps of the MASt3R front-end, with or without depth, given the model that made their encodings
(:mod:`mast3r_ros.mapping.mast3r_map`: pairwise predictions from the cached encodings, monocular
alignment).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mast3r_ros.datasets.tum import write_tum
from mast3r_ros.map import KeyframeMap
from mast3r_ros.map.keys import CLASSICAL_ARRAYS, RETRIEVAL_DESC, RETRIEVAL_IDS
from mast3r_ros.mapping.alignment_config import rgbd_batch
from mast3r_ros.mapping.monocular import MonocularConfig
from mast3r_ros.mapping.outputs import CloudConfig, clean_point_cloud, write_ply
from mast3r_ros.mapping.pairs import PairSelectionConfig, classical_pair, select_pairs
from mast3r_ros.mapping.sparse_ga import AlignmentConfig, sparse_global_alignment
from mast3r_ros.mapping.types import MappingError, ViewData

OPT_DEPTH = "opt_depth"
CHAIN_TUM = "trajectory_chain_tum.txt"


@dataclass
class MapOptimizeConfig:
    """Map optimisation. Classical RGB-D maps: alignment, pair selection, point cloud, SIFT ratio for
    pair matches. MASt3R maps: ``mast3r`` (the monocular pipeline's settings) and ``intrinsics``
    ('estimate' the focal length of keyframes without depth, or keep the 'known' stored K)."""
    alignment: AlignmentConfig = field(default_factory=rgbd_batch)  # why: its docstring
    pairs: PairSelectionConfig = field(default_factory=PairSelectionConfig)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    ratio: float = 0.85
    mast3r: MonocularConfig = field(default_factory=MonocularConfig)
    intrinsics: str = "estimate"


def optimize_map(path: str | Path, config: MapOptimizeConfig | None = None, progress: bool = False,
                 frontend=None) -> dict:
    """Optimise the keyframe map at ``path`` in place; returns a summary dict (counts, timings).

    ``frontend``: for a MASt3R map, the MASt3R front-end holding the model that made its encodings.
    Raises:
        MappingError: unsupported front-end, missing depth or model, disconnected pair graph.
    """
    cfg = config or MapOptimizeConfig()
    t0 = time.perf_counter()
    with KeyframeMap.open(path) as kmap:
        if kmap.meta.frontend == "mast3r":
            from mast3r_ros.mapping.mast3r_map import optimize_mast3r_map

            return optimize_mast3r_map(kmap, frontend, cfg.mast3r, cfg.intrinsics, progress)
        if kmap.meta.frontend != "classical":
            raise MappingError(f"map optimisation supports classical RGB-D and MASt3R maps; this map uses the "
                               f"{kmap.meta.frontend!r} front-end")
        ids = kmap.keyframe_ids()
        kfs = [kmap.get_keyframe(i, arrays=list(CLASSICAL_ARRAYS)) for i in ids]
        if any(k.depth is None for k in kfs):
            raise MappingError("map optimisation needs keyframe depth: build the map with --store-depth")
        views = [ViewData(size=(k.image.shape[1], k.image.shape[0]), image=k.image, K=k.K, depth=k.depth,
                          name=str(k.frame_index)) for k in kfs]
        desc = _descriptors(kmap, ids)
        pair_ids = select_pairs(len(ids), cfg.pairs, desc)
        pairs = [classical_pair(i, j, kfs[i].arrays, kfs[j].arrays, cfg.ratio) for i, j in pair_ids]
        t_pairs = time.perf_counter() - t0
        res = sparse_global_alignment(views, pairs, cfg.alignment, progress=progress)
        kmap.update_poses({i: res.T_world_cam[v] for v, i in enumerate(ids)},
                          intrinsics={i: res.K[v] for v, i in enumerate(ids)})
        for v, i in enumerate(ids):
            kmap.put_array(i, OPT_DEPTH, res.depth_map(v))
        kmap.write_trajectory_tum()
        stamps = [kf.timestamp for kf in kfs]
        write_tum(Path(path) / CHAIN_TUM, stamps, res.T_world_cam_init)
        neighbours: dict[int, list[int]] = {}
        for (i, j), st in res.pair_status.items():
            if st == "ok":
                neighbours.setdefault(i, []).append(j)
                neighbours.setdefault(j, []).append(i)
        xyz, rgb = clean_point_cloud(res, [v.image for v in views], neighbours, cfg.cloud)
        write_ply(Path(path) / "cloud.ply", xyz, rgb)
    status = list(res.pair_status.values())
    return {"n_keyframes": len(ids), "n_pairs": len(pairs), "pairs_ok": status.count("ok"),
            "pairs_fallback": status.count("fallback"), "pairs_dropped": status.count("dropped"),
            "n_cloud_points": int(len(xyz)), "timings": {"pairs": t_pairs, **res.timings,
                                                          "total": time.perf_counter() - t0}}


def _descriptors(kmap: KeyframeMap, ids: list[int]) -> np.ndarray | None:
    """[N,D] retrieval descriptors in keyframe order (None when the map has no index)."""
    rid, desc = kmap.get_global(RETRIEVAL_IDS), kmap.get_global(RETRIEVAL_DESC)
    if rid is None or desc is None:
        return None
    pos = {int(k): r for r, k in enumerate(rid)}
    if any(i not in pos for i in ids):
        return None
    return np.asarray(desc)[[pos[i] for i in ids]]
