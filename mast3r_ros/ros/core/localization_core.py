"""The localization node's core, ROS-free: frames in, poses/status/TF out, plus service actions.

Used by ``localization_node`` (live, frames from a worker thread) and ``mast3r-ros replay``
(offline, deterministic). Everything in or out is numpy or plain dataclasses; message
conversion stays in the node. Poses out are of the robot base (``T_map_base``): the camera pose
from the localizer composed with base->optical from TF; map->odom uses odom->base at the
image stamp (identity when the node publishes odom->base itself, camera-only rigs); the pose never
depends on odometry: without odom->base there is a pose and no map->odom. After ``set_reference``
(map-free) frames are solved against one posed reference image instead of a map
(``localization.mapfree_reference.MapFreeReference``: ``mast3r-ros relocalize``'s solver).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mast3r_ros.datasets.calibration import RgbdCalibration
from mast3r_ros.geometry.transforms import invert
from mast3r_ros.localization.covariance import MODEL_ERROR_PNP, camera_to_base
from mast3r_ros.localization.frontends import FrontEnd, make_frontend
from mast3r_ros.localization.localizer import LocalizationResult, Localizer
from mast3r_ros.localization.mapfree_reference import MapFreeReference
from mast3r_ros.localization.state import LocState
from mast3r_ros.map import KeyframeMap
from mast3r_ros.map.cloud import map_cloud
from mast3r_ros.map.folder import copy_map
from mast3r_ros.map.format import MapError
from mast3r_ros.ros.core.frames import Frame, FrameError, check_frame
from mast3r_ros.ros.core.model_source import oracle_model
from mast3r_ros.ros.core.params import LocalizationParams


@dataclass
class Status:
    """One status report (maps to ``mast3r_ros/msg/LocalizationStatus``).

    state: tracker state INIT / TRACKING / LOST / RELOCALIZING (INIT while no map is loaded).
    error: the frame was not localized because of bad input or a failure (no TF base->camera,
        bad image); ``message`` names the problem. Otherwise ``message`` says why no pose was
        accepted, or what the node waits for (a map, resume), or notes (no odometry).
    timings: seconds per stage ('decode', 'features', 'retrieval', 'matching', 'pnp', 'total').
    latency_s: image arrival to result (queue wait + processing), seconds; the node reports
        its clock's now minus the image stamp instead.
    """
    stamp_ns: int
    frame_id: str
    state: str
    localized: bool = False
    error: bool = False
    median_reproj_px: float = float("nan")
    n_matches: int = 0
    n_inliers: int = 0
    kf_ids: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    latency_s: float = 0.0
    message: str = ""


@dataclass
class Output:
    """Result of one frame. Poses: [4,4] float64, metres; covariance [6,6] ROS order, map axes."""
    status: Status
    T_map_base: np.ndarray | None = None
    covariance: np.ndarray | None = None
    T_map_odom: np.ndarray | None = None
    T_map_cam: np.ndarray | None = None
    map_generation: int = 0   # which map produced it (load_map / set_reference count up)


@dataclass
class _Hint:
    """A prior for the next frame that reaches the localizer: a camera pose, or a base pose
    (``T_map_base``, converted with that frame's base->camera), or neither (global)."""
    T_map_cam: np.ndarray | None
    radius_m: float
    T_map_base: np.ndarray | None = None
    max_jump_deg: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    result: Output | None = None

    @property
    def is_global(self) -> bool:
        return self.T_map_cam is None and self.T_map_base is None


def frontend_for(p: LocalizationParams, calib: RgbdCalibration | None = None) -> FrontEnd:
    """The configured front-end: the mast3r one loads its checkpoint here, or takes the stand-in of
    ``oracle_dataset`` (``ros.core.model_source``; ``calib``: the node's ``rgbd_calibration``)."""
    if p.frontend == "mast3r":
        oracle = oracle_model(p, calib, p.mast3r.image_size)
        if oracle is not None:
            from mast3r_ros.localization.frontends.mast3r import Mast3rFrontEnd

            return Mast3rFrontEnd(p.mast3r, model=oracle)
        return make_frontend("mast3r", p.mast3r)
    return make_frontend("classical")


class LocalizationCore:
    """Owns the front-end, the open map and its localizer (or the map-free reference that replaces
    them, ``set_reference``); thread-safe service actions."""

    def __init__(self, params: LocalizationParams, frontend: FrontEnd | None = None):
        self.params = params
        self.calib = RgbdCalibration.load(params.rgbd_calibration) if params.rgbd_calibration else None
        self.frontend = frontend or frontend_for(params, self.calib)
        self._lock = threading.RLock()       # held while a frame is processed or a map swapped
        self._map: KeyframeMap | None = None
        self._localizer: Localizer | None = None
        self._reference: MapFreeReference | None = None  # set_reference: used instead of a map
        self._hints: list[_Hint] = []
        self._reset_pending = False
        self.map_generation = 0
        self.paused = False
        self.last_stamp_ns: int | None = None
        self.last_frame: Frame | None = None  # for set_reference('current frame')
        self.last_output: Output | None = None
        if params.map_path:
            self.load_map(params.map_path)

    # ---------------------------------------------------------------- frames
    def process(self, frame: Frame, T_base_cam: np.ndarray | None, T_odom_base: np.ndarray | None,
                decode_s: float = 0.0) -> Output:
        """Localize one frame. Never raises: problems come back in ``status.message``.

        Args:
            T_base_cam: [4,4] camera optical frame in the base frame (TF), None = lookup failed.
            T_odom_base: [4,4] base in the odom frame at the image stamp (identity for camera-only
                rigs), None = lookup failed.
        """
        with self._lock:
            self._apply_reset()
            out = self._process(frame, T_base_cam, T_odom_base)
            out.map_generation = self.map_generation
            out.status.timings.setdefault("decode", decode_s)
            out.status.latency_s = max(0.0, time.monotonic() - frame.received) if frame.received else 0.0
            self.last_output = out
            return out

    def _process(self, frame: Frame, T_base_cam, T_odom_base) -> Output:
        st = Status(frame.stamp_ns, frame.frame_id, self.state())
        if self.paused:  # not a failure: the frame is simply not used (said in status, not logged)
            st.message = "paused (call the resume service)"
            return Output(st)
        note = ""
        if self.last_stamp_ns is not None and frame.stamp_ns < self.last_stamp_ns:
            note = (f"image stamp went backwards by {(self.last_stamp_ns - frame.stamp_ns) / 1e9:.3f} s: "
                    f"tracking state reset (as the reset service)")
            self._reset_now()
        try:
            depth = check_frame(frame, self.last_stamp_ns)
        except FrameError as exc:
            return self._error(st, str(exc))
        self.last_stamp_ns = frame.stamp_ns
        self.last_frame = frame
        if self._localizer is None and self._reference is None:
            st.message = "waiting for a map (set map_path or call the load_map service)"
            return Output(st)
        if T_base_cam is None:
            return self._error(st, "no TF base->camera at the image stamp; frame skipped")
        if depth is not None and self.calib is not None:
            depth = self.calib.depth_in_colour(depth, frame.K, frame.image.shape[1::-1])
        hints = self._apply_hints(T_base_cam)
        if self._reference is not None:
            out = self._mapfree_output(st, frame, T_base_cam, T_odom_base)
        else:
            r = self._localizer.localize(frame.image, self._K(frame), depth, frame.stamp_ns * 1e-9, frame.dist)
            out = self._result_output(st, r, T_base_cam, T_odom_base)
        self._fulfil_hints(hints, out)
        if note:
            st.message = f"{note}; {st.message}" if st.message else note
        return out

    def _K(self, frame: Frame) -> np.ndarray:
        if self.params.use_camera_info_intrinsics or self._map is None:
            return frame.K
        first = self._map.keyframe_ids()[0]
        return self._map.get_keyframe(first, load_image=False, arrays=[], load_depth=False).K

    def _result_output(self, st: Status, r: LocalizationResult, T_base_cam, T_odom_base) -> Output:
        st.state, st.localized = r.state.value, r.ok
        st.n_matches, st.n_inliers, st.kf_ids = r.n_matches, r.n_inliers, list(r.kf_ids)
        st.timings, st.message, st.median_reproj_px = dict(r.timings), r.error, r.median_reproj_px
        if not r.ok:
            return Output(st)
        # the localizer's calibrated covariance model (covariance.py), published as it is
        T_map_base, cov_base = camera_to_base(r.T_map_cam, r.covariance, T_base_cam)
        T_map_odom = None if T_odom_base is None else T_map_base @ invert(T_odom_base)
        return Output(st, T_map_base, cov_base, T_map_odom, r.T_map_cam)

    def _mapfree_output(self, st: Status, frame: Frame, T_base_cam, T_odom_base) -> Output:
        """One frame solved against the map-free reference (``mast3r-ros relocalize``'s solver). The
        covariance is the PnP fixes' calibrated model-error term at the distance to the reference
        (map-free fixes have no calibration of their own)."""
        t0 = time.perf_counter()
        try:
            res = self._reference.localize(frame.image, frame.K)
        except ValueError as exc:  # e.g. a frame the model cannot take
            return self._error(st, f"map-free: {exc}")
        st.timings = {"total": time.perf_counter() - t0}
        st.state, st.n_inliers = self._reference.state, res.n_inliers
        if res.T_map_cam is None:
            st.message = f"not localized (map-free): {res.message}"
            return Output(st)
        st.localized, st.message = True, f"map-free: {res.method}, {res.n_inliers} inliers"
        ref = self._reference.T_map_ref
        cov = MODEL_ERROR_PNP.covariance(float(np.linalg.norm(res.T_map_cam[:3, 3] - ref[:3, 3])))
        T_map_base, cov_base = camera_to_base(res.T_map_cam, cov, T_base_cam)
        T_map_odom = None if T_odom_base is None else T_map_base @ invert(T_odom_base)
        return Output(st, T_map_base, cov_base, T_map_odom, res.T_map_cam)

    @staticmethod
    def _error(st: Status, message: str) -> Output:
        st.error, st.message = True, message
        return Output(st)

    def state(self) -> str:
        if self._reference is not None:
            return self._reference.state
        return self._localizer.state.state.value if self._localizer else LocState.INIT.value

    @property
    def num_keyframes(self) -> int:
        """Keyframes of the loaded map (1: the map-free reference; 0: neither)."""
        if self._reference is not None:
            return 1
        return len(self._map) if self._map is not None else 0

    # ---------------------------------------------------------------- services
    def load_map(self, path: str | Path) -> str:
        """Open a map folder and swap it in; returns '' or the reason it was refused."""
        path = Path(path)
        if not path.is_dir():
            return f"map folder {str(path)!r} does not exist"
        # Between frames: process() holds the lock for a whole frame, and the front-end's map-wide
        # state (retrieval vocabulary) is swapped by Localizer() below, so no frame may run meanwhile.
        with self._lock:
            kmap = None
            try:
                kmap = KeyframeMap.open(path)
                if not len(kmap):
                    raise ValueError("the map has no keyframes")
                loc = Localizer(kmap, self.frontend, self.params.localizer)
            except Exception as exc:  # noqa: BLE001 - a damaged map (KeyError, TypeError, ...) keeps the running one
                _close_quietly(kmap)
                self._restore_frontend()
                return f"cannot load map {str(path)!r}: {type(exc).__name__}: {exc}"
            old, self._map, self._localizer, self._reference = self._map, kmap, loc, None
            self.last_stamp_ns = None
            self.map_generation += 1
        _close_quietly(old)
        return ""

    def _restore_frontend(self) -> None:
        """Give the front-end the running map's map-wide arrays again (a failed load changed them)."""
        if self._map is not None:
            self.frontend.load_global({n: self._map.get_global(n) for n in self.frontend.global_names})

    def map_cloud(self, max_points: int = 100_000) -> tuple[np.ndarray, np.ndarray] | None:
        """The loaded map's cloud ([N,3] float32 m in the map frame, [N,3] uint8 RGB), None without a map."""
        with self._lock:
            return None if self._map is None else map_cloud(self._map, max_points)

    def save_map(self, path: str | Path, overwrite: bool = False) -> str:
        """Copy the loaded map folder to ``path`` atomically; '' or the reason."""
        with self._lock:
            if self._map is None:
                return "no map loaded" + (" (a map-free reference is not a map)" if self._reference else "")
            return copy_map_folder(self._map.path, path, overwrite)

    def set_reference(self, image: np.ndarray, K: np.ndarray, depth: np.ndarray | None,
                      T_map_cam: np.ndarray) -> str:
        """Map-free localization: from the next frame on, every frame is solved against this posed
        reference image by ``mast3r-ros relocalize``'s solver (:class:`MapFreeReference`); the loaded
        map is closed. Returns '' or the reason it was refused (the running map or reference is kept).

        Args:
            image: [H,W,3] uint8 RGB; K: [3,3]; depth: [H,W] float32 m registered to ``image``
                or None (the classical front-end needs it; MASt3R predicts the pointmap).
            T_map_cam: [4,4] reference camera (optical) to map pose.
        """
        with self._lock:  # between frames: the front-end is shared
            try:
                ref = MapFreeReference(self.frontend, image, K, depth, T_map_cam)
            except ValueError as exc:
                return f"cannot use the reference: {exc}"
            old, self._map, self._localizer, self._reference = self._map, None, None, ref
            self.last_stamp_ns = None
            self.map_generation += 1
        _close_quietly(old)
        return ""

    def current_frame(self) -> Frame | None:
        return self.last_frame

    def apply_params(self, new: LocalizationParams) -> None:
        """Take changed node parameters at run time: the acceptance gates apply from the next frame
        (the running localizer's, and the next map's); the rest is read where it is used."""
        self.params = new
        if self._localizer is not None:
            self._localizer.set_gates(new.localizer.gates)

    def reset(self) -> None:
        """Forget the tracking state and the stamp history (applied before the next frame)."""
        self._reset_pending = True

    def request_localize(self, T_map_cam_hint: np.ndarray | None, radius_m: float, *,
                         T_map_base_hint: np.ndarray | None = None, max_jump_deg: float | None = None) -> _Hint:
        """Localize the next frame that reaches the localizer near a prior, or globally.

        Args:
            T_map_cam_hint: [4,4] camera (optical) pose prior, or None.
            T_map_base_hint: [4,4] base pose prior (e.g. /initialpose), converted with that frame's
                base->camera TF; used when ``T_map_cam_hint`` is None. Both None = global.
            radius_m: keyframes farther than this from the prior are not retrieved, and the
                pose may differ from it by up to this much (m).
            max_jump_deg: rotation allowed from the prior (deg); None = the node's max_jump_deg.
        Returns a ticket whose ``done`` event is set with ``result`` after that frame.
        """
        hint = _Hint(T_map_cam_hint, float(radius_m), T_map_base_hint, max_jump_deg)
        with self._lock:
            self._hints.append(hint)
        return hint

    def _apply_reset(self) -> None:
        if self._reset_pending:
            self._reset_pending = False
            self._reset_now()

    def _reset_now(self) -> None:
        self.last_stamp_ns = None
        if self._localizer is not None:
            self._localizer.state.reset()
        if self._reference is not None:
            self._reference.state = LocState.INIT.value

    def _apply_hints(self, T_base_cam: np.ndarray) -> list[_Hint]:
        """Take the pending hints; the newest seeds this frame. Returns them for fulfilment."""
        hints, self._hints = self._hints, []
        if hints and self._localizer is not None:  # map-free: every frame is solved alone, no prior
            h = hints[-1]
            T_map_cam = h.T_map_cam if h.T_map_cam is not None else \
                (None if h.T_map_base is None else h.T_map_base @ T_base_cam)
            self._localizer.seed_pose_prior(T_map_cam, h.radius_m, h.max_jump_deg)
        return hints

    def _fulfil_hints(self, hints: list[_Hint], out: Output) -> None:
        if not hints:
            return
        if self._localizer is not None:
            self._localizer.clear_pose_prior()
        for h in hints:
            h.result = out
            h.done.set()

    def close(self) -> None:
        with self._lock:
            if self._map is not None:
                self._map.close()
            self._map = self._localizer = self._reference = None


def _close_quietly(kmap: KeyframeMap | None) -> None:
    if kmap is not None:
        try:
            kmap.close()
        except Exception:  # noqa: BLE001 - closing a damaged map must not hide why it was refused
            pass


def copy_map_folder(src: str | Path, dst: str | Path, overwrite: bool = False) -> str:
    """Copy a map folder to ``dst`` through the map store's ``copy_map`` (temp copy + rename, never into a
    map, replaces only a folder of the store's own files); '' or the reason it was refused."""
    try:
        copy_map(Path(src), Path(dst), overwrite)
    except (MapError, OSError) as exc:
        return f"cannot save map to {str(dst)!r}: {exc}"
    return ""
