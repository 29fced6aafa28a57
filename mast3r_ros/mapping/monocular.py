"""Monocular MASt3R mapping: images only -> metric keyframe poses, intrinsics and 3D points.

Entry point :func:`map_monocular` (library, CLI ``map build --frontend mast3r --optimize --no-depth``,
and the mapping node). Steps:

1. encode every image once (or take encodings cached in a map);
2. pairs: a sequential window plus retrieval on the mean-pooled encoder tokens
   (:func:`mast3r_ros.mapping.pairs.select_pairs`);
3. each pair decoded both ways, matched with FRM (:mod:`mast3r_ros.mapping.mast3r_pairs`);
4. the paper's sparse global alignment (canonical views, anchors, 3D matching, 2D reprojection),
   with the intrinsics unknown (focal from the pointmaps, then the reprojection stage) or given.

The metric scale is the network's: the alignment keeps the mean scale of the input pointmaps, and no
ground truth is read anywhere. :func:`save_monocular_map` writes the result as a keyframe map of the
MASt3R front-end (``mast3r_X`` = the aligned points), which the localizer reads like any other.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from mast3r_ros.config_fields import setting
from mast3r_ros.geometry.camera import depth_to_pointmap
from mast3r_ros.mapping.alignment_config import AlignmentConfig, monocular
from mast3r_ros.mapping.kinematic import connected_components
from mast3r_ros.mapping.mast3r_pairs import EncodedImage, Mast3rPairConfig, encode_images, infer_pair
from mast3r_ros.mapping.outputs import CloudConfig, consistent_view_points, merge_cloud
from mast3r_ros.mapping.pairs import PairSelectionConfig, select_pairs
from mast3r_ros.mapping.types import AlignmentResult, MappingError, PairData, ViewData
from mast3r_ros.model import ImageTransform


def _monocular_pairs() -> PairSelectionConfig:
    # why retrieval_k=2 (not 5): each MASt3R pair costs two decoder passes and one FRM; two retrieval
    # partners per image already close the loops of a room-scale sequence
    return PairSelectionConfig(retrieval_k=2)


@dataclass
class MonocularConfig:
    """Monocular mapping (one component per field; each documents its own defaults).

    image_size: long side of the network image (512 for the released model).
    pairs: which image pairs are predicted (``retrieval_k=2``, see ``_monocular_pairs``).
    matching: pairwise inference and FRM (:class:`Mast3rPairConfig`).
    alignment: sparse global alignment (``monocular`` preset: the paper's, one shared focal).
    cloud: the exported point cloud.
    min_points_conf: keyframe 3D points whose fused pointmap confidence is below this are left out.
    """
    image_size: int = setting(512, "long side of the network image (pixels, multiple of 16)", min=64, max=2048)
    pairs: PairSelectionConfig = field(default_factory=_monocular_pairs)
    matching: Mast3rPairConfig = field(default_factory=Mast3rPairConfig)
    alignment: AlignmentConfig = field(default_factory=monocular)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    min_points_conf: float = setting(1.5, "minimum fused confidence of a stored keyframe point", min=1.0, max=1e6)


@dataclass
class MonocularMap:
    """Result of :func:`map_monocular` (N images; map frame = the first image's camera, or the frame of the
    fixed poses given; metres).

    T_map_cam: [N,4,4] float64 camera-to-map poses (OpenCV optical frames).
    K: [N,3,3] float64 intrinsics of the *original* images (estimated unless given).
    points: N arrays [Hn,Wn,3] float32, each keyframe's aligned 3D points in its own camera at network
        pixels (the front-end's ``mast3r_X``), NaN where invalid or below ``min_points_conf``.
    encoded: N :class:`EncodedImage` (tokens, image transform, retrieval descriptor).
    alignment: the :class:`AlignmentResult` (network-resolution intrinsics and depth maps).
    pairs: the (i, j) pairs predicted. timings: seconds per step.
    image_size: network long side the encodings were made at.
    pairs_decoded: pairs the decoder ran for (the others came from the caller's ``pair_cache``).
    """
    T_map_cam: np.ndarray
    K: np.ndarray
    points: list
    encoded: list
    alignment: AlignmentResult
    pairs: list
    timings: dict
    image_size: int = 512
    pairs_decoded: int = 0

    def moved(self, T_new_map: np.ndarray) -> "MonocularMap":
        """The same map in another frame: every pose (and the alignment's) left-multiplied by
        ``T_new_map`` [4,4] (rigid). Points stay in their cameras; the cloud follows the poses."""
        T = np.asarray(T_new_map, np.float64)
        res = self.alignment
        return replace(self, T_map_cam=T @ self.T_map_cam,
                       alignment=replace(res, T_world_cam=T @ res.T_world_cam,
                                         T_world_cam_init=T @ res.T_world_cam_init))

    def summary(self) -> dict:
        """Counts (pairs by the status of their matched direction), focal, timings (JSON-friendly)."""
        return {"n_keyframes": len(self.K), "n_pairs": len(self.pairs), "pairs_decoded": self.pairs_decoded,
                "pairs_ok": sum(self.alignment.pair_status.get(p) == "ok" for p in self.pairs),
                "pairs_fallback": sum(self.alignment.pair_status.get(p) == "fallback" for p in self.pairs),
                "pairs_dropped": sum(self.alignment.pair_status.get(p) == "dropped" for p in self.pairs),
                "focal_px": float(np.mean(self.K[:, 0, 0])),
                "timings": dict(self.timings)}


def network_rgb(image: np.ndarray, tf: ImageTransform) -> np.ndarray:
    """[Hn,Wn,3] uint8: the original image resized and cropped as the network saw it (cloud colours)."""
    rw, rh = tf.resized_wh
    x0, y0 = tf.crop_xy0
    wn, hn = tf.network_wh
    return np.ascontiguousarray(cv2.resize(np.asarray(image), (rw, rh), interpolation=cv2.INTER_AREA)
                                [y0:y0 + hn, x0:x0 + wn])


def map_monocular(images: list[np.ndarray], model, config: MonocularConfig | None = None,
                  K: np.ndarray | None = None, encoded: list[EncodedImage] | None = None,
                  depth_points: list | None = None, progress: bool = False,
                  pair_cache: dict | None = None, fixed_T_map_cam: dict | None = None) -> MonocularMap:
    """Build a metric keyframe map from images alone (see module doc).

    Args:
        images: N [H,W,3] uint8 RGB images of one camera, in acquisition order (order matters for the
            sequential pairs).
        model: ``Mast3rModel`` or the oracle stand-in (``encode`` / ``infer``).
        K: optional [3,3] (all images) or [N,3,3] float64 intrinsics of the original images; given,
            they are kept fixed; None, the focal length is estimated.
        encoded: optional N encodings already computed (e.g. cached in a map); skips the encoder.
        depth_points: optional N [Hn,Wn,3] float32 camera-frame points from a depth sensor at network
            pixels (NaN = none; the front-end's ``mast3r_X``), used as a metric depth prior; needs ``K``.
        pair_cache: optional {(i, j): [PairData]} of earlier calls, read and filled: a pair predicted
            before is not decoded again. Valid only while each index keeps its image and encoding (a
            caller whose image list only grows at the end).
        fixed_T_map_cam: optional {image index: [4,4] T_map_cam} of images whose poses are known and
            kept: the result is in their map frame (the others start from the chained pair poses moved
            onto the first of them); None, the map frame is the first image's camera.
    Raises:
        MappingError: fewer than 2 images, bad images, no matched pair linking all images, divergence.
    """
    cfg = config or MonocularConfig()
    n = len(images)
    if n < 2:
        raise MappingError(f"monocular mapping needs at least 2 overlapping images, got {n}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    enc = encoded if encoded is not None else encode_images(model, images, cfg.image_size)
    if len(enc) != n:
        raise MappingError(f"{len(enc)} encodings for {n} images")
    timings["encode"] = time.perf_counter() - t0
    Ks = None if K is None else _per_image_K(K, n)
    if depth_points is not None and Ks is None:
        raise MappingError("a depth prior needs the intrinsics K")
    t0 = time.perf_counter()
    pair_ids = select_pairs(n, cfg.pairs, np.stack([e.global_desc for e in enc]))
    pairs: list[PairData] = []
    it = pair_ids
    if progress:
        from tqdm import tqdm
        it = tqdm(pair_ids, desc="mast3r pairs", unit="pair")
    decoded = 0
    for i, j in it:
        predicted = None if pair_cache is None else pair_cache.get((i, j))
        if predicted is None:
            predicted = infer_pair(model, enc[i], enc[j], i, j, cfg.matching)
            decoded += 1
            if pair_cache is not None:
                pair_cache[(i, j)] = predicted
        pairs.extend(predicted)
    timings["pairs"] = time.perf_counter() - t0
    _require_linked(n, pairs, cfg.alignment.check.min_inliers, "matches")
    views = []
    for v, e in enumerate(enc):
        wn, hn = e.transform.network_wh
        Kn = None if Ks is None else e.transform.intrinsics_to_network(Ks[v])
        d = None
        if depth_points is not None and np.asarray(depth_points[v]).size:
            d = np.nan_to_num(np.asarray(depth_points[v], np.float32)[..., 2], nan=0.0)
        # no image: the optimiser does not read it, map_cloud colours the cloud from the originals
        views.append(ViewData(size=(wn, hn), K=Kn, depth=d, name=str(v)))
    acfg = replace(cfg.alignment, known_intrinsics=True) if Ks is not None else cfg.alignment
    res = _align(views, pairs, acfg, progress, fixed_T_map_cam or {})
    timings.update(res.timings)
    ok_pairs = [p for p in pairs if res.pair_status.get((p.i, p.j)) == "ok"]
    _require_linked(n, ok_pairs, 0, "matches passing the pair check")
    K_out = np.stack([e.transform.intrinsics_to_original(res.K[v]) for v, e in enumerate(enc)])
    points = [_keyframe_points(res, v, cfg.min_points_conf) for v in range(n)]
    return MonocularMap(res.T_world_cam, K_out, points, enc, res, pair_ids, timings, cfg.image_size, decoded)


def _align(views, pairs, acfg, progress, fixed_T: dict) -> AlignmentResult:
    from mast3r_ros.mapping.sparse_ga import sparse_global_alignment  # torch-heavy: imported when used

    if not fixed_T:
        return sparse_global_alignment(views, pairs, acfg, progress=progress)
    init = np.full((len(views), 4, 4), np.nan)
    fixed = np.zeros(len(views), bool)
    for v, T in fixed_T.items():
        init[v], fixed[v] = np.asarray(T, np.float64), True
    return sparse_global_alignment(views, pairs, acfg, init_T_world_cam=init, fixed=fixed, progress=progress)


def _per_image_K(K: np.ndarray, n: int) -> np.ndarray:
    K = np.asarray(K, np.float64)
    if K.shape == (3, 3):
        return np.repeat(K[None], n, 0)
    if K.shape != (n, 3, 3):
        raise MappingError(f"K must be [3,3] or [{n},3,3], got {K.shape}")
    return K


def _require_linked(n: int, pairs: list[PairData], min_matches: int, what: str) -> None:
    """MappingError naming the groups of images when pairs with >= min_matches matches do not link them."""
    groups = connected_components(n, [(p.i, p.j) for p in pairs if len(p.conf) >= max(min_matches, 1)])
    if len(groups) > 1:
        desc = "; ".join(_ranges(g) for g in sorted(groups)[:4])
        raise MappingError(f"the images do not form one connected map: {len(groups)} groups share no pair with "
                           f"{what} (images {desc}{'; ...' if len(groups) > 4 else ''}); give overlapping images")


def _ranges(ids: list[int]) -> str:
    return ",".join(str(i) for i in ids[:8]) + (",..." if len(ids) > 8 else "")


def _keyframe_points(res: AlignmentResult, v: int, min_conf: float) -> np.ndarray:
    """[Hn,Wn,3] float32 camera-frame points of view v from the aligned depth (NaN = invalid)."""
    d = res.depth_map(v)
    X = depth_to_pointmap(res.K[v], d).astype(np.float32)
    X[~((d > 0) & (res.canonical_conf[v] >= min_conf))] = np.nan
    return X


def map_cloud(result: MonocularMap, images: list[np.ndarray] | None = None,
              config: CloudConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cleaned cloud (map frame): (xyz [P,3] float32 metres, rgb [P,3] uint8), coloured from the original
    [H,W,3] uint8 ``images`` when given (else grey)."""
    return merge_cloud(map_cloud_parts(result, images, config), config)


def map_cloud_parts(result: MonocularMap, images: list[np.ndarray] | None = None,
                    config: CloudConfig | None = None, views=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each keyframe's share of :func:`map_cloud` before merging, for ``views`` (indices; None = all): (xyz
    [P_v,3] float64 m map frame, rgb [P_v,3] uint8) each."""
    res = result.alignment
    neighbours: dict[int, list[int]] = {}
    for (i, j), st in res.pair_status.items():
        if st == "ok":
            neighbours.setdefault(i, []).append(j)
            neighbours.setdefault(j, []).append(i)
    colours = None if images is None else [network_rgb(im, e.transform) for im, e in zip(images, result.encoded)]
    return consistent_view_points(res, colours, neighbours, config, views)


def save_monocular_map(result: MonocularMap, images: list[np.ndarray], model, out: str | Path,
                       frame_indices: list[int] | None = None, timestamps: list[float] | None = None,
                       extra: dict | None = None, overwrite: bool = False,
                       cloud: CloudConfig | None = None) -> Path:
    """Write ``result`` as a keyframe map of the MASt3R front-end at ``out``.

    Keyframes: the original images, ``K`` and ``T_map_cam`` of the result, the front-end's arrays
    (encoder tokens, transform, retrieval descriptor) and ``mast3r_X`` = the aligned points; then the
    retrieval index, ``trajectory_tum.txt`` and ``cloud.ply``. ``model`` must be the one that made the
    predictions (its identity is the map's checkpoint record). Frame indices / timestamps default to
    0..N-1.
    """
    return write_monocular_map(MonocularKeyframes(result.T_map_cam, result.K, result.points, result.encoded,
                                                  result.image_size), images, model, out,
                               map_cloud(result, images, cloud), frame_indices, timestamps, extra, overwrite)


@dataclass
class MonocularKeyframes:
    """What a MASt3R map keeps of N keyframes (see :class:`MonocularMap` for each field)."""
    T_map_cam: np.ndarray
    K: np.ndarray
    points: list
    encoded: list
    image_size: int = 512


def write_monocular_map(kfs: MonocularKeyframes, images: list[np.ndarray], model, out: str | Path,
                        cloud: tuple[np.ndarray, np.ndarray], frame_indices: list[int] | None = None,
                        timestamps: list[float] | None = None, extra: dict | None = None,
                        overwrite: bool = False) -> Path:
    """:func:`save_monocular_map` of keyframes gathered by the caller, with the map's cloud ([P,3] float32
    m map frame, [P,3] uint8) given."""
    from mast3r_ros.localization.frontends.mast3r import Mast3rFrontEnd, Mast3rFrontEndConfig
    from mast3r_ros.map import Keyframe, KeyframeMap, MapMeta
    from mast3r_ros.map.build import write_index
    from mast3r_ros.mapping.outputs import write_ply

    n = len(kfs.K)
    if len(images) != n:
        raise MappingError(f"{len(images)} images for a map of {n} keyframes")
    frontend = Mast3rFrontEnd(Mast3rFrontEndConfig(image_size=kfs.image_size), model=model)
    idx = list(range(n)) if frame_indices is None else [int(i) for i in frame_indices]
    stamps = [float(i) for i in idx] if timestamps is None else [float(t) for t in timestamps]
    h, w = np.asarray(images[0]).shape[:2]
    meta = MapMeta(frontend=frontend.name, checkpoint_sha256=frontend.checkpoint_sha256, image_size=(w, h),
                   extra={"mapping": "monocular", **(extra or {})})
    with KeyframeMap.create(out, meta, overwrite=overwrite) as kmap:
        kmap.set_partial(f"monocular map save stopped before finishing ({n} keyframes planned)")
        index_arrays = []
        for v in range(n):
            # the encodings map_monocular made (encoding each image again would double the encoder's work)
            arrays = frontend.keyframe_arrays(kfs.encoded[v].enc, kfs.encoded[v].transform, kfs.K[v], None)
            if kfs.points[v] is not None:  # a loaded keyframe without stored points stays without
                arrays["mast3r_X"] = kfs.points[v]
            kmap.add_keyframe(Keyframe(None, idx[v], stamps[v], np.asarray(images[v]), kfs.K[v],
                                       kfs.T_map_cam[v], None, arrays))
            index_arrays.append({k: arrays[k] for k in frontend.index_array_names})
        write_index(kmap, frontend, index_arrays)
        write_ply(Path(out) / "cloud.ply", *cloud)
        kmap.set_partial(None)
    return Path(out)


def trajectory_accuracy(T_est: np.ndarray, T_gt: np.ndarray, K_est: np.ndarray | None = None,
                        K_gt: np.ndarray | None = None) -> dict:
    """Evaluation against ground truth (reports only; nothing here feeds back into the map).

    Args:
        T_est, T_gt: [N,4,4] float64 camera-to-world poses (their world frames may differ).
        K_est, K_gt: optional [N,3,3] / [3,3] intrinsics of the original images.
    Returns:
        ``ate_se3_m``: RMSE of the camera centres after the best rigid alignment (metric: no scale);
        ``ate_sim3_m`` and ``sim3_scale``: the same after the best similarity alignment;
        ``focal_error_pct``: mean |f_est - f_gt| / f_gt of fx and fy, in percent (with K).
    """
    from mast3r_ros.geometry.alignment import umeyama

    c_est, c_gt = np.asarray(T_est)[:, :3, 3], np.asarray(T_gt)[:, :3, 3]
    out = {}
    for name, with_scale in (("se3", False), ("sim3", True)):
        T, s = umeyama(c_est, c_gt, with_scale=with_scale)
        err = c_est @ (s * T[:3, :3]).T + T[:3, 3] - c_gt
        out[f"ate_{name}_m"] = float(np.sqrt(np.mean(np.sum(err * err, axis=1))))
        if with_scale:
            out["sim3_scale"] = float(s)
    if K_est is not None and K_gt is not None:
        Ke = np.asarray(K_est, np.float64).reshape(-1, 3, 3)
        Kg = np.broadcast_to(np.asarray(K_gt, np.float64).reshape(-1, 3, 3), Ke.shape)
        rel = np.abs(np.r_[Ke[:, 0, 0] / Kg[:, 0, 0], Ke[:, 1, 1] / Kg[:, 1, 1]] - 1.0)
        out["focal_error_pct"] = float(100.0 * rel.mean())
    return out


def frame_alignment(T_est: np.ndarray, T_gt: np.ndarray) -> np.ndarray:
    """[4,4] rigid transform G (estimate frame -> ground-truth frame) fitted to whole poses.

    Why not only the camera centres: a short or straight trajectory leaves the rotation about its own
    line free; the tips of each camera's axes (1 m along x, y, z) fix it. Evaluation only.
    """
    from mast3r_ros.geometry.alignment import umeyama

    def tips(T: np.ndarray) -> np.ndarray:
        T = np.asarray(T, np.float64)
        c = T[:, :3, 3]
        return np.concatenate([c] + [c + T[:, :3, a] for a in range(3)])

    G, _ = umeyama(tips(T_est), tips(T_gt))
    return G
