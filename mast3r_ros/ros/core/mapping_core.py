"""The mapping node's core, ROS-free: odometry-gated keyframes into a mapping engine.

With ``frontend: mast3r`` (images, with depth as a metric prior when ``subscribe_depth``) the engine is
:class:`mast3r_ros.mapping.monocular_stream.MonocularStream` (keyframes buffered, mapped by MASt3R in
the background every ``mono.pass_every_n_keyframes`` keyframes and when ``optimize`` or ``save_map`` is
called; the model is ``mast3r.checkpoint`` or the ``oracle_dataset``
stand-in; odometry optional: without it keyframes follow ``mono.kf_min_interval_s``). Otherwise
(classical) the engine is :class:`mast3r_ros.mapping.incremental.IncrementalMapper`: it tracks each frame
visually against the last keyframe (SIFT + depth, 3D-3D RANSAC), pairs new keyframes with their
neighbours and re-optimises in the background (sparse global alignment with warm start: windowed
passes every ``mapper.optimize_every_n_keyframes`` keyframes, a global pass every
``mapper.global_every``); memory is bounded by ``mapper.max_keyframes`` (the most redundant old
keyframe is dropped). The ``optimize`` service runs a global pass now and waits for it.

What this core adds:

* gating on odometry (``T_odom_cam`` from TF at the image stamp, when the rig has odometry):
  frames that moved less than ``mapper.kf_min_translation`` / ``mapper.kf_min_rotation_deg`` since the last
  keyframe are skipped before any feature extraction (cheap under a 30 Hz stream); the others go
  to the mapper with the odometry pose as its prior (used when visual tracking fails), and the
  mapper's own gating (visual motion, overlap) decides. Without odometry (camera-only rig,
  ``odom_is_real=False``) every frame goes to the mapper;
* ``T_map_odom`` from the newest keyframe: its optimised ``T_map_cam`` composed with the odometry
  pose recorded with it (the map frame is the odom frame at the first keyframe: map->odom starts
  as the identity);
* ``load_map``: continue from a saved map (classical: its keyframes, poses and retrieval vocabulary;
  monocular: its keyframes' images, mapped again with the new ones in the saved map's frame); a bad
  folder is refused with the reason and the running map is kept;
* ``save_map``: refusals with a reason, and atomicity: the mapper writes the map (format the
  localization node loads) into a temp folder, renamed into place, so ``dst`` is never
  half-written;
* the published cloud, subsampled to ``cloud_max_points``.

Thread safety: ``process`` runs on the node's frame worker; services call the rest from other
threads. A global pass runs in the caller's thread without holding the core lock, so frames keep
flowing while ``optimize`` works.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mast3r_ros.datasets.calibration import RgbdCalibration
from mast3r_ros.geometry.transforms import invert, pose_errors
from mast3r_ros.mapping.incremental import IncrementalMapper
from mast3r_ros.mapping.incremental_config import IncrementalConfig
from mast3r_ros.mapping.monocular_stream import HashedModel, MonocularStream
from mast3r_ros.mapping.types import MappingError
from mast3r_ros.ros.core.frames import Frame, FrameError, check_frame_content, check_stamp_order
from mast3r_ros.ros.core.localization_core import Status, copy_map_folder
from mast3r_ros.ros.core.model_source import oracle_model
from mast3r_ros.ros.core.params import MappingParams


@dataclass
class MappingOutput:
    """One frame's result. ``T_map_odom`` [4,4] once the map has a keyframe (else None)."""
    status: Status
    keyframe_added: bool = False
    T_map_odom: np.ndarray | None = None


