"""MASt3R mapping from a stream of frames: the mapping node's engine for ``frontend: mast3r``, monocular
(images alone) or with a depth sensor (ROS-free; the node's core, ``ros/core/mapping_core.py``, drives it
like the incremental mapper).

Frames come one at a time; some become keyframes, whose images (and depth, when given) are buffered (at
most ``max_keyframes``). Keyframe rule, without tracking to measure motion:

* with odometry, the caller gates on it (the mapping node: ``mapper.kf_min_translation`` /
  ``mapper.kf_min_rotation_deg``) and passes the odometry pose: every frame it hands over is a keyframe;
* without odometry, a frame is a keyframe when its stamp is at least ``kf_min_interval_s`` after the
  last keyframe's (the first frame always is).

A mapping pass (in the background once ``pass_every_n_keyframes`` keyframes came since the last one,
when the caller started the worker; :meth:`MonocularStream.optimize`; :meth:`save` when keyframes were
added since the last pass) runs :func:`mast3r_ros.mapping.monocular.map_monocular`: poses, metric scale
from the pointmaps, points. It maps every keyframe while there are at most ``window_keyframes``; beyond,
the newest ``window_keyframes``, joined to the map by a few older keyframes held at their poses, and older
keyframes keep their poses (:mod:`mast3r_ros.mapping.monocular_window`), so a pass costs the same however
long the map grows (at most ``max_keyframes`` keyframes). Keyframes with depth give it a metric depth
prior (their sensor points, with camera_info's K, which is then kept fixed) and keep their sensor points
as the map's ``mast3r_X`` (as ``map build --frontend mast3r`` with depth stores). The map frame is the
caller's frame of the first keyframe (``T_map_first``: the mapping core passes the odometry pose, so the
map frame is the odom frame at the first keyframe, as the incremental mapper's), else its camera (OpenCV
optical frame); metres. Passes run one at a time; each keeps the keyframes' encodings and the image pairs
it predicted (by keyframe id), so the next pass encodes only new keyframes and decodes only new pairs
(pairs of keyframes that left the window are dropped). :meth:`save` writes the map with
:func:`~mast3r_ros.mapping.monocular.write_monocular_map`: a keyframe map of the MASt3R front-end that
records the model's hash, which the localization node loads.

Continuing a saved map (:meth:`load`, the node's ``load_map``): the map's keyframes (images, intrinsics,
poses, stamps) become the buffer's first keyframes, shown at their saved poses until the next pass; the
next frame is a keyframe (its stamp may be older than the map's). A pass maps the keyframes of its window
again (loaded ones in it are re-optimised with the new ones, as a pose graph is) and keeps the loaded
map's frame: a pass that maps the first loaded keyframe is moved so that it stays at its saved pose.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mast3r_ros.mapping.incremental import FrameResult, MapSnapshot
from mast3r_ros.mapping.monocular_stream_config import MonocularStreamConfig
from mast3r_ros.mapping.monocular_window import IdPairCache, forget_pairs_before, next_window
from mast3r_ros.mapping.outputs import merge_cloud
from mast3r_ros.mapping.types import MappingError


class HashedModel:
    """A MASt3R model with the hash of the checkpoint file it was loaded from, which a saved map records
    (:func:`~mast3r_ros.mapping.monocular.save_monocular_map` reads ``model.checkpoint_sha256``; the
    localization node hashes the same file and accepts the map). ``encode``, ``infer`` and ``device``
    are the model's."""

    def __init__(self, model, checkpoint_sha256: str):
        self.model, self.checkpoint_sha256 = model, checkpoint_sha256

    def encode(self, *args, **kwargs):
        return self.model.encode(*args, **kwargs)

    def infer(self, *args, **kwargs):
        return self.model.infer(*args, **kwargs)

    @property
    def device(self):
        return self.model.device


@dataclass
class _Keyframe:
    id: int
    stamp: float         # s
    image: np.ndarray    # [H,W,3] uint8 RGB
    K: np.ndarray        # [3,3] float64 (camera_info)
    depth: np.ndarray | None = None  # [H,W] float32 m registered to the image (0 = none), or None
    # what the map holds of it, once a pass (or a load) posed it:
    T: np.ndarray | None = None       # [4,4] T_map_cam
    K_map: np.ndarray | None = None   # [3,3] K of that pass (estimated or given)
    points: np.ndarray | None = None  # [Hn,Wn,3] float32 m in its camera at network pixels (mast3r_X)
    cloud: tuple | None = None        # its share of the cloud: ([P,3] float32 m map frame, [P,3] uint8)
    enc: object = None                # its EncodedImage, once encoded


