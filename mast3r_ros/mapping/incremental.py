"""Incremental mapper: the ROS-free engine of the mapping node (no rclpy here).

Usage (the mapping node forwards each synchronised image / depth / camera_info to it)::

    mapper = IncrementalMapper(IncrementalConfig(max_keyframes=150))
    mapper.start()                                    # background re-optimisation worker
    r = mapper.add_frame(rgb, K, depth, stamp=t)      # -> FrameResult (is_keyframe, T_map_cam, reason)
    snap = mapper.snapshot(cloud=True)                # poses, K, stamps, cloud for publishing
    mapper.optimize("global", wait=True)              # the node's `optimize` service
    mapper.save("/maps/kitchen")                      # a map directory the localizer opens
    mapper.load("/maps/kitchen")                      # continue mapping from a saved map
    mapper.stop()

Inputs: ``rgb`` [H,W,3] uint8, ``K`` [3,3] float64 (pixels), ``depth`` [H,W] float32 metres registered
to ``rgb`` (0 = invalid), ``stamp`` seconds, optional ``T_odom_cam`` [4,4] (odometry prior, used
when visual tracking fails). Poses are ``T_map_cam`` camera-to-map (OpenCV optical frame, metres).
The first keyframe's pose is ``T_map_first`` when given (the mapping node passes its odometry pose:
the map frame is then the odom frame at the first keyframe, z up when odom's is), else the identity
(the map frame is the first keyframe's camera).

Keyframe gating: a frame becomes a keyframe when, relative to the last keyframe (3D-3D RANSAC
on SIFT + depth), it moved more than ``kf_min_translation`` metres or ``kf_min_rotation_deg``, or
its overlap (fraction of its depth-backed features that are inliers) fell below
``kf_max_overlap``. Each new keyframe is paired with the previous ``sequential_window``
keyframes and the ``retrieval_k`` nearest older ones (pose prior), then re-optimised by sparse
global alignment with warm start: a windowed pass (last ``window_size`` keyframes free, their
neighbours fixed) after every ``optimize_every_n_keyframes`` keyframes, and a global pass
(everything but the first keyframe free) every ``global_every`` keyframes. Memory is bounded by
``max_keyframes``: beyond it, the most redundant old keyframe (closest to another) is dropped.
Thread safety: all public methods may be called from any thread; the worker optimises a copy and
merges the result, re-anchoring keyframes added in the meantime (the pass and the worker:
``incremental_pass.py``).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mast3r_ros.geometry.alignment import ransac_rigid
from mast3r_ros.geometry.camera import backproject_depth
from mast3r_ros.geometry.transforms import invert, rotation_error_deg
from mast3r_ros.localization.frontends.classical import ClassicalFrontEnd
from mast3r_ros.mapping.incremental_config import IncrementalConfig
from mast3r_ros.mapping.incremental_pass import PassWorker, align_keyframes
from mast3r_ros.mapping.pairs import classical_pair
from mast3r_ros.mapping.types import MappingError


@dataclass
class FrameResult:
    """Outcome of :meth:`IncrementalMapper.add_frame`. ``T_map_cam`` [4,4] or None (not tracked)."""
    is_keyframe: bool
    keyframe_id: int | None
    T_map_cam: np.ndarray | None
    reason: str
    n_inliers: int = 0
    overlap: float = 0.0
    relocalized: bool = False  # tracked against an older keyframe, not the last one


@dataclass
class MapSnapshot:
    """Consistent copy of the map. ids [N] keyframe ids; stamps [N] s; T_map_cam [N,4,4];
    K [N,3,3]; cloud_xyz [P,3] float32 map frame (m) and cloud_rgb [P,3] uint8 when requested;
    version: number of optimisation results merged so far."""
    ids: list
    stamps: np.ndarray
    T_map_cam: np.ndarray
    K: np.ndarray
    version: int
    cloud_xyz: np.ndarray | None = None
    cloud_rgb: np.ndarray | None = None


@dataclass
class _KF:
    id: int
    stamp: float
    image: np.ndarray
    K: np.ndarray
    depth: np.ndarray
    arrays: dict
    T: np.ndarray
    ref: int | None  # keyframe this one was tracked from (re-anchoring after optimisation)


class IncrementalMapper:
    """See the module docstring."""

    def __init__(self, config: IncrementalConfig | None = None):
        self.config = config or IncrementalConfig()
        self._fe = ClassicalFrontEnd(self.config.classical)
        self._kfs: dict[int, _KF] = {}
        self._pairs: dict[tuple[int, int], object] = {}
        self._next_id, self._since_opt, self._version = 0, 0, 0
        self._lock = threading.RLock()
        self._worker = PassWorker(self._run_pass)  # background passes (start / stop)
        self._last_T_odom: np.ndarray | None = None
        self._ref_id: int | None = None  # keyframe new frames are tracked against (None: newest)
        self._desc_cache: dict[int, np.ndarray] = {}  # keyframe id -> VLAD descriptor under _desc_vocab
        self._desc_vocab: np.ndarray | None = None
        self.last_error: str | None = None

    # ------------------------------------------------------------------ frames
    def add_frame(self, image: np.ndarray, K: np.ndarray, depth: np.ndarray, stamp: float = 0.0,
                  T_odom_cam: np.ndarray | None = None, T_map_first: np.ndarray | None = None) -> FrameResult:
        """Track a frame against the last keyframe and add it as a keyframe when gated in.
        ``T_map_first`` [4,4]: the pose given to the first keyframe of an empty map (default: the
        identity); ignored once the map has keyframes."""
        cfg = self.config
        arrays = self._fe.prepare_keyframe(image, K, depth)
        with self._lock:  # the reference: the newest keyframe, or the one last relocalised against
            last = self._kfs.get(self._ref_id) or (self._kfs[max(self._kfs)] if self._kfs else None)
            odom_ref = self._last_T_odom if last is not None and last.id == max(self._kfs) else None
        if last is None:
            first = np.eye(4) if T_map_first is None else np.asarray(T_map_first, np.float64)
            return self._add_kf(image, K, depth, stamp, arrays, first, None, "first keyframe", 0, 1.0,
                                T_odom_cam)
        T_last_cur, n_inl, overlap = self._track(last, arrays, K)
        if T_last_cur is None and T_odom_cam is not None and odom_ref is not None:
            T_last_cur = invert(odom_ref) @ T_odom_cam  # odometry bridges the gap
        relocalized = False
        if T_last_cur is None:
            found = self._relocalize(arrays, K, exclude=last.id)
            if found is None:
                return FrameResult(False, None, None, "tracking lost", n_inl, overlap)
            last, T_last_cur, n_inl, overlap = found
            relocalized = True
            self._ref_id = last.id
        with self._lock:
            T = self._kfs[last.id].T @ T_last_cur if last.id in self._kfs else last.T @ T_last_cur
        dt = float(np.linalg.norm(T_last_cur[:3, 3]))
        dr = rotation_error_deg(T_last_cur, np.eye(4))
        if dt >= cfg.kf_min_translation or dr >= cfg.kf_min_rotation_deg or overlap <= cfg.kf_max_overlap:
            why = (f"moved {dt:.2f} m" if dt >= cfg.kf_min_translation else
                   f"turned {dr:.1f} deg" if dr >= cfg.kf_min_rotation_deg else f"overlap {overlap:.2f}")
            r = self._add_kf(image, K, depth, stamp, arrays, T, last.id, why, n_inl, overlap, T_odom_cam)
        else:
            r = FrameResult(False, None, T, "tracked", n_inl, overlap)
        r.relocalized = relocalized
        return r

    def _track(self, kf: _KF, arrays: dict, K: np.ndarray) -> tuple[np.ndarray | None, int, float]:
        """(T_kf_cur or None, inliers, overlap) by 3D-3D RANSAC on SIFT matches with depth."""
        p = classical_pair(0, 1, kf.arrays, arrays, self.config.classical.ratio)
        n_feat = max(int(np.isfinite(arrays["sift_X"]).all(1).sum()), 1)
        if len(p.conf) < 3:
            return None, 0, 0.0
        Xk = _lift(kf.arrays, p.xy_i)
        Xc = _lift(arrays, p.xy_j)
        T, inl = ransac_rigid(Xc, Xk, self.config.inlier_m, 200)
        n = int(inl.sum())
        if T is None or n < self.config.min_inliers:
            return None, n, n / n_feat
        return T, n, n / n_feat

    def _relocalize(self, arrays: dict, K: np.ndarray, exclude: int) -> tuple | None:
        """(keyframe, T_kf_cur, inliers, overlap) against the most similar other keyframes, or None.

        Why: after ``load`` the robot may start anywhere in the map, and after a tracking loss it
        may come back to an older part of it. Candidates: the ``relocalize_candidates`` keyframes
        with the closest retrieval descriptors (VLAD, when a vocabulary is loaded), else the most
        recent ones.
        """
        with self._lock:
            kfs = [k for i, k in sorted(self._kfs.items()) if i != exclude]
        n = self.config.relocalize_candidates
        if not kfs or n <= 0:
            return None
        if self._fe.vocabulary is not None:
            sims = self._retrieval_descriptors(kfs) @ self._fe.keyframe_descriptor(arrays)
            kfs = [kfs[i] for i in np.argsort(sims)[::-1][:n]]
        else:
            kfs = kfs[::-1][:n]
        best = None
        for kf in kfs:
            T, n_inl, overlap = self._track(kf, arrays, K)
            if T is not None and (best is None or n_inl > best[2]):
                best = (kf, T, n_inl, overlap)
        return best

    def _retrieval_descriptors(self, kfs: list) -> np.ndarray:
        """[N,D] VLAD descriptors of ``kfs``. Cached per keyframe while the vocabulary is the same
        array (``save`` refits it, ``load`` replaces it): ~5 ms each, and a lost robot asks for all
        of them at every frame."""
        vocab = self._fe.vocabulary
        with self._lock:
            if vocab is not self._desc_vocab:
                self._desc_cache, self._desc_vocab = {}, vocab
            cache = self._desc_cache
        for kf in kfs:
            if kf.id not in cache:
                cache[kf.id] = self._fe.keyframe_descriptor(kf.arrays)
        return np.stack([cache[kf.id] for kf in kfs])

    def _add_kf(self, image, K, depth, stamp, arrays, T, ref, why, n_inl, overlap, T_odom) -> FrameResult:
        cfg = self.config
        with self._lock:
            kid = self._next_id
            self._next_id += 1
            kf = _KF(kid, float(stamp), image, np.asarray(K, np.float64), np.asarray(depth, np.float32),
                     arrays, np.asarray(T, np.float64), ref)
            self._kfs[kid] = kf
            self._ref_id = kid
            self._last_T_odom = T_odom
            self._pairs.update(self._new_pairs(kf, self._kfs))
            self._bound_memory()
            self._since_opt += 1
            n_new = self._since_opt
        if n_new % max(cfg.optimize_every_n_keyframes, 1) == 0 and len(self._kfs) >= 2:
            mode = "global" if (kid % max(cfg.global_every, 1) == 0) else "window"
            self.optimize(mode, wait=not self._worker.running)
        return FrameResult(True, kid, T, why, n_inl, overlap)

    def _new_pairs(self, kf: _KF, kfs: dict) -> dict:
        """{(other, kf.id): PairData} of SIFT matches with the partners of ``kf`` among ``kfs``."""
        return {(o, kf.id): classical_pair(0, 1, kfs[o].arrays, kf.arrays, self.config.classical.ratio)
                for o in self._partners(kf, kfs)}

    def _partners(self, kf: _KF, kfs: dict) -> list[int]:
        """Keyframes to pair ``kf`` with, among ``kfs``."""
        cfg = self.config
        older = sorted(k for k in kfs if k != kf.id)
        seq = older[-cfg.sequential_window:]
        rest = [k for k in older if k not in seq]
        d = {k: np.linalg.norm(kfs[k].T[:3, 3] - kf.T[:3, 3]) for k in rest}
        near = [k for k in sorted(d, key=d.get) if d[k] <= cfg.retrieval_max_dist_m][:cfg.retrieval_k]
        return seq + near

    def _bound_memory(self) -> None:
        cfg = self.config
        while len(self._kfs) > cfg.max_keyframes:
            ids = sorted(self._kfs)
            cand = ids[1:-cfg.window_size] or ids[1:-1]
            C = np.stack([self._kfs[k].T[:3, 3] for k in ids])
            dist = {k: np.partition(np.linalg.norm(C - self._kfs[k].T[:3, 3], axis=1), 1)[1] for k in cand}
            drop = min(dist, key=dist.get)
            del self._kfs[drop]
            self._pairs = {k: v for k, v in self._pairs.items() if drop not in k}
            self._desc_cache.pop(drop, None)

    # ------------------------------------------------------------------ optimisation
    def optimize(self, mode: str = "global", wait: bool = True) -> bool:
        """Re-optimise ('global' or 'window'). With ``wait`` it runs now in this thread and
        returns whether it succeeded; otherwise the request goes to the worker (coalesced)."""
        if mode not in ("global", "window"):
            raise ValueError(f"mode must be 'global' or 'window', got {mode!r}")
        if not wait and self._worker.running:
            self._worker.request(mode)
            return True
        return self._run_pass(mode)

    def _run_pass(self, mode: str) -> bool:
        with self._lock:  # copy what the pass needs; keyframes may arrive meanwhile
            kfs = dict(self._kfs)
            pairs = dict(self._pairs)
            T0 = {k: kf.T.copy() for k, kf in kfs.items()}
        try:
            new = align_keyframes(kfs, T0, pairs, mode, self.config.window_size, self.config.alignment)
        except MappingError as exc:
            self.last_error = str(exc)
            return False
        if new is None:
            return False
        with self._lock:
            for k in sorted(self._kfs):  # merge; re-anchor keyframes added during the pass
                kf = self._kfs[k]
                if k in new:
                    kf.T = new[k]
                elif kf.ref is not None and kf.ref in T0 and kf.ref in new:
                    kf.T = new[kf.ref] @ invert(T0[kf.ref]) @ kf.T
            self._version += 1
            self._since_opt = 0
        return True

    def start(self) -> None:
        """Start the background worker (idempotent)."""
        self._worker.start()

    def stop(self) -> None:
        """Stop the worker after its current pass."""
        self._worker.stop()

    # ------------------------------------------------------------------ outputs
    def snapshot(self, cloud: bool = False, stride: int = 8, max_points: int | None = None) -> MapSnapshot:
        """Copy of the keyframe poses (and optionally a coloured cloud from keyframe depth, every
        ``stride``-th pixel; with ``max_points`` the stride is chosen so that about that many
        pixels are sampled in all)."""
        with self._lock:
            ids = sorted(self._kfs)
            kfs = [self._kfs[k] for k in ids]
            snap = MapSnapshot(ids, np.array([k.stamp for k in kfs]),
                               np.stack([k.T for k in kfs]) if kfs else np.zeros((0, 4, 4)),
                               np.stack([k.K for k in kfs]) if kfs else np.zeros((0, 3, 3)), self._version)
        if cloud:
            if max_points:
                stride = max(1, math.ceil(math.sqrt(sum(kf.depth.size for kf in kfs) / max_points)))
            xyz, rgb = [], []
            for kf, T in zip(kfs, snap.T_map_cam):
                ys, xs = np.mgrid[0:kf.depth.shape[0]:stride, 0:kf.depth.shape[1]:stride]
                z = kf.depth[ys, xs]
                ok = z > 0
                X = backproject_depth(kf.K, np.stack([xs[ok], ys[ok]], 1), z[ok])
                xyz.append(X @ T[:3, :3].T + T[:3, 3])
                rgb.append(kf.image[ys[ok], xs[ok]])
            snap.cloud_xyz = np.concatenate(xyz).astype(np.float32) if xyz else np.zeros((0, 3), np.float32)
            snap.cloud_rgb = np.concatenate(rgb).astype(np.uint8) if rgb else np.zeros((0, 3), np.uint8)
        return snap

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the keyframes (current poses, K, depth, SIFT arrays) as a map directory the
        localizer opens (classical front-end, retrieval index, ``trajectory_tum.txt``,
        ``cloud.ply``). Raises MappingError when there is no keyframe yet."""
        from mast3r_ros.map.mapper_io import write_mapper_map

        snap = self.snapshot(cloud=True)
        with self._lock:  # a keyframe dropped since the snapshot is left out with its pose
            kept = [(self._kfs[k], T) for k, T in zip(snap.ids, snap.T_map_cam) if k in self._kfs]
        if not kept:
            raise MappingError("no keyframes to save yet")
        return write_mapper_map(path, self._fe, kept, snap.cloud_xyz, snap.cloud_rgb, snap.version, overwrite)

    def load(self, path: str | Path) -> int:
        """Replace the map with the saved map at ``path`` (its keyframes, poses and retrieval
        vocabulary) and continue mapping from it; returns the number of keyframes. The map frame
        becomes the loaded map's. New frames are tracked against the last loaded keyframe, else
        relocalised against the most similar ones. Raises MappingError (nothing changed then)."""
        from mast3r_ros.map.mapper_io import read_mapper_keyframes

        loaded, vocab = read_mapper_keyframes(path)
        kfs = {i: _KF(i, k.stamp, k.image, k.K, k.depth, k.arrays, k.T_map_cam, None)
               for i, k in enumerate(loaded)}
        pairs = {}
        for kid in sorted(kfs):  # paired as if added one by one
            pairs.update(self._new_pairs(kfs[kid], {i: kfs[i] for i in kfs if i < kid}))
        with self._lock:
            self._kfs, self._pairs = kfs, pairs
            self._next_id, self._since_opt = len(kfs), 0
            self._version += 1
            self._last_T_odom, self._ref_id = None, None
            self.last_error = None
            self._fe.set_vocabulary(vocab)
            self._desc_cache, self._desc_vocab = {}, None  # keyframe ids are reused
        return len(kfs)

    def __len__(self) -> int:
        with self._lock:
            return len(self._kfs)


def _lift(arrays: dict, xy: np.ndarray) -> np.ndarray:
    """Camera-frame 3D points of keypoints (matched by pixel) from the stored ``sift_X``."""
    kp = np.asarray(arrays["sift_xy"])
    X = np.asarray(arrays["sift_X"], np.float64)
    ok = np.isfinite(X).all(1)
    kp, X = kp[ok], X[ok]
    lut = {(float(a), float(b)): i for i, (a, b) in enumerate(kp)}
    return X[[lut[(float(a), float(b))] for a, b in xy]]
