"""Publish a rosbag2 folder over DDS with its recorded timing, like ``ros2 bag play``.

The serialised CDR bytes of each message are published as they are (rclpy's raw publish), so
header stamps are the recorded ones and nothing is re-encoded. Messages go out at their log
time offsets divided by ``rate``. QoS: ``/tf_static`` is reliable + transient_local (late
subscribers still get it, as from a robot's static TF broadcaster); every other topic reliable,
volatile, keep-last 10 (what ``ros2 bag play`` offers without recorded QoS overrides); best
effort subscribers receive from it too.

Transport: images of 640x480 rgb8 (900 KiB) do not fit Fast DDS's default 512 KiB shared-memory
segment, and best-effort readers then lose most frames (config/fastdds_large_data.xml says why and
what was measured). :func:`use_large_data_profile` points Fast DDS at that profile; ``mast3r-ros
play`` calls it before creating its participant.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import rclpy
from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from mast3r_ros.paths import config_file
from mast3r_ros.ros.bag.bag_io import message_class
from mast3r_ros.ros.compat.conversions import ns_to_stamp

LATCHED_TOPICS = ("/tf_static",)
_SLEEP_SLICE_S = 0.05  # longest uninterrupted sleep, so Ctrl-C / SIGTERM are handled promptly


@dataclass(frozen=True)
class PlayConfig:
    rate: float = 1.0                     # playback speed factor (2 = twice as fast)
    topics: Sequence[str] | None = None   # only these topics (None = all)
    wait_for: Sequence[str] = ()          # before starting, wait until each has a subscriber
    wait_timeout_s: float = 30.0
    start_delay_s: float = 0.0            # extra pause before the first message
    # After --wait-for: Publisher.get_subscription_count() is the *writer's* DDS match count (rmw_fastrtps:
    # on_publication_matched), and --wait-for already waits for it. The reader matches our writer on its
    # own, a moment later, and drops samples from writers it has not matched yet; no rclpy API shows the
    # reader's side, so this fixed pause remains (the README recipe lost its first 2 of 15 frames without).
    match_settle_s: float = 1.0
    clock: bool = False                   # also publish /clock (rosgraph_msgs/Clock) at bag time
    clock_hz: float = 40.0                # /clock rate, steady between messages (ros2 bag play's default)
    # How long to wait at the end for reliable subscribers to acknowledge every message. A sample
    # sent before the DDS match completed in both directions is repaired only at the writer's
    # next heartbeat (Fast DDS: every 3 s), so this must exceed that period.
    ack_timeout_s: float = 10.0
    # Best-effort samples leave through the writer's asynchronous send thread and are never
    # acknowledged, so nothing says when the last one is out: destroying the publishers right after
    # the last publish lost the final image in 1 of 25 plays under two busy loops. A short linger.
    linger_s: float = 0.5
    node_name: str = "mast3r_bag_player"


PROFILE_NAME = "fastdds_large_data.xml"
PROFILE_ENV = "FASTRTPS_DEFAULT_PROFILES_FILE"  # Fast DDS 2.x (Jazzy); 3.x also reads FASTDDS_...


def large_data_profile() -> Path:
    """config/fastdds_large_data.xml from the installed package share (workspace) or this checkout."""
    return config_file(PROFILE_NAME)


def use_large_data_profile(environ=os.environ) -> str:
    """Set ``FASTRTPS_DEFAULT_PROFILES_FILE`` to our profile in ``environ``, unless the user chose a
    profile or another RMW. Takes effect for participants created afterwards in this process (Fast
    DDS reads the variable once). Returns a line saying what was done."""
    for var in (PROFILE_ENV, "FASTDDS_DEFAULT_PROFILES_FILE"):
        if environ.get(var):
            return f"Fast DDS profile from {var}={environ[var]}"
    rmw = environ.get("RMW_IMPLEMENTATION", "") or "rmw_fastrtps_cpp"
    if not rmw.startswith("rmw_fastrtps"):
        return f"{rmw}: no Fast DDS transport profile"
    path = large_data_profile()
    if not path.is_file():
        return f"no {PROFILE_NAME} found; Fast DDS default transports (large images may be lost)"
    environ[PROFILE_ENV] = str(path)
    return f"Fast DDS profile {path}"


def _qos(topic: str) -> QoSProfile:
    if topic in LATCHED_TOPICS:
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


class _SteadyClock:
    """/clock at a fixed wall-clock rate: bag time = first stamp + elapsed wall time x rate (before
    the first message, the first stamp). Ticks missed by a late wake-up are skipped, not bunched."""

    def __init__(self, node, hz: float, rate: float):
        from rosgraph_msgs.msg import Clock

        if not hz > 0:
            raise ValueError(f"clock rate must be > 0 Hz, got {hz}")
        self._Clock = Clock
        self.pub = node.create_publisher(Clock, "/clock", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self.period, self.rate = 1.0 / hz, rate
        self.origin: tuple[float, int] | None = None
        self.next_tick = 0.0

    def start(self, start_s: float, first_ns: int) -> None:
        self.origin, self.next_tick = (start_s, first_ns), time.monotonic()

    def tick(self, now: float) -> float:
        """Publish when a tick is due; returns the time of the next one."""
        if self.origin is not None and now >= self.next_tick:
            start_s, first_ns = self.origin
            bag_ns = first_ns + max(0, round((now - start_s) * self.rate * 1e9))
            self.pub.publish(self._Clock(clock=ns_to_stamp(bag_ns)))
            self.next_tick += self.period
            if self.next_tick <= now:
                self.next_tick = now + self.period
        return self.next_tick


def _sleep_until(deadline: float, context, clock: _SteadyClock | None = None) -> bool:
    """Sleep until time.monotonic() reaches deadline, ticking the clock; False when the context
    shut down first."""
    while context.ok():
        now = time.monotonic()
        wake = clock.tick(now) if clock is not None else float("inf")
        left = deadline - now
        if left <= 0:
            return True
        time.sleep(max(0.0, min(left, _SLEEP_SLICE_S, wake - now)))
    return False


def _wait_for_subscribers(node, publishers: dict, topics: Sequence[str], timeout_s: float, context) -> None:
    missing = [t for t in topics if t not in publishers]
    if missing:
        raise ValueError(f"--wait-for topics not in the bag: {missing}")
    deadline = time.monotonic() + timeout_s
    while context.ok():
        waiting = [t for t in topics if publishers[t].get_subscription_count() == 0]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"no subscriber on {waiting} after {timeout_s:.0f} s")
        time.sleep(_SLEEP_SLICE_S)


def _wait_for_acks(publishers: dict, timeout_s: float, log) -> None:
    """Reliable delivery of the last messages before the publishers go away."""
    deadline = time.monotonic() + timeout_s
    for topic, pub in publishers.items():
        left = max(deadline - time.monotonic(), 1e-3)
        if not pub.wait_for_all_acked(Duration(seconds=left)):
            log(f"play: warning: {topic}: not every subscriber acknowledged within {timeout_s:g} s")


def play_bag(path: str | Path, cfg: PlayConfig = PlayConfig(), log=print) -> dict[str, int]:
    """Publish the bag at ``path``; returns {topic: messages published}. Stops early on shutdown
    (Ctrl-C / SIGTERM through rclpy's signal handlers)."""
    from rosbags.rosbag2 import Reader

    if not cfg.rate > 0:
        raise ValueError(f"rate must be > 0, got {cfg.rate}")
    context = rclpy.Context()
    # rclpy installs its SIGINT/SIGTERM handlers (shut the context down) only when asked for a
    # context of our own; the playback loop then stops at the next slice.
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.ALL)
    node = rclpy.create_node(cfg.node_name, context=context)
    counts: dict[str, int] = {}
    try:
        with Reader(path) as reader:
            conns = [c for c in reader.connections if cfg.topics is None or c.topic in cfg.topics]
            if not conns:
                raise ValueError(f"{path}: no messages on {list(cfg.topics or [])}")
            pubs = {c.topic: node.create_publisher(message_class(c.msgtype), c.topic, _qos(c.topic))
                    for c in conns}
            by_id = {c.id: pubs[c.topic] for c in conns}
            clock = _SteadyClock(node, cfg.clock_hz, cfg.rate) if cfg.clock else None
            waitable = {**pubs, "/clock": clock.pub} if clock is not None else pubs
            _wait_for_subscribers(node, waitable, cfg.wait_for, cfg.wait_timeout_s, context)
            start = time.monotonic() + cfg.start_delay_s + (cfg.match_settle_s if cfg.wait_for else 0.0)
            log(f"play: {path}: {len(pubs)} topics, rate {cfg.rate:g}")
            first_ns = None
            for conn, ns, raw in reader.messages(connections=conns):
                if first_ns is None:
                    first_ns = ns
                    if clock is not None:
                        clock.start(start, ns)
                if not _sleep_until(start + (ns - first_ns) / 1e9 / cfg.rate, context, clock):
                    break
                by_id[conn.id].publish(bytes(raw))
                counts[conn.topic] = counts.get(conn.topic, 0) + 1
            if not context.ok():
                log("play: interrupted")
            if context.ok():
                _wait_for_acks(pubs, cfg.ack_timeout_s, log)
                _sleep_until(time.monotonic() + cfg.linger_s, context)
    finally:
        node.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)
    return counts

