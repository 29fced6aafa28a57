"""``mapping_node``: build a keyframe map from RGB-D frames and odometry, or (``frontend: mast3r``) with
MASt3R from images and depth, or from images alone (``subscribe_depth: false``), odometry optional
(rclpy, thin).

Topics (relative, default namespace ``mast3r``): subscribes ``image``, ``camera_info``, ``depth`` (when
``subscribe_depth``); odometry through TF (odom -> base -> camera optical frame) for keyframe gating. Publishes
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

from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseArray
from nav_msgs.msg import Path
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger

from mast3r_ros.ros.compat.conversions import make_header
from mast3r_ros.ros.compat.conversions_geometry import path, pose_array, xyz_rgb_to_pointcloud2
from mast3r_ros.ros.compat.decode import decode_frame
from mast3r_ros.ros.core.localization_core import Output, Status
from mast3r_ros.ros.core.mapping_core import MappingCore, MappingOutput
from mast3r_ros.ros.core.model_source import model_label
from mast3r_ros.ros.core.params import MappingParams
from mast3r_ros.ros.nodes.base import NodeBody, node_main
from mast3r_ros.ros.nodes.managed import ManagedNode, PlainNode
from mast3r_ros.ros.nodes.node_io import LATCHED, guarded


class MappingBody(NodeBody):
    """The node's body; :class:`MappingNode` (plain) and :class:`MappingLifecycleNode` (managed,
    ``--lifecycle``) run it (see :mod:`mast3r_ros.ros.nodes.managed`)."""

    NODE_NAME = "mapping_node"
    PARAMS, CORE, DIAG_NAME = MappingParams, MappingCore, "mapping"
    RESET_MESSAGE, LOADED_MESSAGE = "map cleared", "map loaded; mapping continues from it"
    NO_SAVE_TARGET = "no map_dir given (request or parameter)"

    def _setup(self) -> None:
        super()._setup()
        self._map_lock = threading.Lock()          # map publication (worker, timer, services)

    def _open_outputs(self) -> None:
        self.cloud_pub = self.create_publisher(PointCloud2, "cloud_map", LATCHED)
        self.kf_pub = self.create_publisher(PoseArray, "keyframe_poses", LATCHED)
        self.path_pub = self.create_publisher(Path, "trajectory", LATCHED)
        # a map kept through deactivate is republished by the next timer (the latched topics are new)
        self._published_passes = -1 if self.core.num_keyframes else 0
        self._logged_pass_error = ""

    def _open_inputs(self) -> None:
        self.create_timer(0.5, guarded(self, "map publication", self._publish_after_pass),
                          callback_group=MutuallyExclusiveCallbackGroup())

    def _own_services(self) -> tuple:
        return ((Trigger, "optimize", self._srv_optimize),)

    def _ready(self) -> None:
        topics = ", ".join(self.camera.topic_names.values())
        self.get_logger().info(f"ready: mapping with the {self.params.frontend} front-end (model: "
                               f"{model_label(self.params)}); listening on {topics}")

    def _deactivate(self) -> None:
        """As every node, and no map publication from here on (the map is kept)."""
        with self._map_lock:
            self._active = False
        super()._deactivate()

    def _apply_params(self, new: MappingParams) -> None:
        self.params = self.core.params = new  # only dynamic (frame/TF) parameters can change

    # ---------------------------------------------------------------- frames (worker thread)
    def _on_frame(self, stamp_ns: int, msgs: dict, t_received: float) -> None:
        try:
            # checked once, here: named even while odometry is awaited (the core checks the stamp order)
            frame = self.core.check(decode_frame(stamp_ns, msgs, t_received))
        except ValueError as exc:
            return self._report_bad(stamp_ns, "", f"bad input: {exc}")
        # camera-only rig: odom->base is our own identity, so it is no odometry (no gating, no prior)
        T_base_cam, why2, T_odom_base, why = self._tf_at(frame.frame_id, stamp_ns, self.params.tf_timeout)
        T_odom_cam = None if T_odom_base is None or T_base_cam is None else T_odom_base @ T_base_cam
        if T_odom_base is None and T_base_cam is not None and self.odom.mode == "auto" and not self.core.mast3r_engine:
            # publish_odom_tf auto, within the grace period (or odometry late for this stamp): a
            # state, not a failure; the frame is not used (a keyframe needs its odometry pose)
            st = Status(stamp_ns, frame.frame_id, "TRACKING" if self.core.num_keyframes else "INIT",
                        message=f"waiting for odometry: {why}")
            return self._publish(MappingOutput(st))
        odom_is_real = not self.odom.identity
        if T_odom_cam is None and T_base_cam is not None and self.core.mast3r_engine:
            # no odometry (yet): the MASt3R engine maps on, and its map frame is still the base's at the
            # first keyframe, as with the identity odom->base the node publishes for a camera-only rig
            T_odom_cam, odom_is_real = T_base_cam, False
        out = self.core.process(frame, T_odom_cam, odom_is_real=odom_is_real, checked=True)
        if why or why2:
            out.status.message = f"{out.status.message}: {why2 or why}"
        self._publish(out)
        if out.keyframe_added:
            self._publish_map()

    def _on_stamp_reset(self, reason: str) -> None:
        """Image stamps went backwards: the mapper's stamp history restarts (the map is kept)."""
        self.core.last_stamp_ns = None
        self.get_logger().warn(reason)

    def _report_bad(self, stamp_ns: int, frame_id: str, message: str) -> None:
        self._publish(MappingOutput(Status(stamp_ns, frame_id, "INIT", error=True, message=message)))

    def _publish_locked(self, out: MappingOutput) -> None:
        st = out.status
        if out.T_map_odom is not None:
            self._T_map_odom = out.T_map_odom
        self.status_pub.publish(self._status_msg(Output(st), self._latency_s(st.stamp_ns)))
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
        """Republish the map when an optimisation pass (background or service) has been merged; the
        MASt3R engine's passes (seconds to minutes each) are logged, and a failed one once."""
        if self.core.num_keyframes and self.core.passes != self._published_passes:
            self._publish_map()
            summary = self.core.pass_summary()
            if summary:  # the MASt3R engine's pass (a load_map has none)
                self.get_logger().info(f"map updated: {pass_line(summary)}")
        error = self.core.last_pass_error
        if error and error != self._logged_pass_error:
            self.get_logger().warn(f"mapping pass failed: {error}")
        self._logged_pass_error = error

    def _diag_summary(self) -> tuple[bytes, str]:
        """OK while mapping with odometry; WARN paused, no input, no keyframe yet, no odometry."""
        warning = self._input_warning()
        if warning:
            return warning
        if not self.core.num_keyframes:
            return DiagnosticStatus.WARN, "no keyframe yet (INIT)"
        text = f"{self.core.num_keyframes} keyframes, {self.core.passes} optimisation passes"
        if self._without_odometry():
            return DiagnosticStatus.WARN, f"mapping without odometry ({self.odom.describe()}): {text}"
        return DiagnosticStatus.OK, text

    def _diag_values(self) -> dict:
        return {"model": model_label(self.params), "keyframes": str(self.core.num_keyframes),
                "optimisation_passes": str(self.core.passes),
                "optimize_calls": str(self.core.n_optimize_calls),
                "last_pass_error": self.core.last_pass_error, "input_hz": f"{self.camera.input_hz():.2f}",
                "paused": str(self.core.paused), "odometry": self.odom.describe(),
                **self.camera.input_stats()}

    # ---------------------------------------------------------------- services
    def _srv_optimize(self, req, resp):
        t = time.perf_counter()
        why, summary = self.core.optimize()
        if why:
            return self._fail(resp, f"optimize: {why}")
        self._publish_map()
        resp.success = True
        took = time.perf_counter() - t
        resp.message = (f"{summary['what']} over {summary['n_keyframes']} keyframes in {took:.1f} s; "
                        f"{summary['passes']} optimisation passes so far (model: {model_label(self.params)})")
        return resp

    def _default_map_dir(self) -> str:
        return self.params.map_dir

    def _srv_reset(self, req, resp):
        resp = super()._srv_reset(req, resp)
        self._T_map_odom = None
        return resp


class MappingNode(MappingBody, PlainNode):
    """Plain node (default): configured and activated at start-up; a bad parameter stops it."""


class MappingLifecycleNode(MappingBody, ManagedNode):
    """Managed node (``--lifecycle``): configure, activate, deactivate, cleanup, shutdown as nav2 expects."""


def pass_line(summary: dict) -> str:
    """One line for a MASt3R mapping pass's summary (:meth:`MappingCore.pass_summary`)."""
    held = f" ({summary['n_fixed']} held at their poses)" if summary.get("n_fixed") else ""
    return (f"MASt3R mapping pass over {summary['n_keyframes']} keyframes{held}: {summary['pairs_decoded']} of "
            f"{summary['n_pairs']} image pairs decoded, {summary['pairs_ok']} passed the pair check, "
            f"focal {summary['focal_px']:.1f} px, {summary['pass_s']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    return node_main(MappingNode, MappingLifecycleNode, argv)


if __name__ == "__main__":
    sys.exit(main())
