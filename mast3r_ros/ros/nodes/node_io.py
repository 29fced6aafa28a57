"""rclpy plumbing shared by both nodes: QoS, synchronised camera input, TF in/out, diagnostics.

Nodes stay thin: they wire these to a ROS-free core. Where a ROS package is missing here
(tf2_ros, diagnostic_updater, message_filters) our own equivalent is used; tf2_ros is used
when importable.
"""
from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from typing import Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from mast3r_ros.ros.compat.conversions import stamp_to_ns
from mast3r_ros.ros.compat.conversions_geometry import transform_to_T
from mast3r_ros.ros.compat.sync import ApproximateSync
from mast3r_ros.ros.compat.tf_tree import TfLookupError, TfTree
from mast3r_ros.ros.core.frame_queue import FrameWorker
from mast3r_ros.ros.core.frames import StampGuard

try:  # the real tf2_ros where installed (a ROS 2 workspace); our TfTree otherwise
    import tf2_ros  # type: ignore
except ImportError:
    tf2_ros = None
try:
    from tf2_msgs.msg import TFMessage
except ImportError:
    TFMessage = None


def image_qos(reliable: bool, depth: int = 5) -> QoSProfile:
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)


LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def guarded(node, what: str, fn: Callable) -> Callable:
    """``fn`` wrapped for use as a subscription, timer, service or worker callback.

    An exception is logged (one line and the stack at debug level), reported on /diagnostics as
    ERROR (``node.diag`` when it exists) and swallowed, so the node lives on; a service then
    answers ``success=false`` with the reason when its response has those fields.
    """
    def call(*args):
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - the point: no callback may kill the node
            if not node.context.ok():
                return None  # Ctrl-C shut the context down under a running callback: nothing to report
            message = f"{what} failed: {type(exc).__name__}: {exc}"
            try:
                node.get_logger().debug(traceback.format_exc())
                diag = getattr(node, "diag", None)
                if diag is not None:
                    diag.error(message)
                else:
                    node.get_logger().error(message)
            except Exception:  # noqa: BLE001 - shutting down: the context may be gone
                pass
            resp = args[1] if len(args) == 2 else None
            if resp is not None and hasattr(resp, "success") and hasattr(resp, "message"):
                resp.success, resp.message = False, message
                return resp
            return resp
    return call


class CameraInput:
    """image + camera_info (+ depth) subscriptions -> sync -> newest-frame worker.

    ``group`` runs the silence-check timer; each subscription has its own group (see below).

    ``handler(stamp_ns, {'image': Image, 'camera_info': CameraInfo, 'depth': Image?}, t_received)``
    runs on the worker thread; ``on_reject(stamp_ns, reason)`` on the callback thread, also for
    images refused by the stamp guard (far future); ``on_reset(reason)`` when image stamps went
    backwards (the sync is reset here, the caller resets its tracking state).
    """

    def __init__(self, node, params, handler: Callable, on_reject: Callable[[int, str], None], group,
                 on_reset: Callable[[str], None] | None = None):
        self.node = node
        keys = ("image", "camera_info") + (("depth",) if params.subscribe_depth else ())
        names = {k: node.resolve_topic_name(k) for k in keys}
        self.topic_names = names
        self.sync = ApproximateSync(keys, params.approx_sync_max_interval, params.sync_queue_size, names)
        handler = guarded(node, "frame processing", handler)
        self.worker = FrameWorker(lambda item: handler(*item), params.frame_queue_size).start()
        self.on_reject = on_reject
        self.on_reset = on_reset
        self.guard = StampGuard()
        self.max_interval_ns = int(params.approx_sync_max_interval * 1e9)
        # recent partner messages, re-offered to the sync after a reset (a bag loop's first frame
        # has its camera_info/depth queued before its image shows the stamps went backwards)
        self._recent = {k: deque(maxlen=max(5, params.sync_queue_size)) for k in keys[1:]}
        self.received: deque[float] = deque(maxlen=300)
        self.last_synced = time.monotonic()
        reliable = params.qos_image == "reliable"
        # Every topic's DDS history holds as many messages as the sync keeps: while the executor
        # cannot take messages (another thread holds the GIL, the process is starved), a reader keeps
        # only the newest ``depth`` and loses older ones unseen. Images at depth 10 lost 12 frames of a
        # 30 Hz bag in one ~0.7 s stall while camera_info (depth 30) lost none; benchmarks/bench_ros_qos.py
        # --gil-stall measures it. Memory is taken only while a backlog exists.
        qos = {k: image_qos(reliable, max(10, params.sync_queue_size)) for k in keys}
        types = {"image": Image, "camera_info": CameraInfo, "depth": Image}
        # One mutually exclusive group per topic: callbacks of one topic run one at a time, in
        # arrival order (the sync relies on that), topics run side by side. Partners first: the
        # executor serves earlier subscriptions first, and starving an image only drops a frame.
        self.subs = [node.create_subscription(types[k], k, guarded(node, f"{k} callback",
                                                                   lambda m, k=k: self._add(k, m)), qos[k],
                                              callback_group=MutuallyExclusiveCallbackGroup())
                     for k in reversed(keys)]
        self._warn_after = params.no_input_warn_s
        self.timer = node.create_timer(1.0, guarded(node, "input check", self._check_silence), callback_group=group)

    def _add(self, key: str, msg) -> None:
        now = time.monotonic()
        stamp = stamp_to_ns(msg.header.stamp)
        if key == "image":
            self.received.append(now)
            verdict, why = self.guard.check(stamp, self.node.get_clock().now().nanoseconds)
            if verdict == "refuse":
                self.on_reject(stamp, why)
                return
            if verdict == "reset":
                self._resync(stamp)
                if self.on_reset is not None:
                    self.on_reset(why)
        elif self.guard.ahead_of_clock(stamp, self.node.get_clock().now().nanoseconds):
            return  # kept out of the sync: it would complete other images' sets as "newer partner"
        else:
            self._recent[key].append((stamp, msg, now))
        self._feed(key, stamp, (msg, now), now)

    def _resync(self, image_stamp: int) -> None:
        """Reset the sync and give it back the partners of the new timeline's first image."""
        self.sync.reset()
        for key, recent in self._recent.items():
            for stamp, msg, t in list(recent):
                if abs(stamp - image_stamp) <= self.max_interval_ns:
                    self._feed(key, stamp, (msg, t))

    def _feed(self, key: str, stamp: int, item, arrival_s: float | None = None) -> None:
        """Into the sync; ``arrival_s`` counts the message in the input statistics (None on a re-feed)."""
        res = self.sync.add(key, stamp, item, arrival_s)
        for stamp, reason in res.rejected:
            self.on_reject(stamp, reason)
        for stamp, group in zip(res.stamps, res.sets):
            self.last_synced = time.monotonic()
            t_rx = group["image"][1]
            self.worker.submit((stamp, {k: m for k, (m, _) in group.items()}, t_rx))

    def _check_silence(self) -> None:
        idle = time.monotonic() - self.last_synced
        if idle > self._warn_after:
            self.node.get_logger().warn(
                f"no synchronised input for {idle:.0f} s on {', '.join(self.topic_names.values())}",
                throttle_duration_sec=self._warn_after)

    def input_hz(self) -> float:
        return rate_hz(self.received)

    def silent_s(self) -> float:
        """Seconds since the last synchronised frame (or since start)."""
        return time.monotonic() - self.last_synced

    def reset(self) -> None:
        self.sync.reset()
        self.guard.reset()

    def input_stats(self) -> dict[str, str]:
        """Per-topic arrivals, rates and stamp gaps at the sync (frames lost before the node)."""
        return self.sync.input_stats()

    def stop(self) -> None:
        self.worker.stop(5.0)


