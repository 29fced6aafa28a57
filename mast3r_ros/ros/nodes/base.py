"""The body both nodes share (:class:`NodeBody`): parameters and the ROS-free core, camera input,
TF in and out, the ``status`` topic with its dropped-frame count, diagnostics, the ``load_map``,
``save_map``, ``reset``, ``pause`` and ``resume`` services, and ``main``.

A node names its parameter dataclass, core and messages (class attributes) and fills the hooks:
``_open_outputs`` (its publishers and per-activation state, before any input can arrive),
``_open_inputs`` (subscriptions and timers besides the camera and TF), ``_own_services`` (its own
services), ``_ready`` (once active), ``_publish_locked`` (one output), ``_report_bad`` (an error
status for a frame), ``_default_map_dir`` (save_map's folder when the request names none),
``_on_frame``, ``_on_stamp_reset``, ``_diag_values``, ``_diag_summary`` and ``_apply_params``.
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from std_srvs.srv import Trigger

from mast3r_ros.msg import LocalizationStatus
from mast3r_ros.ros.compat.diagnostics import Diagnostics
from mast3r_ros.ros.compat.tf_io import TfIO
from mast3r_ros.ros.compat.tf_tree import OdomSource
from mast3r_ros.ros.core.localization_core import Output
from mast3r_ros.ros.core.params import ParamError
from mast3r_ros.ros.nodes.managed import Stages
from mast3r_ros.ros.nodes.node_io import RELIABLE, CameraInput, guarded, stamp_latency_s
from mast3r_ros.ros.nodes.node_params import declare_and_read, install_validator, renamed_overrides
from mast3r_ros.ros.nodes.outputs import status_message, tf_transforms
from mast3r_ros.ros.nodes.spin import run_node
from mast3r_ros.srv import LoadMap, SaveMap


class NodeBody(Stages):
    """What the localization and mapping bodies share; run plain or managed (see ``managed``)."""

    PARAMS: type             # the node's parameter dataclass (ros.core.params)
    CORE: type               # its ROS-free core, built from those parameters
    DIAG_NAME: str           # the node's /diagnostics status: "<node>: DIAG_NAME"
    RESET_MESSAGE: str       # the reset service's answer
    LOADED_MESSAGE: str      # load_map's answer
    LOAD_FAILED_NOTE = ""    # said after a failed load_map's reason
    NO_SAVE_TARGET = "no map_dir given"

    def _setup(self) -> None:
        self.params = None                         # None while unconfigured
        self._renamed: list[str] = []
        self.core = None
        self.diag: Diagnostics | None = None
        self.camera: CameraInput | None = None
        self._active = False                       # outputs are published only while True
        self._pub_lock = threading.Lock()          # worker thread and sync rejections both publish
        self._T_map_odom: np.ndarray | None = None
        install_validator(self, lambda: self.params, self._apply_params)

    def _configure(self) -> None:
        """Parameters and the core; raises on a bad parameter (or map)."""
        self.params = declare_and_read(self, self.PARAMS)
        self._renamed = renamed_overrides(self)     # old names given at start: logged, in the diagnostics
        self.core = self.CORE(self.params)

    def _release(self) -> None:
        if self.core is not None:
            self.core.close()
        self.core = self.params = None

    def _activate(self) -> None:
        """Publishers, subscriptions, TF, timers and services, in the order the executor serves them."""
        self.service_group = ReentrantCallbackGroup()
        self.tf_group = MutuallyExclusiveCallbackGroup()
        self.status_pub = self.create_publisher(LocalizationStatus, "status", RELIABLE)
        self.tf = TfIO(self, self.tf_group, guarded)
        self.odom = OdomSource(self.params.publish_odom_tf)
        self._T_map_odom = None
        self._dropped_reported = 0
        self._open_outputs()
        self.diag = Diagnostics(self, self.DIAG_NAME, self._diag_values, self.tf_group, guarded,
                                lambda: (DiagnosticStatus.WARN, "; ".join(self._renamed)) if self._renamed
                                else self._diag_summary())
        self.camera = CameraInput(self, self.params, self._on_frame, self._on_reject,
                                  MutuallyExclusiveCallbackGroup(), on_reset=self._on_stamp_reset)
        self.create_timer(1.0 / self.params.tf_publish_rate, guarded(self, "TF timer", self._publish_tf),
                          callback_group=self.tf_group)
        self._open_inputs()
        for typ, name, fn in (*self._own_services(), (LoadMap, "load_map", self._srv_load_map),
                              (SaveMap, "save_map", self._srv_save_map), (Trigger, "reset", self._srv_reset),
                              (Trigger, "pause", lambda q, r: self._srv_pause(r, True)),
                              (Trigger, "resume", lambda q, r: self._srv_pause(r, False))):
            self.create_service(typ, name, guarded(self, f"service {name}", fn), callback_group=self.service_group)
        self._active = True
        self._ready()

    def _deactivate(self) -> None:
        """No output from here on (a frame in flight is dropped); the worker stops; no map->odom."""
        with self._pub_lock:
            self._active = False
            self._T_map_odom = None
        if self.camera is not None:
            self.camera.stop()
        self.camera = self.diag = None

    def _open_outputs(self) -> None:
        """The node's own publishers and per-activation state."""

    def _open_inputs(self) -> None:
        """The node's own subscriptions and timers."""

    def _own_services(self) -> tuple:
        """(type, name, callback) of the node's own services."""
        return ()

    # ---------------------------------------------------------------- frames and outputs
    def _tf_at(self, frame_id: str, stamp_ns: int, camera_wait_s: float):
        """(T_base_cam, why not, T_odom_base, odometry note) at the image stamp, [4,4] or None;
        T_odom_base under the ``publish_odom_tf`` policy (tf_tree.OdomSource); a camera-only rig's
        own identity odometry is said in the log."""
        p = self.params
        T_base_cam, why = self.tf.lookup(p.base_frame, frame_id, stamp_ns, camera_wait_s)
        T_odom_base, note = self.odom.T_odom_base(
            lambda: self.tf.lookup(p.odom_frame, p.base_frame, stamp_ns, p.tf_timeout), time.monotonic(),
            lambda: self.tf.lookup(p.odom_frame, p.base_frame, 0, 0.0)[0] is not None)
        if note and self.odom.identity:
            self.get_logger().warn(note)
        return T_base_cam, why, T_odom_base, note

    def _on_reject(self, stamp_ns: int, reason: str) -> None:
        self._report_bad(stamp_ns, "", f"unsynchronised input: {reason}")

    def _publish(self, out) -> None:
        with self._pub_lock:
            if self._active:
                self._publish_locked(out)

    def _latency_s(self, stamp_ns: int) -> float:
        return stamp_latency_s(self.get_clock().now().nanoseconds, stamp_ns)

    def _status_msg(self, out: Output, latency: float) -> LocalizationStatus:
        """The status of ``out``; ``frames_dropped``: frames the worker dropped since the last status."""
        dropped = self.camera.worker.queue.dropped
        new, self._dropped_reported = dropped - self._dropped_reported, dropped
        return status_message(out, self.params.map_frame, latency, new)

    def _publish_tf(self) -> None:
        p = self.params
        T_map_odom = self._T_map_odom
        if T_map_odom is None:
            return  # no TF before the first fix / keyframe (AMCL), nor after a map change
        stamp = self.get_clock().now().nanoseconds + int(p.transform_tolerance * 1e9)
        msgs = tf_transforms(p, T_map_odom, stamp, self.odom.identity)
        if msgs:
            self.tf.send(msgs)

    def _input_warning(self) -> tuple[bytes, str] | None:
        """WARN while paused or without input for ``no_input_warn_s``; else None."""
        if self.core.paused:
            return DiagnosticStatus.WARN, "paused (call the resume service)"
        silent = self.camera.silent_s()
        if silent > self.params.no_input_warn_s:
            return DiagnosticStatus.WARN, (f"no input for {silent:.0f} s on "
                                           f"{', '.join(self.camera.topic_names.values())}")
        return None

    def _without_odometry(self) -> bool:
        return self.odom.last_missing or (self.odom.identity and self.odom.mode == "auto")

    # ---------------------------------------------------------------- services
    def _fail(self, resp, message: str):
        resp.success, resp.message = False, message
        self.diag.error(message)
        return resp

    def _srv_load_map(self, req, resp):
        why = self.core.load_map(req.map_dir) if req.map_dir else "no map_dir given"
        if why:
            return self._fail(resp, f"load_map: {why}{self.LOAD_FAILED_NOTE}")
        self._map_changed()
        resp.success, resp.message, resp.num_keyframes = True, self.LOADED_MESSAGE, self.core.num_keyframes
        return resp

    def _map_changed(self) -> None:
        """The old map->odom is wrong in the new map: none until it is known again; fresh stamp check."""
        with self._pub_lock:
            self._T_map_odom = None
        self.camera.reset()

    def _srv_save_map(self, req, resp):
        target = req.map_dir or self._default_map_dir()
        why = self.core.save_map(target, req.overwrite) if target else self.NO_SAVE_TARGET
        if why:
            return self._fail(resp, f"save_map: {why}")
        resp.success, resp.message = True, "map saved"
        resp.map_dir, resp.num_keyframes = str(target), self.core.num_keyframes
        return resp

    def _srv_reset(self, req, resp):
        self.core.reset()
        self.camera.reset()
        resp.success, resp.message = True, self.RESET_MESSAGE
        return resp

    def _srv_pause(self, resp, pause: bool):
        self.core.paused = pause
        resp.success, resp.message = True, "paused" if pause else "resumed"
        return resp


def node_main(plain_cls, managed_cls, argv: list[str] | None) -> int:
    """Run a body's plain node, or its managed node with ``--lifecycle`` (see ``spin.run_node``)."""
    return run_node(plain_cls, argv if argv is not None else sys.argv, plain_cls.NODE_NAME,
                    (ParamError, ValueError, OSError), managed_cls=managed_cls)
