"""rclpy plumbing shared by both nodes: QoS, callback guarding, synchronised camera input, latency.

Nodes stay thin: they wire these to a ROS-free core. The stand-ins for ROS packages missing here
live in ``ros.compat``: the synchroniser (message_filters), TF in/out (tf2_ros) and /diagnostics
(diagnostic_updater).
"""
from __future__ import annotations

import time
import traceback
from collections import deque
from typing import Callable

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from mast3r_ros.ros.compat.conversions import stamp_to_ns
from mast3r_ros.ros.compat.sync import ApproximateSync
from mast3r_ros.ros.core.frame_queue import FrameWorker
from mast3r_ros.ros.core.frames import StampGuard


def image_qos(reliable: bool, depth: int = 5) -> QoSProfile:
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)


LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)


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
