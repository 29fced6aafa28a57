"""The mapping node's core, ROS-free: gated keyframes into a map folder, optimisation, cloud.

Keyframes are gated on odometry (``T_odom_cam`` from TF at the image stamp): a frame becomes a
keyframe after ``kf_min_translation`` metres or ``kf_min_rotation_deg`` since the last one. Until
``optimize`` runs, keyframe poses are the odometry poses (map frame = odom frame). ``optimize``
runs the mapping package's global alignment (:func:`mast3r_ros.mapping.pipeline.optimize_map`),
which estimates the poses from the images and depth alone (it does not read the stored poses);
afterwards the map frame is the first keyframe's camera and map->odom follows from the last
keyframe. The map is built in a working folder and copied atomically by ``save_map``.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mast3r_ros.geometry.camera import depth_to_pointmap
from mast3r_ros.geometry.transforms import invert, pose_errors, transform_points
from mast3r_ros.localization.frontend import make_frontend
from mast3r_ros.localization.localizer import RETRIEVAL_DESC, RETRIEVAL_IDS
from mast3r_ros.localization.map_store import Keyframe, KeyframeMap, MapMeta
from mast3r_ros.localization.rgbd import RgbdCalibration
from mast3r_ros.ros.frames import Frame, FrameError, check_frame
from mast3r_ros.ros.localization_core import Status, copy_map_folder
from mast3r_ros.ros.params import MappingParams

OPT_DEPTH = "opt_depth"  # written by mapping.pipeline.optimize_map


@dataclass
class MappingOutput:
    """One frame's result. ``T_map_odom`` [4,4] once the map frame is known (else None)."""
    status: Status
    keyframe_added: bool = False
    T_map_odom: np.ndarray | None = None


