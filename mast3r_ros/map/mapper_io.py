"""The incremental mapper's maps on disk: write one (``save_map``), read one back (``load_map``).

A map the incremental mapper can continue from is a classical RGB-D map with, per keyframe, the image,
the intrinsics, the depth registered to the image and the SIFT arrays the classical front-end stores
(``sift_xy``, ``sift_desc``, ``sift_X``): what :meth:`IncrementalMapper.save` and
``mast3r-ros map build --frontend classical --store-depth`` write. The monocular engine
(:class:`~mast3r_ros.mapping.monocular_stream.MonocularStream`) continues a MASt3R map made with the same
checkpoint: it maps the images again, so it reads only images, intrinsics, poses and stamps
(:func:`read_monocular_keyframes`). Everything is read and checked before the caller swaps its state,
so a bad map leaves the running map untouched.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mast3r_ros.map.cloud import mast3r_keyframe_points
from mast3r_ros.map.format import Keyframe, MapError, MapMeta
from mast3r_ros.map.keys import CLASSICAL_ARRAYS, CLASSICAL_VOCAB
from mast3r_ros.map.store import KeyframeMap
from mast3r_ros.mapping.types import MappingError


@dataclass
class LoadedKeyframe:
    """One keyframe of a loaded map. image [H,W,3] uint8 RGB; K [3,3] float64 pixels; depth [H,W]
    float32 metres registered to the image (0 = invalid; None from :func:`read_monocular_keyframes`);
    T_map_cam [4,4] float64 camera-to-map (OpenCV optical frame, metres); arrays: the classical
    front-end's SIFT arrays (none for the monocular engine); frame_index: the map's record of it."""
    stamp: float
    image: np.ndarray
    K: np.ndarray
    depth: np.ndarray | None
    T_map_cam: np.ndarray
    arrays: dict
    frame_index: int = 0


def read_mapper_keyframes(path: str | Path) -> tuple[list[LoadedKeyframe], np.ndarray | None]:
    """(keyframes in id order, retrieval vocabulary [W,128] float32 or None) of the map at ``path``.

    Raises:
        MappingError: not a map, another front-end, a keyframe without depth or SIFT arrays.
    """
    try:
        with KeyframeMap.open(path) as kmap:
            if kmap.meta.frontend != "classical":
                raise MappingError(f"{path}: the mapper continues classical RGB-D maps; this map uses the "
                                   f"{kmap.meta.frontend!r} front-end")
            out = []
            for kf_id in kmap.keyframe_ids():
                kf = kmap.get_keyframe(kf_id, arrays=list(CLASSICAL_ARRAYS))  # MapError names a missing array
                if kf.depth is None:
                    raise MappingError(f"{path}: keyframe {kf_id} has no depth (build the map with "
                                       "--store-depth, or save it from the mapping node)")
                out.append(LoadedKeyframe(float(kf.timestamp), kf.image, np.asarray(kf.K, np.float64),
                                          np.asarray(kf.depth, np.float32),
                                          np.asarray(kf.T_map_cam, np.float64), kf.arrays))
            vocab = kmap.get_global(CLASSICAL_VOCAB)
    except (MapError, OSError) as exc:
        raise MappingError(f"cannot load map {path}: {exc}") from None
    if not out:
        raise MappingError(f"{path}: the map has no keyframes")
    return out, None if vocab is None else np.asarray(vocab, np.float32)


def read_monocular_keyframes(path: str | Path, checkpoint_sha256: str, max_points: int = 100_000
                             ) -> list[LoadedKeyframe]:
    """The keyframes (id order: image, K, T_map_cam, stamp, frame index) of the MASt3R map at ``path``
    made with the checkpoint of hash ``checkpoint_sha256``, for the monocular engine to map again. Their
    ``arrays``: ``mast3r_X`` (the stored points, or None), and the keyframe's share of the map's cloud
    (:func:`mast3r_ros.map.cloud.mast3r_keyframe_points`: ``cloud_cam`` [M,3] float64 m in its camera,
    ``cloud_rgb`` [M,3] uint8; the keyframes' shares hold at most ``max_points`` in all).

    Raises:
        MappingError: not a map, another front-end or checkpoint, no keyframes.
    """
    try:
        with KeyframeMap.open(path) as kmap:
            if kmap.meta.frontend != "mast3r":
                raise MappingError(f"{path}: frontend 'mast3r' continues MASt3R maps; this map uses the "
                                   f"{kmap.meta.frontend!r} front-end")
            if kmap.meta.checkpoint_sha256 != checkpoint_sha256:
                raise MappingError(f"{path}: the map was made with checkpoint sha256 "
                                   f"{str(kmap.meta.checkpoint_sha256)[:12]}..., the mapper runs "
                                   f"{checkpoint_sha256[:12]}...; map with the same checkpoint")
            out = []
            ids = kmap.keyframe_ids()
            for kf_id in ids:
                kf = kmap.get_keyframe(kf_id, load_depth=False)
                names = set(kmap.array_names(kf_id))
                X, tf = (kmap.get_array(kf_id, n) if n in names else None for n in ("mast3r_X", "mast3r_tf"))
                cam, rgb = mast3r_keyframe_points(X, tf, kf.image, max(1, max_points // len(ids)))
                out.append(LoadedKeyframe(float(kf.timestamp), kf.image, np.asarray(kf.K, np.float64), None,
                                          np.asarray(kf.T_map_cam, np.float64),
                                          {"mast3r_X": X, "cloud_cam": cam, "cloud_rgb": rgb}, kf.frame_index))
    except (MapError, OSError) as exc:
        raise MappingError(f"cannot load map {path}: {exc}") from None
    if not out:
        raise MappingError(f"{path}: the map has no keyframes")
    return out


def write_mapper_map(path: str | Path, frontend, keyframes: list, cloud_xyz: np.ndarray, cloud_rgb: np.ndarray,
                     passes: int, overwrite: bool = False) -> Path:
    """Write a map directory the localizer opens: keyframes with their current poses, K, depth and SIFT
    arrays, the retrieval index, ``trajectory_tum.txt`` and ``cloud.ply``.

    Args:
        frontend: the mapper's classical front-end (its retrieval vocabulary is fitted here).
        keyframes: [(keyframe, T_map_cam [4,4])]; a keyframe has id, stamp, image, K, depth, arrays.
        cloud_xyz / cloud_rgb: [P,3] float32 map-frame points (m) / [P,3] uint8 colours.
        passes: optimisation passes merged so far (recorded in map.yaml).
    """
    from mast3r_ros.map.build import write_index
    from mast3r_ros.mapping.outputs import write_ply

    first = keyframes[0][0]
    meta = MapMeta(frontend=frontend.name, image_size=tuple(first.image.shape[1::-1]),
                   extra={"source": "incremental_mapper", "optimisation_passes": int(passes)})
    with KeyframeMap.create(path, meta, overwrite=overwrite) as kmap:
        for kf, T in keyframes:
            kmap.add_keyframe(Keyframe(None, kf.id, kf.stamp, kf.image, kf.K, T, kf.depth, kf.arrays))
        write_index(kmap, frontend, [kf.arrays for kf, _ in keyframes])
    write_ply(Path(path) / "cloud.ply", cloud_xyz, cloud_rgb)
    return Path(path)
