"""/diagnostics for a node (diagnostic_updater): a periodic status from the node's state and
immediate errors."""
from __future__ import annotations

import threading
from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

# as the nodes' other reliable outputs (nodes.node_io.RELIABLE)
DIAGNOSTICS_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)


class Diagnostics:
    """/diagnostics publisher (what diagnostic_updater would do): periodic summary + immediate errors.

    Levels are ``DiagnosticStatus.OK/WARN/ERROR`` (bytes in rclpy's generated message).
    ``summary()`` -> (level, message) gives the periodic level from the node's state; an error
    reported since the previous periodic message makes that one ERROR too.
    """

    def __init__(self, node, name: str, values: Callable[[], dict[str, str]], group,
                 guard: Callable[[object, str, Callable], Callable],
                 summary: Callable[[], tuple[bytes, str]] | None = None):
        """``guard(node, what, fn)`` wraps the periodic timer (``nodes.node_io.guarded``)."""
        self.node, self.name, self.values, self.summary = node, name, values, summary
        self._error_since_publish = ""
        self.pub = node.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self._lock = threading.Lock()
        self.level, self.message = DiagnosticStatus.WARN, "starting"
        self.last_error = ""
        node.create_timer(1.0, guard(node, "diagnostics", self.publish_periodic), callback_group=group)

    def set(self, level: bytes, message: str) -> None:
        with self._lock:
            self.level, self.message = level, message

    def error(self, message: str) -> None:
        """Report a problem now (bad input, refused request); the node logs it too."""
        with self._lock:
            self.last_error = self._error_since_publish = message
        self.node.get_logger().error(message)
        self.publish(DiagnosticStatus.ERROR, message)

    def publish_periodic(self) -> None:
        with self._lock:
            err, self._error_since_publish = self._error_since_publish, ""
        if err:
            return self.publish(DiagnosticStatus.ERROR, err)
        if self.summary is not None:
            level, message = self.summary()
            return self.publish(level, message)
        self.publish()

    def publish(self, level: bytes | None = None, message: str | None = None) -> None:
        with self._lock:
            level = self.level if level is None else level
            message = self.message if message is None else message
            last_error = self.last_error
        st = DiagnosticStatus(level=level, name=f"{self.node.get_fully_qualified_name()}: {self.name}",
                              message=message, hardware_id=self.node.get_name())
        vals = {**self.values(), "last_error": last_error}
        st.values = [KeyValue(key=k, value=str(v)) for k, v in vals.items()]
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(arr)