class MappingCore:
    """Owns the working map folder; thread-safe (frames on a worker, services elsewhere)."""

    def __init__(self, params: MappingParams):
        if params.frontend != "classical":
            raise ValueError("the mapping node supports the classical RGB-D front-end (frontend: classical)")
        if not params.subscribe_depth:
            raise ValueError("the mapping node needs depth (subscribe_depth: true)")
        self.params = params
        self.frontend = make_frontend("classical")
        self.calib = RgbdCalibration.load(params.rgbd_calibration) if params.rgbd_calibration else None
        self._lock = threading.RLock()
        self._work = Path(tempfile.mkdtemp(prefix="mast3r_mapping_"))
        self.paused = False
        self.optimized = False
        self._reset_map()

    def _reset_map(self) -> None:
        shutil.rmtree(self._work / "map", ignore_errors=True)
        self.map: KeyframeMap | None = None
        self._arrays: list[dict] = []
        self._last_kf_T: np.ndarray | None = None
        self._odom_of_kf: dict[int, np.ndarray] = {}
        self.last_stamp_ns: int | None = None
        self.optimized = False

    @property
    def path(self) -> Path:
        return self._work / "map"

    @property
    def num_keyframes(self) -> int:
        return len(self.map) if self.map is not None else 0

    # ---------------------------------------------------------------- frames
    def process(self, frame: Frame, T_odom_cam: np.ndarray | None) -> MappingOutput:
        """Gate and (maybe) add one RGB-D frame. Never raises; problems come back in the status."""
        with self._lock:
            st = Status(frame.stamp_ns, frame.frame_id, "TRACKING" if self.map else "INIT")
            if self.paused:
                return self._error(st, "paused (call the resume service)")
            try:
                depth = check_frame(frame, self.last_stamp_ns)
                if depth is None:
                    raise FrameError("no depth image: the mapping node needs depth")
            except FrameError as exc:
                return self._error(st, str(exc))
            self.last_stamp_ns = frame.stamp_ns
            if T_odom_cam is None:
                return self._error(st, "no TF odom->camera at the image stamp; keyframe gating needs "
                                       "odometry")
            if not self._is_keyframe(T_odom_cam):
                st.message = "not a keyframe (moved too little)"
                return MappingOutput(st, False, self.T_map_odom())
            if self.num_keyframes >= self.params.max_keyframes:
                st.message = f"max_keyframes ({self.params.max_keyframes}) reached"
                return MappingOutput(st, False, self.T_map_odom())
            if self.calib is not None:
                depth = self.calib.depth_in_colour(depth, frame.K, frame.image.shape[1::-1])
            self._add(frame, depth, T_odom_cam)
            st.state, st.kf_ids = "TRACKING", [self.num_keyframes - 1]
            return MappingOutput(st, True, self.T_map_odom())

    @staticmethod
    def _error(st: Status, message: str) -> MappingOutput:
        st.error, st.message = True, message
        return MappingOutput(st)

    def _is_keyframe(self, T_odom_cam: np.ndarray) -> bool:
        if self._last_kf_T is None:
            return True
        dt, dr = pose_errors(T_odom_cam, self._last_kf_T)
        return dt >= self.params.kf_min_translation or dr >= self.params.kf_min_rotation_deg

    def _add(self, frame: Frame, depth: np.ndarray, T_odom_cam: np.ndarray) -> None:
        if self.map is None:
            meta = MapMeta(frontend=self.frontend.name, image_size=frame.image.shape[1::-1],
                           extra={"source": "mapping_node"})
            self.map = KeyframeMap.create(self.path, meta)
        arrays = self.frontend.prepare_keyframe(frame.image, frame.K, depth)
        T_map_cam = T_odom_cam if not self.optimized else self.T_map_odom() @ T_odom_cam
        kf_id = self.map.add_keyframe(Keyframe(None, self.num_keyframes, frame.stamp_ns * 1e-9, frame.image,
                                               frame.K, T_map_cam, depth, arrays))
        self._arrays.append(arrays)
        self._odom_of_kf[kf_id] = T_odom_cam
        self._last_kf_T = T_odom_cam

    # ---------------------------------------------------------------- map products
    def T_map_odom(self) -> np.ndarray | None:
        """[4,4] map->odom: identity before optimisation (map = odom), else from the last keyframe."""
        if self.map is None or not self._odom_of_kf:
            return None
        if not self.optimized:
            return np.eye(4)
        last = max(self._odom_of_kf)
        return self.map.poses()[last] @ invert(self._odom_of_kf[last])

    def _index(self) -> None:
        """Retrieval vocabulary + index over the current keyframes (needed to localize in the map)."""
        for name, arr in self.frontend.fit_global(self._arrays).items():
            self.map.put_global(name, arr)
        desc = np.stack([self.frontend.keyframe_descriptor(a) for a in self._arrays]).astype(np.float32)
        self.map.put_global(RETRIEVAL_IDS, np.asarray(self.map.keyframe_ids(), dtype=np.int64))
        self.map.put_global(RETRIEVAL_DESC, desc)
        self.map.write_trajectory_tum()

    def optimize(self) -> tuple[str, dict]:
        """Global alignment of all keyframes now; ('' or reason, summary)."""
        with self._lock:
            if self.num_keyframes < 2:
                return f"need at least 2 keyframes to optimise, have {self.num_keyframes}", {}
            try:
                from mast3r_ros.mapping.pipeline import optimize_map
            except ImportError as exc:
                return f"the map optimiser is not available: {exc}", {}
            self._index()
            try:
                summary = optimize_map(self.path)
            except ValueError as exc:  # MappingError names the problem
                return f"optimisation failed: {exc}", {}
            self.optimized = True
            return "", summary

    def save_map(self, dst: str | Path, overwrite: bool = False) -> str:
        with self._lock:
            if self.map is None:
                return "no keyframes yet"
            self._index()
            return copy_map_folder(self.path, dst, overwrite)

    def keyframe_poses(self) -> tuple[np.ndarray, np.ndarray]:
        """([N,4,4] T_map_cam, [N] int64 stamps ns) in keyframe order."""
        with self._lock:
            if self.map is None:
                return np.zeros((0, 4, 4)), np.zeros(0, np.int64)
            poses, stamps = self.map.poses(), self.map.timestamps()
            ids = self.map.keyframe_ids()
            return (np.stack([poses[i] for i in ids]),
                    np.array([int(round(stamps[i] * 1e9)) for i in ids], dtype=np.int64))

    def cloud(self, max_points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Coloured cloud in the map frame: ([N,3] float32 metres, [N,3] uint8 RGB), subsampled."""
        max_points = max_points or self.params.cloud_max_points
        with self._lock:
            if self.map is None:
                return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
            ids, poses = self.map.keyframe_ids(), self.map.poses()
            per_kf = max(1, max_points // len(ids))
            xyz, rgb = [], []
            for i in ids:
                names = [OPT_DEPTH] if OPT_DEPTH in self.map.array_names(i) else []
                kf = self.map.get_keyframe(i, arrays=names)
                depth = kf.arrays.get(OPT_DEPTH, kf.depth)
                pts = depth_to_pointmap(kf.K, depth).reshape(-1, 3)
                ok = np.flatnonzero(pts[:, 2] > 0)
                pick = ok[:: max(1, len(ok) // per_kf)][:per_kf]
                xyz.append(transform_points(poses[i], pts[pick]).astype(np.float32))
                rgb.append(kf.image.reshape(-1, 3)[pick])
            return np.concatenate(xyz), np.concatenate(rgb)

    def reset(self) -> None:
        with self._lock:
            if self.map is not None:
                self.map.close()
            self._reset_map()

    def close(self) -> None:
        with self._lock:
            if self.map is not None:
                self.map.close()
            self.map = None
            shutil.rmtree(self._work, ignore_errors=True)