class MonocularStream:
    """See the module docstring. ``model``: ``Mast3rModel`` or the oracle stand-in; ``image_size``: the
    network's long side (the localization node's ``mast3r.image_size`` must match); ``extra``: recorded
    in the saved map's metadata (e.g. the ``rgbd_calibration`` the stand-in was built with)."""

    def __init__(self, config: MonocularStreamConfig, model, image_size: int = 512, extra: dict | None = None):
        from mast3r_ros.mapping.monocular import MonocularConfig  # torch: only when an engine is built

        self.config, self.model, self.extra = config, model, dict(extra or {})
        self.mapping = MonocularConfig(image_size=image_size)
        self._lock = threading.RLock()
        self._kfs: list[_Keyframe] = []
        self._map = None                    # MonocularMap of the last pass (its summary)
        self._map_fixed = 0                 # keyframes it held at their poses
        self._covered: list[int] = []       # keyframe ids the last optimize left mapped
        self._cloud = (np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8))  # merged shares
        self._anchor: tuple[int, np.ndarray] | None = None  # loaded map: (first keyframe id, its saved T_map_cam)
        self._interval_from: float | None = None            # stamp the interval rule counts from (None: next frame)
        self._version = 0
        self._pass_s = 0.0
        self.last_error: str | None = None
        # passes: one at a time; a load (new generation) makes a pass in flight drop its result
        self._pass_lock = threading.Lock()
        self._generation = 0
        self._pairs: dict = {}                     # {(id_i, id_j): [PairData] with ids}, see IdPairCache
        self._attempted = 0                        # keyframes in the last pass tried (auto passes count from it)
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._worker: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._kfs)

    def add_frame(self, image: np.ndarray, K: np.ndarray, depth=None, stamp: float = 0.0,
                  T_odom_cam: np.ndarray | None = None, T_map_first=None) -> FrameResult:
        """Keyframe or not (see the rule in the module doc). ``image`` [H,W,3] uint8 RGB, ``K`` [3,3],
        ``stamp`` s; ``T_odom_cam`` [4,4]: the odometry pose when the caller gated on odometry (None:
        the interval rule); ``depth`` [H,W] float32 m registered to the image (0 = none) or None;
        ``T_map_first`` [4,4]: where the first keyframe of a new map is placed (None: at the origin, the map
        frame is its camera). A keyframe's pose is known after the next pass: ``T_map_cam`` is None."""
        with self._lock:
            if self._interval_from is not None and T_odom_cam is None:
                dt = stamp - self._interval_from
                if dt < self.config.kf_min_interval_s:
                    return FrameResult(False, None, None, f"{dt:.2f} s after the last keyframe")
            if len(self._kfs) >= self.config.max_keyframes:
                return FrameResult(False, None, None, f"keyframe buffer full (mono.max_keyframes "
                                   f"{self.config.max_keyframes}): save_map, then reset")
            kid = self._kfs[-1].id + 1 if self._kfs else 0
            why = ("odometry moved" if T_odom_cam is not None else "interval" if self._interval_from is not None
                   else "first after the loaded map" if self._kfs else "first")
            if not self._kfs and T_map_first is not None:  # a new map: its frame is the caller's
                self._anchor = (kid, np.array(T_map_first, np.float64))
            self._kfs.append(_Keyframe(kid, float(stamp), np.array(image, np.uint8), np.array(K, np.float64),
                                       None if depth is None else np.array(depth, np.float32)))
            self._interval_from = float(stamp)
        self._wake.set()
        return FrameResult(True, kid, None, why)

    def optimize(self, mode: str = "global", wait: bool = True) -> bool:
        """Map every keyframe not mapped by the last pass (one window, or several when many came, each merged
        into the map as it ends), after the pass in flight (``mode``/``wait``: the incremental mapper's
        arguments; returns when done; nothing runs when the last pass left them all mapped). False when it
        failed (``last_error`` says why: too few keyframes, images that do not overlap, a map loaded
        meanwhile, ...)."""
        with self._pass_lock:
            with self._lock:
                kfs, generation = list(self._kfs), self._generation
                if self._map is not None and self._covered == [k.id for k in kfs]:
                    return True
                self._attempted = len(kfs)
            t0 = time.perf_counter()
            while True:
                with self._lock:
                    fixed_from, start, end = next_window([k.T is not None for k in kfs],
                                                         self.config.window_keyframes)
                try:
                    result, shares = self._pass(kfs[fixed_from:start], kfs[start:end])
                except MappingError as exc:
                    self.last_error = str(exc)
                    return False
                with self._lock:
                    if generation != self._generation:
                        self.last_error = "a map was loaded during the pass: its result was dropped"
                        return False
                    self._merge(kfs[start:end], result, shares)
                    forget_pairs_before(self._pairs, kfs[fixed_from].id)
                    # each window is a version of the map: the node shows (and logs) it as it comes
                    self._map, self._map_fixed = result, start - fixed_from
                    self._cloud = merge_cloud([k.cloud for k in kfs if k.cloud is not None], self.mapping.cloud)
                    self._pass_s, t0 = time.perf_counter() - t0, time.perf_counter()
                    self._version += 1
                    self.last_error = None
                    if end == len(kfs):
                        self._covered = [k.id for k in kfs]
                        return True

    def _pass(self, fixed: list[_Keyframe], free: list[_Keyframe]):
        """(MonocularMap of ``fixed`` (held at their poses) + ``free`` keyframes, the free ones' cloud shares)."""
        from mast3r_ros.mapping.monocular import map_cloud_parts, map_monocular

        kfs = fixed + free
        if len(kfs) < 2:
            raise MappingError(f"need at least 2 keyframes, have {len(kfs)}")
        self._encode_missing(kfs)
        images = [k.image for k in kfs]
        encoded = [k.enc for k in kfs]
        with_depth = any(k.depth is not None for k in kfs)
        K = None if self.config.estimate_focal and not with_depth else np.stack([k.K for k in kfs])
        sensor = _sensor_points(kfs, encoded) if with_depth else None
        held = {v: k.T for v, k in enumerate(fixed)}
        result = map_monocular(images, self.model, self.mapping, K=K, encoded=encoded, depth_points=sensor,
                               pair_cache=IdPairCache(self._pairs, [k.id for k in kfs]), fixed_T_map_cam=held)
        if sensor is not None:  # the map keeps the sensor's points where it has them
            result = replace(result, points=[s if s.size else p for s, p in zip(sensor, result.points)])
        anchor = self._anchor
        if not held and anchor is not None:  # keep the map's frame (T_map_first, or the loaded map's)
            at = [k.id for k in kfs].index(anchor[0])
            result = result.moved(anchor[1] @ np.linalg.inv(result.T_map_cam[at]))
        return result, map_cloud_parts(result, images, self.mapping.cloud, views=range(len(fixed), len(kfs)))

    def _encode_missing(self, kfs: list[_Keyframe]) -> None:
        """Encode the keyframes of ``kfs`` not encoded yet (each keyframe is encoded once)."""
        from mast3r_ros.mapping.mast3r_pairs import encode_images

        todo = [k for k in kfs if k.enc is None]
        for k, e in zip(todo, encode_images(self.model, [k.image for k in todo], self.mapping.image_size)):
            k.enc = e

    def _merge(self, free: list[_Keyframe], result, shares: list) -> None:
        """The pass's poses, intrinsics and points of its free keyframes (the last ones of ``result``, after
        the fixed), and their cloud ``shares``."""
        off = len(result.K) - len(free)
        for v, (k, (xyz, rgb)) in enumerate(zip(free, shares), start=off):
            k.T, k.K_map, k.points, k.cloud = result.T_map_cam[v], result.K[v], result.points[v], (
                xyz.astype(np.float32), rgb)

    def pass_summary(self) -> dict:
        """The last pass's :meth:`MonocularMap.summary` (pairs, pairs decoded, focal, timings; ``n_keyframes``:
        the keyframes it mapped, fixed ones included), ``n_fixed`` (keyframes held at their poses) and its
        wall time ``pass_s`` (s; encoding and cloud included); {} before one."""
        with self._lock:
            if self._map is None:
                return {}
            return {**self._map.summary(), "n_fixed": self._map_fixed, "pass_s": self._pass_s}

    def start(self) -> None:
        """Start the background worker: a pass once ``pass_every_n_keyframes`` keyframes came since the
        last pass tried (a failed pass is tried again only after that many more)."""
        if self._worker is None and self.config.pass_every_n_keyframes > 0:
            self._stopping.clear()
            self._worker = threading.Thread(target=self._work, name="mast3r-mono-passes", daemon=True)
            self._worker.start()

    def stop(self) -> None:
        """Stop the worker after its pass in flight (the caller may stop waiting: the thread is a daemon)."""
        worker, self._worker = self._worker, None
        self._stopping.set()
        self._wake.set()
        if worker is not None:
            worker.join()

    def _work(self) -> None:
        n = self.config.pass_every_n_keyframes
        while not self._stopping.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            with self._lock:
                due = len(self._kfs) >= 2 and len(self._kfs) - self._attempted >= n
            if due and not self._stopping.is_set():
                self.optimize()

    def snapshot(self, cloud: bool = False, max_points: int | None = None) -> MapSnapshot:
        """The keyframes a pass (or the load) posed, in buffer order (none before either): ids, stamps [N] s,
        T_map_cam [N,4,4], K [N,3,3] of the original images, version = optimizes and loads so far; the map's
        cleaned cloud (map frame, metres; subsampled to ``max_points``) when ``cloud``."""
        with self._lock:
            kfs = [k for k in self._kfs if k.T is not None]
            xyz, rgb = self._cloud
            snap = MapSnapshot([k.id for k in kfs], np.array([k.stamp for k in kfs]),
                               np.stack([k.T for k in kfs]) if kfs else np.zeros((0, 4, 4)),
                               np.stack([k.K_map for k in kfs]) if kfs else np.zeros((0, 3, 3)), self._version)
        if cloud:
            if max_points and len(xyz) > max_points:
                pick = np.linspace(0, len(xyz) - 1, max_points).astype(np.int64)
                xyz, rgb = xyz[pick], rgb[pick]
            snap.cloud_xyz, snap.cloud_rgb = xyz, rgb
        return snap

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the map (a pass first when keyframes came since the last one). Raises MappingError when
        there is no keyframe or the pass fails."""
        from mast3r_ros.mapping.monocular import MonocularKeyframes, write_monocular_map

        with self._lock:
            stale = self._covered != [k.id for k in self._kfs]
        if not self._kfs:
            raise MappingError("no keyframes to save yet")
        if stale and not self.optimize():
            raise MappingError(f"mapping pass failed: {self.last_error}")
        with self._pass_lock:  # loaded keyframes no pass mapped are encoded here (no pass runs meanwhile)
            with self._lock:
                kfs, cloud = list(self._kfs), self._cloud
            self._encode_missing(kfs)
        posed = MonocularKeyframes(np.stack([k.T for k in kfs]), np.stack([k.K_map for k in kfs]),
                                   [k.points for k in kfs], [k.enc for k in kfs], self.mapping.image_size)
        return write_monocular_map(posed, [k.image for k in kfs], self.model, path, cloud,
                                   frame_indices=[k.id for k in kfs], timestamps=[k.stamp for k in kfs],
                                   extra=self.extra, overwrite=overwrite)

    def load(self, path: str | Path) -> int:
        """Replace the keyframes with those of the MASt3R map at ``path`` (made with this model's checkpoint)
        and continue from it (see the module doc); returns their number. Raises MappingError (nothing
        changed then): not such a map, or more keyframes than ``max_keyframes``."""
        from mast3r_ros.map.mapper_io import read_monocular_keyframes

        loaded = read_monocular_keyframes(path, self.model.checkpoint_sha256, self.mapping.cloud.max_points)
        if len(loaded) > self.config.max_keyframes:
            raise MappingError(f"{path}: {len(loaded)} keyframes, more than mono.max_keyframes "
                               f"{self.config.max_keyframes}")
        ids = [k.frame_index for k in loaded]
        if len(set(ids)) != len(ids) or ids != sorted(ids):  # ids must grow with the buffer's order
            ids = list(range(len(loaded)))
        kfs = []
        for i, k in zip(ids, loaded):
            T = k.T_map_cam
            share = ((k.arrays["cloud_cam"] @ T[:3, :3].T + T[:3, 3]).astype(np.float32), k.arrays["cloud_rgb"])
            kfs.append(_Keyframe(i, k.stamp, k.image, k.K, T=T, K_map=k.K, points=k.arrays["mast3r_X"],
                                 cloud=share))
        with self._lock:
            self._kfs, self._map, self._covered = kfs, None, []
            self._cloud = merge_cloud([k.cloud for k in kfs], self.mapping.cloud)
            self._generation += 1
            self._pairs, self._attempted = {}, len(kfs)
            self._anchor = (kfs[0].id, loaded[0].T_map_cam)
            self._interval_from = None
            self._version += 1
            self.last_error = None
        return len(kfs)


def _sensor_points(kfs: list[_Keyframe], encoded: list) -> list[np.ndarray]:
    """Each keyframe's depth as points [Hn,Wn,3] float32 m in its camera at network pixels (NaN = none; its
    encoding's transform), [0,0,3] for a keyframe without depth."""
    from mast3r_ros.localization.frontends.mast3r import network_pointmap_from_depth

    return [np.zeros((0, 0, 3), np.float32) if k.depth is None
            else network_pointmap_from_depth(k.K, k.depth, e.transform) for k, e in zip(kfs, encoded)]