def rate_hz(stamps: deque, window_s: float = 5.0) -> float:
    now = time.monotonic()
    recent = [t for t in stamps if now - t <= window_s]
    return (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0


# The image stamp counts as on the node's clock when it lies this far behind or ahead of it (s).
STAMP_AGE_MAX_S = 60.0
STAMP_AHEAD_MAX_S = 1.0


def stamp_latency_s(now_ns: int, stamp_ns: int) -> float:
    """Published ``latency``: the node clock's now minus the image stamp (s), NaN when the stamp is
    not on the node's clock (a bag stamped from 0 or recorded earlier, played without ``--clock`` and
    ``use_sim_time``: the difference is the bag's age, not a latency). No stamp: 0."""
    if not stamp_ns:
        return 0.0
    age_ns = now_ns - stamp_ns
    on_clock = -STAMP_AHEAD_MAX_S * 1e9 <= age_ns <= STAMP_AGE_MAX_S * 1e9
    return age_ns * 1e-9 if on_clock else float("nan")


class TfIO:
    """TF lookups (tf2_ros buffer, or our TfTree fed from /tf and /tf_static) and TF publishing."""

    def __init__(self, node, group):
        self.node = node
        self.tree = TfTree(cache_s=30.0)
        if tf2_ros is not None:
            self.buffer = tf2_ros.Buffer()
            self.listener = tf2_ros.TransformListener(self.buffer, node)
            self.broadcaster = tf2_ros.TransformBroadcaster(node)
            self.pub = None
        elif TFMessage is not None:
            self.buffer = None
            node.create_subscription(TFMessage, "/tf", guarded(node, "/tf", lambda m: self._feed(m, False)),
                                     TF_QOS, callback_group=group)
            node.create_subscription(TFMessage, "/tf_static", guarded(node, "/tf_static",
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

    def odom_to_base(self, odom, p, stamp_ns: int) -> tuple[np.ndarray | None, str]:
        """([4,4] T_odom_base or None, note) at the image stamp under the ``publish_odom_tf`` policy of
        ``odom`` (tf_tree.OdomSource); ``p`` gives the frames and ``tf_timeout``."""
        return odom.T_odom_base(
            lambda: self.lookup(p.odom_frame, p.base_frame, stamp_ns, p.tf_timeout), time.monotonic(),
            lambda: self.lookup(p.odom_frame, p.base_frame, 0, 0.0)[0] is not None)

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


LATCHED_TF = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Diagnostics:
    """/diagnostics publisher (what diagnostic_updater would do): periodic summary + immediate errors.

    Levels are ``DiagnosticStatus.OK/WARN/ERROR`` (bytes in rclpy's generated message).
    ``summary()`` -> (level, message) gives the periodic level from the node's state; an error
    reported since the previous periodic message makes that one ERROR too.
    """

    def __init__(self, node, name: str, values: Callable[[], dict[str, str]], group,
                 summary: Callable[[], tuple[bytes, str]] | None = None):
        self.node, self.name, self.values, self.summary = node, name, values, summary
        self._error_since_publish = ""
        self.pub = node.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE)
        self._lock = threading.Lock()
        self.level, self.message = DiagnosticStatus.WARN, "starting"
        self.last_error = ""
        node.create_timer(1.0, guarded(node, "diagnostics", self.publish_periodic), callback_group=group)

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
