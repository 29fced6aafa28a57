"""TF in and out for a node (tf2_ros): tf2_ros's buffer, listener and broadcaster where tf2_ros is
importable (a ROS 2 workspace), else our :class:`~mast3r_ros.ros.compat.tf_tree.TfTree` fed from
``/tf`` and ``/tf_static`` and a ``tf2_msgs/TFMessage`` publisher on ``/tf``."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from mast3r_ros.ros.compat.conversions import stamp_to_ns
from mast3r_ros.ros.compat.conversions_geometry import transform_to_T
from mast3r_ros.ros.compat.tf_tree import TfLookupError, TfTree

try:  # the real tf2_ros where installed (a ROS 2 workspace); our TfTree otherwise
    import tf2_ros  # type: ignore
except ImportError:
    tf2_ros = None
try:
    from tf2_msgs.msg import TFMessage
except ImportError:
    TFMessage = None

TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_TF = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)


class TfIO:
    """TF lookups (tf2_ros buffer, or our TfTree fed from /tf and /tf_static) and TF publishing."""

    def __init__(self, node, group, guard: Callable[[object, str, Callable], Callable]):
        """``guard(node, what, fn)`` wraps the /tf callbacks (``nodes.node_io.guarded``)."""
        self.node = node
        self.tree = TfTree(cache_s=30.0)
        if tf2_ros is not None:
            self.buffer = tf2_ros.Buffer()
            self.listener = tf2_ros.TransformListener(self.buffer, node)
            self.broadcaster = tf2_ros.TransformBroadcaster(node)
            self.pub = None
        elif TFMessage is not None:
            self.buffer = None
            node.create_subscription(TFMessage, "/tf", guard(node, "/tf", lambda m: self._feed(m, False)),
                                     TF_QOS, callback_group=group)
            node.create_subscription(TFMessage, "/tf_static", guard(node, "/tf_static",
                                                                    lambda m: self._feed(m, True)),
                                     LATCHED_TF, callback_group=group)
            self.pub = node.create_publisher(TFMessage, "/tf", TF_QOS)
        else:  # only same-frame lookups work; say so once instead of failing to start
            self.buffer = self.pub = None
            node.get_logger().error("neither tf2_ros nor tf2_msgs is importable: no TF in or out")

    def _feed(self, msg, static: bool) -> None:
        for t in msg.transforms:
            try:
                self.tree.set_transform(t.header.frame_id, t.child_frame_id, stamp_to_ns(t.header.stamp),
                                        transform_to_T(t.transform), static)
            except ValueError:  # a malformed transform from someone else must not stop our lookups
                continue

    def lookup(self, target: str, source: str, stamp_ns: int,
               timeout_s: float) -> tuple[np.ndarray | None, str]:
        """``T_target_source`` at the stamp, waiting up to ``timeout_s``; (None, reason) on failure."""
        if target == source:
            return np.eye(4), ""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self._lookup(target, source, stamp_ns), ""
            except (TfLookupError, Exception) as exc:  # tf2 raises its own exception types
                if time.monotonic() >= deadline:
                    return None, f"TF {target} -> {source}: {exc}"
            time.sleep(0.005)

    def _lookup(self, target, source, stamp_ns):
        if self.buffer is None:
            return self.tree.lookup(target, source, stamp_ns)
        from rclpy.time import Time

        t = self.buffer.lookup_transform(target, source, Time(nanoseconds=stamp_ns))
        return transform_to_T(t.transform)

    def send(self, msgs: list) -> None:
        """Publish TransformStamped messages on /tf."""
        if self.pub is not None:
            self.pub.publish(TFMessage(transforms=msgs))
        elif tf2_ros is not None:
            self.broadcaster.sendTransform(msgs)
