"""Optimise a MASt3R keyframe map in place (``map build --frontend mast3r --optimize``).

The keyframes' cached encoder tokens are decoded pairwise and aligned by :func:`map_monocular`; the
stored keyframe poses are not read. Keyframes without depth (``map build --no-depth``) get the focal
length estimated (unless ``intrinsics='known'``) and their ``mast3r_X`` replaced by the aligned points;
keyframes with depth keep their sensor points, which also serve as a metric depth prior (with the
stored intrinsics). Written (map store API): keyframe ``T_map_cam`` and ``K``, ``mast3r_X``,
``trajectory_tum.txt`` and ``cloud.ply``. The map frame is the first keyframe's camera.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mast3r_ros.map import KeyframeMap
from mast3r_ros.map.keys import MAST3R_ARRAYS, MAST3R_CHECKPOINT
from mast3r_ros.mapping.mast3r_pairs import encoded_from_tokens
from mast3r_ros.mapping.monocular import MonocularConfig, map_cloud, map_monocular
from mast3r_ros.mapping.outputs import write_ply
from mast3r_ros.mapping.types import MappingError
from mast3r_ros.model import ImageTransform

INTRINSICS = ("estimate", "known")


def optimize_mast3r_map(kmap: KeyframeMap, frontend, config: MonocularConfig | None = None,
                        intrinsics: str = "estimate", progress: bool = False) -> dict:
    """Optimise the open, writable MASt3R map ``kmap``; returns the summary dict.

    Args:
        frontend: the MASt3R front-end whose model made the map's encodings (checked against the map).
        intrinsics: 'estimate' (keyframes without depth) or 'known' (keep the stored K).
    Raises:
        MappingError: no model, another checkpoint, too few / unconnected keyframes.
    """
    cfg = config or MonocularConfig()
    if intrinsics not in INTRINSICS:
        raise MappingError(f"intrinsics must be one of {INTRINSICS}, got {intrinsics!r}")
    if frontend is None or getattr(frontend, "model", None) is None:
        raise MappingError("optimising a MASt3R map needs its model (--checkpoint, or --oracle-model for the "
                           "stand-in)")
    frontend.load_global({MAST3R_CHECKPOINT: kmap.get_global(MAST3R_CHECKPOINT)})
    t0 = time.perf_counter()
    ids = kmap.keyframe_ids()
    kfs = [kmap.get_keyframe(i, arrays=list(MAST3R_ARRAYS)) for i in ids]
    missing = [k.id for k in kfs if any(n not in k.arrays for n in MAST3R_ARRAYS)]
    if missing:
        raise MappingError(f"keyframes {missing[:5]} lack the MASt3R arrays {list(MAST3R_ARRAYS)}")
    device = getattr(frontend.model, "device", None)
    encoded = [encoded_from_tokens(k.arrays["mast3r_tokens"], _transform(k), device) for k in kfs]
    has_depth = [np.asarray(k.arrays["mast3r_X"]).size > 0 for k in kfs]
    known = intrinsics == "known" or any(has_depth)
    K = np.stack([k.K for k in kfs]) if known else None
    depth_points = [k.arrays["mast3r_X"] for k in kfs] if any(has_depth) else None
    images = [k.image for k in kfs]
    res = map_monocular(images, frontend.model, cfg, K=K, encoded=encoded, depth_points=depth_points,
                        progress=progress)
    kmap.update_poses({i: res.T_map_cam[v] for v, i in enumerate(ids)},
                      intrinsics={i: res.K[v] for v, i in enumerate(ids)})
    for v, i in enumerate(ids):
        if not has_depth[v]:
            kmap.put_array(i, "mast3r_X", res.points[v])
    kmap.write_trajectory_tum()
    xyz, rgb = map_cloud(res, images, cfg.cloud)
    write_ply(Path(kmap.path) / "cloud.ply", xyz, rgb)
    out = res.summary()
    out.update(intrinsics="known" if known else "estimated", n_cloud_points=int(len(xyz)))
    out["timings"]["total"] = time.perf_counter() - t0
    return out


def _transform(keyframe) -> ImageTransform:
    """The keyframe's stored network-image transform; MappingError naming it when malformed."""
    try:
        return ImageTransform.from_array(keyframe.arrays["mast3r_tf"])
    except ValueError as exc:
        raise MappingError(f"keyframe {keyframe.id}: {exc}") from None
