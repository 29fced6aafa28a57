"""``localization_node``: localize camera frames against a keyframe map (rclpy, thin).

Topics (relative, default namespace ``mast3r``): subscribes ``image``, ``camera_info``, optional
``depth``, ``/initialpose``; publishes ``localization_pose`` (PoseWithCovarianceStamped of
``base_frame`` in ``map_frame``, image stamp, reliable + transient_local), ``status``
(LocalizationStatus), ``cloud_map`` (the loaded map as PointCloud2, map frame, latched),
``/diagnostics`` and map->odom on ``/tf``. Services: ``localize``,
``set_reference``, ``load_map``, ``save_map``, ``reset``, ``pause``, ``resume``.
Every callback is :func:`~mast3r_ros.ros.nodes.node_io.guarded`: an exception is logged, reported on
``/diagnostics`` as ERROR and the node goes on.
The work happens in :class:`~mast3r_ros.ros.core.localization_core.LocalizationCore` on a worker
thread; services run in their own callback group, so they answer while a frame is processed.
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseWithCovarianceStamped
from sensor_msgs.msg import PointCloud2

from mast3r_ros.localization.prior import DEFAULT_HINT_RADIUS_M, prior_search_region
from mast3r_ros.ros.compat.conversions import make_header, stamp_to_ns
from mast3r_ros.ros.compat.conversions_geometry import pose_to_T, pose_with_covariance_stamped, xyz_rgb_to_pointcloud2
from mast3r_ros.ros.compat.decode import decode_frame
from mast3r_ros.ros.core.frames import FrameError
from mast3r_ros.ros.core.localization_core import LocalizationCore, Output, Status
from mast3r_ros.ros.core.model_source import model_label, warmup_input
from mast3r_ros.ros.core.params import LocalizationParams
from mast3r_ros.ros.core.reference import reference_inputs
from mast3r_ros.ros.nodes.base import NodeBody, node_main
from mast3r_ros.ros.nodes.managed import ManagedNode, PlainNode
from mast3r_ros.ros.nodes.node_io import LATCHED, RELIABLE, guarded, rate_hz
from mast3r_ros.ros.nodes.outputs import pose_message
from mast3r_ros.srv import Localize, SetReference

LOCALIZE_WAIT_S = 5.0
FIRST_TF_WAIT_S = 1.0         # base->camera wait until it has been found once


class LocalizationBody(NodeBody):
    """The node's body; :class:`LocalizationNode` (plain) and :class:`LocalizationLifecycleNode`
    (managed, ``--lifecycle``) run it (see :mod:`mast3r_ros.ros.nodes.managed`)."""

    NODE_NAME = "localization_node"
    PARAMS, CORE, DIAG_NAME = LocalizationParams, LocalizationCore, "localization"
    RESET_MESSAGE, LOADED_MESSAGE = "tracking state reset", "map loaded"
    LOAD_FAILED_NOTE = " (the running map is kept)"

    def _setup(self) -> None:
        super()._setup()
        self._rate_lock = threading.Lock()

    def _configure(self) -> None:
        """Parameters, front-end (model) and map (the core loads map_path; raises on a bad map)."""
        super()._configure()
        self._warmup()

    def _open_outputs(self) -> None:
        self.pose_pub = self.create_publisher(PoseWithCovarianceStamped, "localization_pose", LATCHED)
        self.cloud_pub = self.create_publisher(PointCloud2, "cloud_map", LATCHED)
        self.initialpose_pub = self.create_publisher(PoseWithCovarianceStamped, "/initialpose", RELIABLE)
        self._processed: list[float] = []
        self._last_latency = float("nan")
        self._last_processed_t = 0.0
        self._own_initialposes: set[int] = set()   # stamps of fixes we put on /initialpose ourselves
        self._note = ""                            # said in the next frame's status (stamp reset)
        self._have_cam_tf = False

    def _open_inputs(self) -> None:
        self.create_subscription(PoseWithCovarianceStamped, "/initialpose",
                                 guarded(self, "/initialpose", self._on_initialpose), RELIABLE,
                                 callback_group=self.service_group)

    def _own_services(self) -> tuple:
        return ((Localize, "localize", self._srv_localize), (SetReference, "set_reference", self._srv_set_reference))

    def _ready(self) -> None:
        """The loaded map on cloud_map; the start-up line."""
        topics = ", ".join(self.camera.topic_names.values())
        self._publish_map_cloud()
        if self.core.num_keyframes:
            self.get_logger().info(f"ready: front-end {self.params.frontend} (model: {model_label(self.params)}), "
                                   f"map {self.params.map_path} "
                                   f"({self.core.num_keyframes} keyframes); listening on {topics}")
        else:
            self.get_logger().warn(f"ready (model: {model_label(self.params)}), waiting for a map (set map_path "
                                   f"or call the {self.resolve_service_name('load_map')} service); listening on "
                                   f"{topics}")

    # ---------------------------------------------------------------- start-up
    def _warmup(self) -> None:
        """One dummy query through the front-end, so the first real frame is not slow (the oracle
        stand-in takes one of its dataset's frames: it answers nothing else)."""
        if not self.params.warmup:
            return
        from mast3r_ros.localization.frontends import QueryFrame

        img, K = warmup_input(self.core.frontend)
        t = time.perf_counter()
        self.core.frontend.prepare_query(QueryFrame(img, K))
        self.get_logger().info(f"front-end warmed up in {time.perf_counter() - t:.2f} s "
                               f"(model: {model_label(self.params)})")

    def _apply_params(self, new: LocalizationParams) -> None:
        self.params = new
        self.core.apply_params(new)

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
        # base->camera is static on most rigs: the first frame may arrive before /tf_static does
        wait = p.tf_timeout if self._have_cam_tf else max(p.tf_timeout, FIRST_TF_WAIT_S)
        T_base_cam, why, T_odom_base, note = self._tf_at(frame.frame_id, stamp_ns, wait)
        self._have_cam_tf = self._have_cam_tf or T_base_cam is not None
        out = self.core.process(frame, T_base_cam, T_odom_base, decode_s)
        if why:
            out.status.message = f"{out.status.message}: {why}"
        elif note and out.status.localized:
            out.status.message = note
        self._publish(out)

    def _on_stamp_reset(self, reason: str) -> None:
        """Image stamps went backwards (bag loop): recover as the reset service would."""
        self.core.reset()
        with self._pub_lock:
            self._T_map_odom = None
            self._note = reason  # said in the status of the next frame
        self.get_logger().warn(reason)

    def _report_bad(self, stamp_ns: int, frame_id: str, message: str) -> None:
        self._publish(Output(Status(stamp_ns, frame_id, self.core.state(), error=True, message=message)))

    def _publish_locked(self, out: Output) -> None:
        st, p = out.status, self.params
        latency = self._latency_s(st.stamp_ns)
        if self._note and not st.error:
            st.message, self._note = (f"{self._note}; {st.message}" if st.message else self._note), ""
        if out.T_map_base is not None and out.map_generation == self.core.map_generation:
            pose = pose_message(out, p.map_frame)
            self.pose_pub.publish(pose)
            if p.publish_initialpose:
                self._own_initialposes = {st.stamp_ns, *list(self._own_initialposes)[:20]}
                self.initialpose_pub.publish(pose)
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
        elif self.core.paused or not self.core.num_keyframes:
            self.get_logger().warn(st.message, throttle_duration_sec=10.0)  # waiting: said, not per frame

    def _diag_values(self) -> dict:
        with self._rate_lock:
            processed = list(self._processed)
        return {"state": self.core.state(), "model": model_label(self.params),
                "input_hz": f"{self.camera.input_hz():.2f}",
                "processed_hz": f"{rate_hz(processed):.2f}", "latency_s": f"{self._last_latency:.3f}",
                "frames_dropped": str(self.camera.worker.queue.dropped),
                "keyframes": str(self.core.num_keyframes), "paused": str(self.core.paused),
                "odometry": self.odom.describe(), "publish_odom_tf": self.params.publish_odom_tf,
                **self.camera.input_stats()}

    def _diag_summary(self) -> tuple[bytes, str]:
        """OK only while tracking with odometry; WARN for no map, paused, no input, INIT/LOST, no odometry."""
        if not self.core.num_keyframes:
            return DiagnosticStatus.WARN, "waiting for a map (map_path or the load_map service)"
        warning = self._input_warning()
        if warning:
            return warning
        state = self.core.state()
        if state != "TRACKING":
            return DiagnosticStatus.WARN, f"state {state}"
        if self._without_odometry():
            return DiagnosticStatus.WARN, f"tracking without odometry: {self.odom.describe()}"
        return DiagnosticStatus.OK, "tracking"

    # ---------------------------------------------------------------- services
    def _pose_in_map(self, header, pose, what: str) -> np.ndarray:
        """[4,4] of a geometry_msgs/Pose whose header must name the map frame (FrameError if not)."""
        if header.frame_id.lstrip("/") != self.params.map_frame:
            raise FrameError(f"{what} frame_id {header.frame_id!r} is not the map frame "
                             f"{self.params.map_frame!r}")
        return pose_to_T(pose)

    def _srv_localize(self, req, resp):
        try:
            hint = None if req.global_localization else \
                self._pose_in_map(req.pose_hint.header, req.pose_hint.pose, "pose_hint")
        except (FrameError, ValueError) as exc:
            return self._fail(resp, f"localize: {exc}")
        radius = float(req.radius) if req.radius > 0 else DEFAULT_HINT_RADIUS_M
        ticket = self.core.request_localize(None, radius, T_map_base_hint=hint)
        if not ticket.done.wait(LOCALIZE_WAIT_S):
            last = self.core.last_output
            why = f" (last frame: {last.status.message})" if last is not None and last.status.message else ""
            resp.success = False
            resp.message = (f"no frame was localized within {LOCALIZE_WAIT_S:.0f} s{why}; the prior "
                            f"stays armed for the next frame")
            return resp
        out = ticket.result
        resp.success, resp.message = out.T_map_base is not None, out.status.message or "localized"
        if out.T_map_base is not None:
            resp.pose = pose_with_covariance_stamped(out.T_map_base, out.covariance,
                                                     make_header(out.status.stamp_ns, self.params.map_frame))
        return resp

    def _srv_set_reference(self, req, resp):
        try:
            T_map_cam = self._pose_in_map(req.reference_pose.header, req.reference_pose.pose, "reference_pose")
            image, K, depth = reference_inputs(req.image_path, req.depth_path, req.use_current_frame,
                                               self.core.current_frame(), self.core.calib)
        except (FrameError, ValueError) as exc:
            return self._fail(resp, f"set_reference: {exc}")
        why = self.core.set_reference(image, K, depth, T_map_cam)
        if why:
            return self._fail(resp, f"set_reference: {why}")
        self._map_changed()
        resp.success, resp.message = True, ("reference set: map-free localization, every frame is solved against "
                                            "it (PnP, essential + metric scale, Procrustes)")
        return resp

    def _default_map_dir(self) -> str:
        return self.params.map_path

    def _map_changed(self) -> None:
        super()._map_changed()
        self._publish_map_cloud()

    def _publish_map_cloud(self) -> None:
        """The loaded map's cloud on the latched ``cloud_map`` (rviz shows the map in localization mode)."""
        cloud = self.core.map_cloud()
        if cloud is not None:
            header = make_header(self.get_clock().now().nanoseconds, self.params.map_frame)
            self.cloud_pub.publish(xyz_rgb_to_pointcloud2(cloud[0], cloud[1], header))

    def _on_initialpose(self, msg) -> None:
        """AMCL-like: at any time, in the map frame; the next frame's prior (:func:`prior_search_region`)."""
        if stamp_to_ns(msg.header.stamp) in self._own_initialposes:
            return  # our own fix (publish_initialpose), not a user's prior
        try:
            T_map_base = self._pose_in_map(msg.header, msg.pose.pose, "/initialpose")
            radius, max_deg = prior_search_region(msg.pose.covariance)
        except (FrameError, ValueError) as exc:
            self.get_logger().warn(f"/initialpose refused: {exc}")
            return
        self.core.request_localize(None, radius, T_map_base_hint=T_map_base, max_jump_deg=max_deg)
        self.get_logger().info(f"/initialpose accepted: prior of the next frame, search radius {radius:.2f} m"
                               + (f", {max_deg:.0f} deg" if max_deg else ""))


class LocalizationNode(LocalizationBody, PlainNode):
    """Plain node (default): configured and activated at start-up; a bad parameter or map stops it."""


class LocalizationLifecycleNode(LocalizationBody, ManagedNode):
    """Managed node (``--lifecycle``): configure, activate, deactivate, cleanup, shutdown as nav2 expects."""


def main(argv: list[str] | None = None) -> int:
    return node_main(LocalizationNode, LocalizationLifecycleNode, argv)


if __name__ == "__main__":
    sys.exit(main())
