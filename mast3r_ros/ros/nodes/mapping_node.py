"""``mapping_node``: build a keyframe map from RGB-D frames and odometry (rclpy, thin).

Topics (relative, default namespace ``mast3r``): subscribes ``image``, ``camera_info``, ``depth``;
odometry through TF (odom -> base -> camera optical frame) for keyframe gating. Publishes
``cloud_map`` (PointCloud2 xyz+rgb, map frame, reliable + transient_local), ``keyframe_poses``
(PoseArray) and ``trajectory`` (Path), both latched, ``status``, ``/diagnostics`` and map->odom on
``/tf``. Services: ``optimize`` (a global pass now; waits), ``save_map``, ``load_map`` (continue
mapping from a saved map), ``reset``, ``pause``, ``resume``. The work is in
:class:`~mast3r_ros.ros.core.mapping_core.MappingCore` (an incremental mapper that re-optimises in the
background); a timer republishes keyframe poses, trajectory and cloud
after each optimisation pass. Services run in their own callback group, so they answer while
frames are processed.
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseArray
from nav_msgs.msg import Path
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger

from mast3r_ros.msg import LocalizationStatus
from mast3r_ros.ros.compat.conversions import make_header
from mast3r_ros.ros.compat.conversions_geometry import path, pose_array, xyz_rgb_to_pointcloud2
from mast3r_ros.ros.compat.decode import decode_frame
from mast3r_ros.ros.compat.tf_tree import OdomSource
from mast3r_ros.ros.core.localization_core import Output, Status
from mast3r_ros.ros.core.mapping_core import MappingCore, MappingOutput
from mast3r_ros.ros.core.params import MappingParams, ParamError
from mast3r_ros.ros.nodes.managed import ManagedNode, PlainNode, Stages
from mast3r_ros.ros.nodes.node_io import LATCHED, RELIABLE, CameraInput, Diagnostics, TfIO, guarded, stamp_latency_s
from mast3r_ros.ros.nodes.node_params import declare_and_read, install_validator
from mast3r_ros.ros.nodes.outputs import status_message, tf_transforms
from mast3r_ros.ros.nodes.spin import run_node
from mast3r_ros.srv import LoadMap, SaveMap


class MappingBody(Stages):
    """The node's body; :class:`MappingNode` (plain) and :class:`MappingLifecycleNode` (managed,
    ``--lifecycle``) run it (see :mod:`mast3r_ros.ros.nodes.managed`)."""

    NODE_NAME = "mapping_node"

    def _setup(self) -> None:
        self.params: MappingParams | None = None  # None while unconfigured
        self.core: MappingCore | None = None
        self.diag: Diagnostics | None = None
        self.camera: CameraInput | None = None
        self._active = False                      # outputs are published only while True
        self._pub_lock = threading.Lock()
        self._map_lock = threading.Lock()
        self._T_map_odom: np.ndarray | None = None
        install_validator(self, lambda: self.params, self._apply_params)

    def _configure(self) -> None:
        """Parameters and the mapper (its background optimiser); raises on a bad parameter."""
        self.params = declare_and_read(self, MappingParams)
        self.core = MappingCore(self.params)

    def _release(self) -> None:
        if self.core is not None:
            self.core.close()
        self.core = self.params = None

    def _activate(self) -> None:
        """Publishers, subscriptions, TF, timers and services; the map so far is republished."""
        self.service_group = ReentrantCallbackGroup()
        self.tf_group = MutuallyExclusiveCallbackGroup()
        self.cloud_pub = self.create_publisher(PointCloud2, "cloud_map", LATCHED)
        self.kf_pub = self.create_publisher(PoseArray, "keyframe_poses", LATCHED)
        self.path_pub = self.create_publisher(Path, "trajectory", LATCHED)
        self.status_pub = self.create_publisher(LocalizationStatus, "status", RELIABLE)
        self.tf = TfIO(self, self.tf_group)
        self._T_map_odom = None
        self._dropped_reported = 0
        self.odom = OdomSource(self.params.publish_odom_tf)
        self.diag = Diagnostics(self, "mapping", self._diag_values, self.tf_group, self._diag_summary)
        self.camera = CameraInput(self, self.params, self._on_frame, self._on_reject,
                                  MutuallyExclusiveCallbackGroup(), on_reset=self._on_stamp_reset)
        self.create_timer(1.0 / self.params.tf_publish_rate, guarded(self, "TF timer", self._publish_tf),
                          callback_group=self.tf_group)
        # a map kept through deactivate is republished by the next timer (the latched topics are new)
        self._published_passes = -1 if self.core.num_keyframes else 0
        self.create_timer(0.5, guarded(self, "map publication", self._publish_after_pass),
                          callback_group=MutuallyExclusiveCallbackGroup())
        g = self.service_group
        for typ, name, fn in ((Trigger, "optimize", self._srv_optimize), (SaveMap, "save_map", self._srv_save_map),
                              (LoadMap, "load_map", self._srv_load_map), (Trigger, "reset", self._srv_reset),
                              (Trigger, "pause", lambda q, r: self._srv_pause(r, True)),
                              (Trigger, "resume", lambda q, r: self._srv_pause(r, False))):
            self.create_service(typ, name, guarded(self, f"service {name}", fn), callback_group=g)
        self._active = True
        self.get_logger().info(f"ready: mapping with the classical RGB-D front-end; listening on "
                               f"{', '.join(self.camera.topic_names.values())}")

    def _deactivate(self) -> None:
        """No output from here on (a frame in flight is dropped); frames stop; the map is kept."""
        with self._pub_lock, self._map_lock:
            self._active = False
            self._T_map_odom = None
        if self.camera is not None:
            self.camera.stop()
        self.camera = self.diag = None

    def _apply_params(self, new: MappingParams) -> None:
        self.params = self.core.params = new  # only dynamic (frame/TF) parameters can change

    # ---------------------------------------------------------------- frames (worker thread)
    def _on_frame(self, stamp_ns: int, msgs: dict, t_received: float) -> None:
        p = self.params
        try:
            # checked once, here: named even while odometry is awaited (the core checks the stamp order)
            frame = self.core.check(decode_frame(stamp_ns, msgs, t_received))
        except ValueError as exc:
            return self._report(MappingOutput(Status(stamp_ns, "", "INIT", error=True,
                                                     message=f"bad input: {exc}")))
        # camera-only rig: odom->base is our own identity, so it is no odometry (no gating, no prior)
        T_odom_base, why = self.tf.odom_to_base(self.odom, p, stamp_ns)
        if why and self.odom.identity:
            self.get_logger().warn(why)
        T_base_cam, why2 = self.tf.lookup(p.base_frame, frame.frame_id, stamp_ns, p.tf_timeout)
        T_odom_cam = None if T_odom_base is None or T_base_cam is None else T_odom_base @ T_base_cam
        if T_odom_base is None and T_base_cam is not None and self.odom.mode == "auto":
            # publish_odom_tf auto, within the grace period (or odometry late for this stamp): a
            # state, not a failure; the frame is not used (a keyframe needs its odometry pose)
            st = Status(stamp_ns, frame.frame_id, "TRACKING" if self.core.num_keyframes else "INIT",
                        message=f"waiting for odometry: {why}")
            return self._report(MappingOutput(st))
        out = self.core.process(frame, T_odom_cam, odom_is_real=not self.odom.identity, checked=True)
        if why or why2:
            out.status.message = f"{out.status.message}: {why2 or why}"
        self._report(out)
        if out.keyframe_added:
            self._publish_map()

    def _on_stamp_reset(self, reason: str) -> None:
        """Image stamps went backwards: the mapper's stamp history restarts (the map is kept)."""
        self.core.last_stamp_ns = None
        self.get_logger().warn(reason)

    def _on_reject(self, stamp_ns: int, reason: str) -> None:
        self._report(MappingOutput(Status(stamp_ns, "", "INIT", error=True,
                                          message=f"unsynchronised input: {reason}")))

    def _report(self, out: MappingOutput) -> None:
        with self._pub_lock:
            if not self._active:
                return
            st = out.status
            if out.T_map_odom is not None:
                self._T_map_odom = out.T_map_odom
            latency = stamp_latency_s(self.get_clock().now().nanoseconds, st.stamp_ns)
            dropped = self.camera.worker.queue.dropped
            new, self._dropped_reported = dropped - self._dropped_reported, dropped
            self.status_pub.publish(status_message(Output(st), self.params.map_frame, latency, new))
            if st.error and not self.core.paused:
                self.diag.error(st.message)

    # ---------------------------------------------------------------- map outputs
    def _publish_map(self) -> None:
        """Latched cloud, keyframe poses and trajectory (keyframe camera poses in the map frame)."""
        with self._map_lock:
            if not self._active:
                return
            passes = self.core.passes
            T, stamps = self.core.keyframe_poses()
            now = self.get_clock().now().nanoseconds
            header = make_header(now, self.params.map_frame)
            xyz, rgb = self.core.cloud()
            self.cloud_pub.publish(xyz_rgb_to_pointcloud2(xyz, rgb, header))
            self.kf_pub.publish(pose_array(list(T), header))
            self.path_pub.publish(path(list(T), [int(s) for s in stamps], header))
            self._published_passes = passes
            T_map_odom = self.core.T_map_odom()
            if T_map_odom is not None:
                self._T_map_odom = T_map_odom

    def _publish_after_pass(self) -> None:
        """Republish the map when an optimisation pass (background or service) has been merged."""
        if self.core.num_keyframes and self.core.passes != self._published_passes:
            self._publish_map()

    def _publish_tf(self) -> None:
        p = self.params
        if self._T_map_odom is None:
            return
        stamp = self.get_clock().now().nanoseconds + int(p.transform_tolerance * 1e9)
        msgs = tf_transforms(p, self._T_map_odom, stamp, self.odom.identity)
        if msgs:
            self.tf.send(msgs)

    def _diag_summary(self) -> tuple[bytes, str]:
        """OK while mapping with odometry; WARN paused, no input, no keyframe yet, no odometry."""
        silent = self.camera.silent_s()
        if self.core.paused:
            return DiagnosticStatus.WARN, "paused (call the resume service)"
        if silent > self.params.no_input_warn_s:
            return DiagnosticStatus.WARN, (f"no input for {silent:.0f} s on "
                                           f"{', '.join(self.camera.topic_names.values())}")
        if not self.core.num_keyframes:
            return DiagnosticStatus.WARN, "no keyframe yet (INIT)"
        text = f"{self.core.num_keyframes} keyframes, {self.core.passes} optimisation passes"
        if self.odom.last_missing or (self.odom.identity and self.odom.mode == "auto"):
            return DiagnosticStatus.WARN, f"mapping without odometry ({self.odom.describe()}): {text}"
        return DiagnosticStatus.OK, text

    def _diag_values(self) -> dict:
        return {"keyframes": str(self.core.num_keyframes), "optimisation_passes": str(self.core.passes),
                "optimize_calls": str(self.core.n_optimize_calls),
                "last_pass_error": self.core.last_pass_error, "input_hz": f"{self.camera.input_hz():.2f}",
                "paused": str(self.core.paused), "odometry": self.odom.describe(),
                **self.camera.input_stats()}

    # ---------------------------------------------------------------- services
    def _srv_optimize(self, req, resp):
        t = time.perf_counter()
        why, summary = self.core.optimize()
        if why:
            resp.success, resp.message = False, f"optimize: {why}"
            self.diag.error(resp.message)
            return resp
        self._publish_map()
        resp.success = True
        took = time.perf_counter() - t
        resp.message = (f"global pass over {summary['n_keyframes']} keyframes in {took:.1f} s; "
                        f"{summary['passes']} optimisation passes so far")
        return resp

    def _srv_save_map(self, req, resp):
        target = req.map_dir or self.params.map_dir
        why = self.core.save_map(target, req.overwrite) if target else \
            "no map_dir given (request or parameter)"
        if why:
            resp.success, resp.message = False, f"save_map: {why}"
            self.diag.error(resp.message)
            return resp
        resp.success, resp.message, resp.map_dir = True, "map saved", str(target)
        resp.num_keyframes = self.core.num_keyframes
        return resp

    def _srv_load_map(self, req, resp):
        why = self.core.load_map(req.map_dir) if req.map_dir else "no map_dir given"
        if why:
            resp.success, resp.message = False, f"load_map: {why}"
            self.diag.error(resp.message)
            return resp
        self._T_map_odom = None  # the map frame changed; known again at the next keyframe
        self.camera.reset()
        resp.success, resp.message = True, "map loaded; mapping continues from it"
        resp.num_keyframes = self.core.num_keyframes
        return resp

    def _srv_reset(self, req, resp):
        self.core.reset()
        self.camera.reset()
        self._T_map_odom = None
        resp.success, resp.message = True, "map cleared"
        return resp

    def _srv_pause(self, resp, pause: bool):
        self.core.paused = pause
        resp.success, resp.message = True, "paused" if pause else "resumed"
        return resp

class MappingNode(MappingBody, PlainNode):
    """Plain node (default): configured and activated at start-up; a bad parameter stops it."""


class MappingLifecycleNode(MappingBody, ManagedNode):
    """Managed node (``--lifecycle``): configure, activate, deactivate, cleanup, shutdown as nav2 expects."""


def main(argv: list[str] | None = None) -> int:
    return run_node(MappingNode, argv if argv is not None else sys.argv, "mapping_node",
                    (ParamError, ValueError, OSError), managed_cls=MappingLifecycleNode)


if __name__ == "__main__":
    sys.exit(main())
