"""``localization_node``: localize camera frames against a keyframe map (rclpy, thin).

Topics (relative, default namespace ``mast3r``): subscribes ``image``, ``camera_info``, optional
``depth``, ``/initialpose``; publishes ``localization_pose`` (PoseWithCovarianceStamped of
``base_frame`` in ``map_frame``, image stamp, reliable + transient_local), ``status``
(LocalizationStatus), ``/diagnostics`` and map->odom on ``/tf``. Services: ``localize``,
``set_reference``, ``load_map``, ``save_map``, ``reset``, ``pause``, ``resume``.
The work happens in :class:`~mast3r_ros.ros.localization_core.LocalizationCore` on a worker
thread; services run in their own callback group, so they answer while a frame is processed.
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from std_srvs.srv import Trigger

from mast3r_ros.msg import LocalizationStatus
from mast3r_ros.ros.conversions import make_header
from mast3r_ros.ros.conversions_geometry import pose_to_T, pose_with_covariance_stamped
from mast3r_ros.ros.decode import decode_frame
from mast3r_ros.ros.frames import FrameError
from mast3r_ros.ros.localization_core import LocalizationCore, Output
from mast3r_ros.ros.node_io import LATCHED, RELIABLE, CameraInput, Diagnostics, TfIO, rate_hz
from mast3r_ros.ros.node_params import declare_and_read, install_validator
from mast3r_ros.ros.outputs import pose_message, status_message, tf_transforms
from mast3r_ros.ros.params import LocalizationParams, ParamError
from mast3r_ros.ros.reference import reference_inputs
from mast3r_ros.ros.spin import run_node
from mast3r_ros.srv import LoadMap, Localize, SaveMap, SetReference

LOCALIZE_WAIT_S = 5.0
DEFAULT_HINT_RADIUS_M = 1.0


class LocalizationNode(Node):
    def __init__(self, **kwargs):
        super().__init__("localization_node", **kwargs)
        self.params = declare_and_read(self, LocalizationParams)
        self.core = LocalizationCore(self.params)  # loads map_path; raises on a bad map
        self._warmup()
        self.sensor_group = MutuallyExclusiveCallbackGroup()
        self.service_group = ReentrantCallbackGroup()
        self.tf_group = MutuallyExclusiveCallbackGroup()
        self.pose_pub = self.create_publisher(PoseWithCovarianceStamped, "localization_pose", LATCHED)
        self.status_pub = self.create_publisher(LocalizationStatus, "status", RELIABLE)
        self.tf = TfIO(self, self.tf_group)
        self._T_map_odom: np.ndarray | None = None
        self._processed: list[float] = []
        self._last_latency = float("nan")
        self._dropped_reported = 0
        self._rate_lock = threading.Lock()
        self._pub_lock = threading.Lock()  # worker thread and sync rejections both publish
        self._last_processed_t = 0.0
        self.diag = Diagnostics(self, "localization", self._diag_values, self.tf_group)
        self.camera = CameraInput(self, self.params, self._on_frame, self._on_reject, self.sensor_group)
        self.create_timer(1.0 / self.params.tf_publish_rate, self._publish_tf, callback_group=self.tf_group)
        self.create_subscription(PoseWithCovarianceStamped, "/initialpose", self._on_initialpose, RELIABLE,
                                 callback_group=self.service_group)
        install_validator(self, lambda: self.params, self._apply_params)
        self._make_services()
        self.diag.set(DiagnosticStatus.OK, "ready")
        self.get_logger().info(f"ready: front-end {self.params.frontend}, map "
                               f"{self.params.map_path or '(none)'} ({self.core.num_keyframes} keyframes)")

    # ---------------------------------------------------------------- start-up
    def _warmup(self) -> None:
        """One dummy query through the front-end, so the first real frame is not slow."""
        if not self.params.warmup:
            return
        from mast3r_ros.localization.frontend import QueryFrame

        rng = np.random.default_rng(0)
        img = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
        t = time.perf_counter()
        self.core.frontend.prepare_query(QueryFrame(img, K))
        self.get_logger().info(f"front-end warmed up in {time.perf_counter() - t:.2f} s")

    def _make_services(self) -> None:
        g = self.service_group
        self.create_service(Localize, "localize", self._srv_localize, callback_group=g)
        self.create_service(SetReference, "set_reference", self._srv_set_reference, callback_group=g)
        self.create_service(LoadMap, "load_map", self._srv_load_map, callback_group=g)
        self.create_service(SaveMap, "save_map", self._srv_save_map, callback_group=g)
        self.create_service(Trigger, "reset", self._srv_reset, callback_group=g)
        self.create_service(Trigger, "pause", lambda q, r: self._srv_pause(r, True), callback_group=g)
        self.create_service(Trigger, "resume", lambda q, r: self._srv_pause(r, False), callback_group=g)

    def _apply_params(self, new: LocalizationParams) -> None:
        self.params = new
        gates = self.core._localizer.state.config if self.core._localizer else None
        if gates is not None:
            gates.min_inliers, gates.min_inliers_global = new.min_inliers, new.min_inliers_global
            gates.max_median_reproj_px, gates.max_jump_m = new.max_median_reproj_px, new.max_jump_m
            gates.max_jump_deg = new.max_jump_deg
        self.core.params = new

    # ---------------------------------------------------------------- frames (worker thread)
    def _on_frame(self, stamp_ns: int, msgs: dict, t_received: float) -> None:
        p = self.params
        if p.max_rate_hz > 0 and time.monotonic() - self._last_processed_t < 1.0 / p.max_rate_hz:
            return
        self._last_processed_t = time.monotonic()
        t0 = time.perf_counter()
        try:
            frame = decode_frame(stamp_ns, msgs, t_received)
        except ValueError as exc:  # ConversionError / FrameError name the problem
            return self._report_bad(stamp_ns, msgs["image"].header.frame_id, f"bad input: {exc}")
        decode_s = time.perf_counter() - t0
        T_base_cam, why = self.tf.lookup(p.base_frame, frame.frame_id, stamp_ns, p.tf_timeout)
        T_odom_base, why2 = (np.eye(4), "") if p.publish_odom_tf else \
            self.tf.lookup(p.odom_frame, p.base_frame, stamp_ns, p.tf_timeout)
        out = self.core.process(frame, T_base_cam, T_odom_base, decode_s)
        if why or why2:
            out.status.message = f"{out.status.message}: {why or why2}"
        self._publish(out)

    def _report_bad(self, stamp_ns: int, frame_id: str, message: str) -> None:
        from mast3r_ros.ros.localization_core import Status

        self._publish(Output(Status(stamp_ns, frame_id, self.core.state(), error=True, message=message)))

    def _on_reject(self, stamp_ns: int, reason: str) -> None:
        self._report_bad(stamp_ns, "", f"unsynchronised input: {reason}")

    # ---------------------------------------------------------------- outputs
    def _publish(self, out: Output) -> None:
        with self._pub_lock:
            self._publish_locked(out)

    def _publish_locked(self, out: Output) -> None:
        st, p = out.status, self.params
        now_ns = self.get_clock().now().nanoseconds
        latency = (now_ns - st.stamp_ns) * 1e-9 if st.stamp_ns else 0.0
        if out.T_map_base is not None:
            self.pose_pub.publish(pose_message(out, p.map_frame))
            self._T_map_odom = out.T_map_odom
            self._publish_tf()
        if not st.error:
            with self._rate_lock:
                self._processed.append(time.monotonic())
                self._processed = self._processed[-300:]
            self._last_latency = latency
        self.status_pub.publish(self._status_msg(out, latency))
        if st.error:
            self.diag.error(st.message)

    def _status_msg(self, out: Output, latency: float) -> LocalizationStatus:
        dropped = self.camera.worker.queue.dropped
        new, self._dropped_reported = dropped - self._dropped_reported, dropped
        return status_message(out, self.params.map_frame, latency, new)

    def _publish_tf(self) -> None:
        p = self.params
        if not p.publish_tf or self._T_map_odom is None:
            return  # no TF before the first successful localization (AMCL)
        stamp = self.get_clock().now().nanoseconds + int(p.transform_tolerance * 1e9)
        self.tf.send(tf_transforms(p, self._T_map_odom, stamp))

    def _diag_values(self) -> dict:
        with self._rate_lock:
            processed = list(self._processed)
        return {"state": self.core.state(), "input_hz": f"{self.camera.input_hz():.2f}",
                "processed_hz": f"{rate_hz(processed):.2f}", "latency_s": f"{self._last_latency:.3f}",
                "frames_dropped": str(self.camera.worker.queue.dropped),
                "keyframes": str(self.core.num_keyframes), "paused": str(self.core.paused),
                **self.camera.input_stats()}

    # ---------------------------------------------------------------- services
    def _pose_in_map(self, pose_stamped, what: str) -> np.ndarray:
        if pose_stamped.header.frame_id.lstrip("/") != self.params.map_frame:
            raise FrameError(f"{what} frame_id {pose_stamped.header.frame_id!r} is not the map frame "
                             f"{self.params.map_frame!r}")
        return pose_to_T(pose_stamped.pose)

    def _fail(self, resp, message: str):
        resp.success, resp.message = False, message
        self.diag.error(message)
        return resp

    def _base_to_cam(self, T_map_base: np.ndarray) -> np.ndarray:
        frame = self.core.current_frame()
        if frame is None:
            raise FrameError("no camera frame received yet (the camera's TF frame is unknown)")
        T_base_cam, why = self.tf.lookup(self.params.base_frame, frame.frame_id, 0, self.params.tf_timeout)
        if T_base_cam is None:
            raise FrameError(why)
        return T_map_base @ T_base_cam

    def _srv_localize(self, req, resp):
        try:
            hint = None if req.global_localization else \
                self._base_to_cam(self._pose_in_map(req.pose_hint, "pose_hint"))
        except (FrameError, ValueError) as exc:
            return self._fail(resp, f"localize: {exc}")
        radius = float(req.radius) if req.radius > 0 else DEFAULT_HINT_RADIUS_M
        ticket = self.core.request_localize(hint, radius)
        if not ticket.done.wait(LOCALIZE_WAIT_S):
            resp.success, resp.message = True, "armed: the next frame will be localized"
            return resp
        out = ticket.result
        resp.success, resp.message = out.T_map_base is not None, out.status.message or "localized"
        if out.T_map_base is not None:
            resp.pose = pose_with_covariance_stamped(out.T_map_base, out.covariance,
                                                     make_header(out.status.stamp_ns, self.params.map_frame))
        return resp

    def _srv_set_reference(self, req, resp):
        try:
            T_map_cam = self._pose_in_map(req.reference_pose, "reference_pose")
            image, K, depth = reference_inputs(req.image_path, req.depth_path, req.use_current_frame,
                                               self.core.current_frame(), self.core.calib)
        except (FrameError, ValueError) as exc:
            return self._fail(resp, f"set_reference: {exc}")
        why = self.core.set_reference(image, K, depth, T_map_cam)
        if why:
            return self._fail(resp, f"set_reference: {why}")
        resp.success, resp.message = True, "reference set (map-free localization)"
        return resp

    def _srv_load_map(self, req, resp):
        why = self.core.load_map(req.map_dir)
        if why:
            return self._fail(resp, f"load_map: {why}")
        resp.success, resp.message, resp.num_keyframes = True, "map loaded", self.core.num_keyframes
        return resp

    def _srv_save_map(self, req, resp):
        target = req.map_dir or self.params.map_path
        why = self.core.save_map(target, req.overwrite) if target else "no map_dir given"
        if why:
            return self._fail(resp, f"save_map: {why}")
        resp.success, resp.message = True, "map saved"
        resp.map_dir, resp.num_keyframes = str(target), self.core.num_keyframes
        return resp

    def _srv_reset(self, req, resp):
        self.core.reset()
        self.camera.sync.reset()
        resp.success, resp.message = True, "tracking state reset"
        return resp

    def _srv_pause(self, resp, pause: bool):
        self.core.paused = pause
        resp.success, resp.message = True, "paused" if pause else "resumed"
        return resp

    def _on_initialpose(self, msg) -> None:
        try:
            T_map_base = self._pose_in_map(msg.pose, "/initialpose")
            hint = self._base_to_cam(T_map_base)
        except (FrameError, ValueError) as exc:
            self.get_logger().warn(f"initialpose rejected: {exc}")
            self.diag.error(f"/initialpose rejected: {exc}")
            return
        cov = np.asarray(msg.pose.covariance, dtype=np.float64).reshape(6, 6)
        radius = max(DEFAULT_HINT_RADIUS_M, 3.0 * float(np.sqrt(max(cov[0, 0], cov[1, 1], 0.0))))
        self.core.request_localize(hint, radius)
        self.get_logger().info(f"initial pose accepted (search radius {radius:.2f} m)")

    def destroy_node(self) -> None:
        self.camera.stop()
        self.core.close()
        super().destroy_node()


def main(argv: list[str] | None = None) -> int:
    return run_node(LocalizationNode, argv if argv is not None else sys.argv, "localization_node",
                    (ParamError, ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