class MappingCore:
    """See the module docstring. ``background=False`` keeps every pass in the caller (tests).
    ``mapper_factory`` builds the engine from its configuration (a subclass of IncrementalMapper lets
    a test hold a pass at a known point); ``frontend: mast3r`` builds the MASt3R engine instead
    (``model``: the MASt3R model or stand-in to use, else the parameters' own)."""

    def __init__(self, params: MappingParams, background: bool = True,
                 mapper_factory: Callable[[IncrementalConfig], IncrementalMapper] = IncrementalMapper,
                 model=None):
        self.params = params
        self.background = background
        self.calib = RgbdCalibration.load(params.rgbd_calibration) if params.rgbd_calibration else None
        # the MASt3R engine: depth optional (a prior), odometry optional (gating only when the rig has it)
        self.mast3r_engine = params.frontend == "mast3r"
        if self.mast3r_engine:
            model = model or _mast3r_model(params, self.calib)
            extra = {"rgbd_calibration": self.calib.to_dict()} if self.calib else {}

            def mapper_factory(_: IncrementalConfig) -> MonocularStream:
                return MonocularStream(params.mono, model, params.mast3r.image_size, extra)
        self._mapper_factory = mapper_factory
        self._lock = threading.RLock()
        self._work = Path(tempfile.mkdtemp(prefix="mast3r_mapping_"))
        self.paused = False
        self._closing = threading.Event()
        self.mapper: IncrementalMapper | None = None
        self._new_mapper()

    def _new_mapper(self) -> None:
        self.mapper = self._mapper_factory(self.params.mapper)
        if self.background:
            self.mapper.start()
        # what the mapper does not know: the odometry pose of each keyframe this core added
        # (keyframes of a loaded map have none)
        self._kf_odom: dict[int, np.ndarray] = {}
        self._last_kf_id: int | None = None
        self.last_stamp_ns: int | None = None
        self.n_optimize_calls = 0

    @property
    def num_keyframes(self) -> int:
        return len(self.mapper)

    @property
    def passes(self) -> int:
        """Optimisation results merged into the map so far (background and ``optimize``)."""
        return self.mapper.snapshot().version

    @property
    def last_pass_error(self) -> str:
        return self.mapper.last_error or ""

    # ---------------------------------------------------------------- frames
    @staticmethod
    def check(frame: Frame) -> Frame:
        """The frame with its depth cleaned (NaN, inf, <= 0 -> 0 = no measurement) after the content
        checks (image, camera_info, depth: :func:`check_frame_content`); raises :class:`FrameError`
        naming the problem. The stamp order is checked by :meth:`process`. The node checks each frame
        here as soon as it is decoded (a bad frame is named even while odometry is awaited) and hands
        the result to ``process(..., checked=True)``."""
        return replace(frame, depth=check_frame_content(frame))

    def process(self, frame: Frame, T_odom_cam: np.ndarray | None,
                odom_is_real: bool = True, checked: bool = False) -> MappingOutput:
        """Gate and (maybe) add one RGB-D frame. Never raises; problems come back in the status.

        ``T_odom_cam`` [4,4]: camera pose in the odom frame at the image stamp (None: TF lookup
        failed). ``odom_is_real=False``: the odom frame is the node's own identity odom->base
        (camera-only rig), so it neither gates nor serves as the tracking prior. ``checked``: the
        frame comes from :meth:`check` (its content is not checked again).
        """
        with self._lock:
            st = Status(frame.stamp_ns, frame.frame_id, "TRACKING" if len(self.mapper) else "INIT")
            if self.paused:
                return self._error(st, "paused (call the resume service)")
            try:
                check_stamp_order(frame.stamp_ns, self.last_stamp_ns)
                depth = frame.depth if checked else check_frame_content(frame)
                if depth is None and not self.mast3r_engine:
                    raise FrameError("no depth image: frontend 'classical' maps with depth")
            except FrameError as exc:
                return self._error(st, str(exc))
            self.last_stamp_ns = frame.stamp_ns
            if T_odom_cam is None and not self.mast3r_engine:
                return self._error(st, "no TF odom->camera at the image stamp (needed for map->odom and "
                                       "keyframe gating)")
            odom_is_real = odom_is_real and T_odom_cam is not None
            last_kf_odom = self._kf_odom.get(self._last_kf_id)
            if odom_is_real and last_kf_odom is not None:
                dt, dr = pose_errors(T_odom_cam, last_kf_odom)
                if dt < self.params.mapper.kf_min_translation and dr < self.params.mapper.kf_min_rotation_deg:
                    st.message = f"not a keyframe (odometry: moved {dt:.2f} m, turned {dr:.1f} deg)"
                    return MappingOutput(st, False, self.T_map_odom())
            if depth is not None:
                if self.calib is not None:
                    depth = self.calib.depth_in_colour(depth, frame.K, frame.image.shape[1::-1])
                depth = np.asarray(depth, np.float32)
            K = np.asarray(frame.K, np.float64)
            # the map frame is the odom frame at the first keyframe (map->odom starts as the identity),
            # also when the odom frame is the node's own (then the base frame at that keyframe)
            r = self.mapper.add_frame(frame.image, K, depth, stamp=frame.stamp_ns * 1e-9,
                                      T_odom_cam=T_odom_cam if odom_is_real else None, T_map_first=T_odom_cam)
            st.n_inliers = r.n_inliers
            if self.mast3r_engine:
                return self._buffered(st, r, T_odom_cam)
            if r.T_map_cam is None:
                st.state = "LOST" if len(self.mapper) else "INIT"
                st.message = f"not tracked: {r.reason}"
                return MappingOutput(st, False, self.T_map_odom())
            if not r.is_keyframe:
                st.message = f"not a keyframe ({r.reason}, overlap {r.overlap:.2f})"
                return MappingOutput(st, False, self.T_map_odom())
            self._kf_odom[r.keyframe_id] = np.array(T_odom_cam, np.float64)
            self._last_kf_id = r.keyframe_id
            self._prune()
            st.state, st.kf_ids = "TRACKING", [r.keyframe_id]
            st.message = (f"keyframe {r.keyframe_id} ({r.reason}{', relocalised' if r.relocalized else ''}); "
                          f"{self.num_keyframes} keyframes, {self.passes} optimisation passes")
            return MappingOutput(st, True, self.T_map_odom())

    def _buffered(self, st: Status, r, T_odom_cam: np.ndarray | None) -> MappingOutput:
        """The MASt3R engine's answer: a keyframe is buffered (posed at the next pass) or not."""
        if not r.is_keyframe:
            st.message = f"not a keyframe ({r.reason})"
            return MappingOutput(st, False, self.T_map_odom())
        if T_odom_cam is not None:
            self._kf_odom[r.keyframe_id] = np.array(T_odom_cam, np.float64)
        self._last_kf_id = r.keyframe_id
        st.state, st.kf_ids = "TRACKING", [r.keyframe_id]
        every = self.params.mono.pass_every_n_keyframes
        when = f"every {every} keyframes and at optimize / save_map" if every else "at optimize or save_map"
        st.message = (f"keyframe {r.keyframe_id} ({r.reason}); {self.num_keyframes} keyframes, mapped by "
                      f"MASt3R {when}; {self.passes} mapping passes")
        return MappingOutput(st, True, self.T_map_odom())

    @staticmethod
    def _error(st: Status, message: str) -> MappingOutput:
        st.error, st.message = True, message
        return MappingOutput(st)

    def _prune(self) -> None:
        """Forget keyframes the mapper dropped (``max_keyframes``)."""
        keep = set(self.mapper.snapshot().ids)
        for k in [k for k in self._kf_odom if k not in keep]:
            del self._kf_odom[k]

    # ---------------------------------------------------------------- map products
    def T_map_odom(self) -> np.ndarray | None:
        """[4,4] map->odom from the newest keyframe (its current, optimised pose), or None."""
        with self._lock:
            if self._last_kf_id is None:
                return None
            snap = self.mapper.snapshot()
            ids = [k for k in snap.ids if k in self._kf_odom]
            if not ids:
                return None
            k = self._last_kf_id if self._last_kf_id in ids else ids[-1]
            return snap.T_map_cam[snap.ids.index(k)] @ invert(self._kf_odom[k])

    def load_map(self, path: str | Path) -> str:
        """Continue mapping from the saved map at ``path`` (replaces the current map); '' or the
        reason it was refused (the current map is kept then). The map frame becomes the loaded
        map's; map->odom is known again once a new keyframe is added with odometry."""
        path = Path(path)
        if not (path / "map.yaml").is_file():
            return f"{str(path)!r} is not a map folder (no map.yaml)"
        with self._lock:
            try:
                self.mapper.load(path)
            except MappingError as exc:
                return str(exc)
            self._kf_odom, self._last_kf_id, self.last_stamp_ns = {}, None, None
        return ""

    def optimize(self) -> tuple[str, dict]:
        """A global pass now (waits); ('' or the reason it did not run, summary)."""
        mapper = self.mapper
        n = len(mapper)
        if n < 2:
            return f"need at least 2 keyframes to optimise, have {n}", {}
        before = mapper.snapshot().version
        mapper.last_error = None
        # the pass runs on a daemon thread: a shutdown (close) stops waiting for it, and the
        # process can exit without finishing a long global pass
        done: dict = {}
        t = threading.Thread(target=lambda: done.setdefault("ok", mapper.optimize("global", wait=True)),
                             name="mast3r-optimize", daemon=True)
        t.start()
        while t.is_alive() and not self._closing.is_set():
            t.join(0.1)
        if "ok" not in done:
            return "shutting down", {}
        if not done["ok"]:
            return f"global pass failed: {mapper.last_error or 'no pairs between the keyframes'}", {}
        self.n_optimize_calls += 1
        what = ("global pass" if not self.mast3r_engine else "MASt3R mapping pass" +
                (" (depth prior)" if self.params.subscribe_depth else " (monocular)"))
        return "", {"n_keyframes": n, "passes": mapper.snapshot().version, "passes_before": before, "what": what}

    def pass_summary(self) -> dict:
        """The MASt3R engine's last pass (keyframes, pairs decoded / total, pair check, focal, ``pass_s``);
        {} before one, after a load_map, and for the classical engine (its passes run every keyframe)."""
        return self.mapper.pass_summary() if self.mast3r_engine else {}

    def keyframe_poses(self) -> tuple[np.ndarray, np.ndarray]:
        """([N,4,4] T_map_cam, [N] int64 stamps ns) in keyframe order."""
        snap = self.mapper.snapshot()
        stamps = np.array([int(round(s * 1e9)) for s in snap.stamps], dtype=np.int64)
        return snap.T_map_cam, stamps

    def cloud(self, max_points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Coloured cloud in the map frame: ([N,3] float32 metres, [N,3] uint8 RGB), N <= max_points."""
        max_points = max_points or self.params.cloud_max_points
        snap = self.mapper.snapshot(cloud=True, max_points=max_points)
        xyz, rgb = snap.cloud_xyz, snap.cloud_rgb
        if len(xyz) > max_points:
            pick = np.linspace(0, len(xyz) - 1, max_points).astype(np.int64)
            xyz, rgb = xyz[pick], rgb[pick]
        return xyz, rgb

    def save_map(self, dst: str | Path, overwrite: bool = False) -> str:
        """Write the map to ``dst``; '' or the reason it was refused (nothing written then).

        The mapper writes the map store format (keyframes with images, depth, SIFT arrays and
        current poses, retrieval index, ``trajectory_tum.txt``, ``cloud.ply``) into a temp folder,
        which then replaces ``dst`` by rename.
        """
        dst = Path(dst)
        if dst.exists() and not (overwrite and (dst / "map.yaml").is_file()):
            return f"{str(dst)!r} already exists" + (" and is not a map folder" if overwrite
                                                     else "; set overwrite or choose a new folder")
        if not dst.parent.is_dir():
            return f"parent folder of {str(dst)!r} does not exist"
        with self._lock:
            if not len(self.mapper):
                return "no keyframes yet"
            tmp = Path(tempfile.mkdtemp(prefix="save_", dir=self._work)) / "map"
            try:
                self._write_map(tmp)
                return copy_map_folder(tmp, dst, overwrite)
            except (OSError, MappingError) as exc:
                return f"cannot write the map: {exc}"
            finally:
                shutil.rmtree(tmp.parent, ignore_errors=True)

    def _write_map(self, path: Path) -> None:
        self.mapper.save(path)

    def reset(self) -> None:
        with self._lock:
            self._stop_mapper()
            self._new_mapper()

    def _stop_mapper(self, timeout: float = 2.0) -> None:
        """Stop the background worker; a pass in flight is left to finish on its daemon thread."""
        t = threading.Thread(target=self.mapper.stop, daemon=True)
        t.start()
        t.join(timeout)

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            self._stop_mapper()
            self._kf_odom = {}
            shutil.rmtree(self._work, ignore_errors=True)


def _mast3r_model(params: MappingParams, calib: RgbdCalibration | None):
    """The MASt3R model of the parameters: the ``oracle_dataset`` stand-in (its geometry seen from
    ``rgbd_calibration``'s colour camera, recorded in the saved map so that the localization node
    builds the same stand-in) or ``mast3r.checkpoint`` with its file's hash (as the localization node's)."""
    oracle = oracle_model(params, calib, params.mast3r.image_size)
    if oracle is not None:
        return oracle
    from mast3r_ros.localization.frontends.mast3r import Mast3rFrontEnd

    frontend = Mast3rFrontEnd(params.mast3r)
    return HashedModel(frontend.model, frontend.checkpoint_sha256)
