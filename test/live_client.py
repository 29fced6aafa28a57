"""A DDS client for live tests and benchmarks: publishes camera frames, records outputs, calls
services, from its own thread (the node under test runs in another process); plus the process helpers
(per-run DDS domain, ``mast3r-ros launch`` in a child process, stopping a process tree).

Not part of the package: the tests import it as ``.live_client``; ``benchmarks/bench_ros_*.py`` and
``scripts/ros_reference.py`` as ``test.live_client``, run as modules from the repository root
(``python -m benchmarks.bench_ros_qos``), where this ``test`` package comes before the standard library's.

Arrays in: ``rgb`` [H,W,3] uint8 RGB, ``K`` [3,3] float64 pixels, ``depth`` [H,W] float32 metres.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from mast3r_ros.msg import LocalizationStatus
from mast3r_ros.ros.bag.bag_play import PROFILE_ENV, use_large_data_profile
from mast3r_ros.ros.compat.conversions import (
    CameraIntrinsics,
    intrinsics_to_camera_info,
    make_header,
    rgb_to_image,
)
from mast3r_ros.ros.compat.conversions_geometry import tf_message, transform_stamped
from mast3r_ros.ros.compat.tf_io import LATCHED_TF
from mast3r_ros.ros.nodes.node_io import LATCHED, RELIABLE, image_qos

try:
    from tf2_msgs.msg import TFMessage
except ImportError:
    TFMessage = None


def image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "rgb8") -> Image:
    return rgb_to_image(rgb, encoding, make_header(stamp_ns, frame_id))


def depth_msg(depth_m: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """32FC1 metres (NaN kept: the node must see what a driver would send)."""
    d = np.ascontiguousarray(depth_m, dtype=np.float32)
    m = Image(header=make_header(stamp_ns, frame_id), height=d.shape[0], width=d.shape[1],
              encoding="32FC1", is_bigendian=0, step=4 * d.shape[1])
    m.data = d.tobytes()
    return m


def camera_info_msg(K: np.ndarray, size: tuple[int, int], stamp_ns: int, frame_id: str) -> CameraInfo:
    return intrinsics_to_camera_info(CameraIntrinsics(np.asarray(K, np.float64), None, int(size[0]),
                                                      int(size[1])), make_header(stamp_ns, frame_id))


_PROFILE_MARKER = "MAST3R_ROS_TEST_PROFILE_FROM_RUN"
_PROFILE_SET_HERE: dict[str, str] = {}  # what use_publisher_profile put into os.environ


def use_publisher_profile() -> str:
    """Load the Fast DDS large-data profile in this process, as ``mast3r-ros play`` does (same
    function), so this client's 640x480 best-effort images reach the node. Fast DDS reads the
    variable once per process, at its first participant: call before any rclpy context exists."""
    before = os.environ.get(PROFILE_ENV)
    line = use_large_data_profile()
    if before is None and os.environ.get(PROFILE_ENV):
        _PROFILE_SET_HERE[PROFILE_ENV] = os.environ[PROFILE_ENV]
        # pytest-xdist workers inherit this process's environment: the marker tells them the profile
        # came from the test run, not from the user's shell
        os.environ[_PROFILE_MARKER] = os.environ[PROFILE_ENV]
    elif before is not None and os.environ.get(_PROFILE_MARKER) == before:
        _PROFILE_SET_HERE[PROFILE_ENV] = before
    return line


class LiveClient:
    """Publisher/recorder node on a background executor thread (call :meth:`close`)."""

    def __init__(self, domain_id: int, namespace: str = "mast3r", image_topic: str = "/camera/image_raw",
                 info_topic: str = "/camera/camera_info", depth_topic: str = "/camera/depth/image_raw",
                 reliable_images: bool = False, name: str = "mast3r_live_client"):
        use_publisher_profile()  # a camera driver's job; the nodes keep their own default (see ros_env)
        self.context = rclpy.Context()  # own context: no process-global rclpy state
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node(name, context=self.context)
        ns = "/" + namespace.strip("/")
        q = image_qos(reliable_images)
        self.pub_image = self.node.create_publisher(Image, image_topic, q)
        # camera_info is tiny: a deep writer history, so a slow reader loses whole frames, not calibrations
        self.pub_info = self.node.create_publisher(CameraInfo, info_topic, image_qos(reliable_images, 30))
        self.pub_depth = self.node.create_publisher(Image, depth_topic, q)
        self.pub_initialpose = self.node.create_publisher(PoseWithCovarianceStamped, "/initialpose", RELIABLE)
        self.pub_tf_static = (self.node.create_publisher(TFMessage, "/tf_static", LATCHED_TF)
                              if TFMessage is not None else None)
        self.pub_tf = (self.node.create_publisher(TFMessage, "/tf", RELIABLE) if TFMessage is not None
                       else None)
        self.lock = threading.Lock()
        self._closed = threading.Event()
        self._clients: dict[tuple, Any] = {}   # one client per service, kept (see _service_client)
        self._clients_lock = threading.Lock()
        self.received: dict[str, list] = defaultdict(list)
        self._matched: dict[str, int] = defaultdict(int)  # publishers our reader has matched, per key
        self._sub(PoseWithCovarianceStamped, f"{ns}/localization_pose", LATCHED, "pose")
        self._sub(LocalizationStatus, f"{ns}/status", RELIABLE, "status")
        self._sub(DiagnosticArray, "/diagnostics", RELIABLE, "diagnostics")
        self._sub(PointCloud2, f"{ns}/cloud_map", LATCHED, "cloud")
        if TFMessage is not None:
            self._sub(TFMessage, "/tf", RELIABLE, "tf")
        self.ns = ns
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok() and not self._closed.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def subscribe(self, typ, topic: str, qos, key: str) -> None:
        """Record ``topic`` under ``key`` (see :meth:`messages`)."""
        self._sub(typ, topic, qos, key)

    def _sub(self, typ, topic: str, qos, key: str) -> None:
        def cb(msg):
            with self.lock:
                self.received[key].append((time.monotonic(), msg))

        def matched(status):
            with self.lock:
                self._matched[key] = status.current_count
        self.node.create_subscription(typ, topic, cb, qos,
                                      event_callbacks=SubscriptionEventCallbacks(matched=matched))

    def wait_matched(self, keys: tuple[str, ...] = ("status", "pose"), timeout: float = 90.0) -> bool:
        """Wait until our reader of each key has matched a publisher (the *reader's* side of the DDS
        match, from its matched event). A sample sent before that may never arrive (CI lost the first
        two reliable statuses of the README recipe): a listener must be connected before frames flow."""
        def ready():
            with self.lock:
                return all(self._matched[k] > 0 for k in keys)
        return self.wait_for(ready, timeout)

    def messages(self, key: str) -> list:
        with self.lock:
            return [m for _, m in self.received[key]]

    def publish_frame(self, stamp_ns: int, rgb: np.ndarray, K: np.ndarray, frame_id: str = "camera_optical",
                      depth: np.ndarray | None = None, info: bool = True) -> None:
        """camera_info first, then depth, then the image (so the sync completes on the image)."""
        if info:
            self.pub_info.publish(camera_info_msg(K, (rgb.shape[1], rgb.shape[0]), stamp_ns, frame_id))
        if depth is not None:
            self.pub_depth.publish(depth_msg(depth, stamp_ns, frame_id))
        self.pub_image.publish(image_msg(rgb, stamp_ns, frame_id))

    def publish_static_tf(self, parent: str, child: str, T_parent_child: np.ndarray) -> None:
        if self.pub_tf_static is None:
            raise RuntimeError("tf2_msgs is not importable; cannot publish /tf_static")
        self.pub_tf_static.publish(tf_message([transform_stamped(T_parent_child, parent, child, 0)]))

    def publish_tf(self, parent: str, child: str, stamp_ns: int, T_parent_child: np.ndarray) -> None:
        """One dynamic transform on /tf (e.g. odometry odom -> base_link)."""
        self.pub_tf.publish(tf_message([transform_stamped(T_parent_child, parent, child, stamp_ns)]))

    def call(self, srv_type, name: str, request: Any, timeout: float = 30.0):
        """Call ``<namespace>/<name>``; returns the response (raises TimeoutError)."""
        cli = self._service_client(srv_type, name)
        if not cli.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {self.ns}/{name} not available")
        fut = cli.call_async(request)
        done = threading.Event()
        fut.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            raise TimeoutError(f"service {self.ns}/{name} did not answer in {timeout} s")
        return fut.result()

    def _service_client(self, srv_type, name: str):
        """The one client of this service, kept until close. A client made just before its first
        call can lose the answer: Fast DDS's server drops a response when its writer has not matched
        the client's response reader within 100 ms (discovery is asynchronous on each side; on a
        loaded machine it takes longer). A kept client, announced by ``wait_for_service`` early in a
        test, is matched long before it is called, as a robot program's clients are."""
        with self._clients_lock:
            key = (srv_type, name)
            if key not in self._clients:
                self._clients[key] = self.node.create_client(srv_type, f"{self.ns}/{name}")
            return self._clients[key]

    def wait_for(self, predicate: Callable[[], bool], timeout: float, poll: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(poll)
        return predicate()

    def wait_for_service(self, srv_type, name: str, timeout: float) -> bool:
        """Whether the service is offered within ``timeout``; its client is kept for :meth:`call`."""
        return self._service_client(srv_type, name).wait_for_service(timeout_sec=timeout)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2.0)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def user_environ() -> dict[str, str]:
    """``os.environ`` without the transport profile :func:`use_publisher_profile` loaded for this
    process's own publisher: the environment a user's shell gives the processes a test starts."""
    return {k: v for k, v in os.environ.items() if _PROFILE_SET_HERE.get(k) != v and k != _PROFILE_MARKER}


def ros_env(domain_id: int) -> dict[str, str]:
    """Environment for node processes: this machine only, the run's own domain (see user_environ)."""
    return {**user_environ(), "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def unique_domain_id() -> int:
    """A domain id derived from the pid and the time, so parallel runs differ; under pytest-xdist each
    worker (``PYTEST_XDIST_WORKER`` gw0, gw1, ...) draws from its own range, so two tests running at once
    never share a domain (one worker runs one test at a time)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    span = 100 // workers
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    return 1 + index * span + (os.getpid() * 31 + time.monotonic_ns() // 1_000_000) % span


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process in MiB (Linux /proc/PID/status), NaN when it is gone. ``field``:
    ``VmRSS`` (all), ``RssAnon`` (private memory: what a backlog grows), ``RssShmem`` (touched pages of
    shared memory, e.g. the Fast DDS segments mapped from other processes, bounded by their size)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_launch(mode: str, domain_id: int, args: list[str], log_path: Path) -> subprocess.Popen:
    """``mast3r-ros launch MODE ARGS`` from this venv, its output to ``log_path``."""
    exe = Path(sys.executable).parent / "mast3r-ros"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mast3r_ros.cli"]
    log = open(log_path, "wb")
    try:
        return subprocess.Popen(cmd + ["launch", mode] + args, stdout=log, stderr=subprocess.STDOUT,
                                env=ros_env(domain_id), start_new_session=True)
    finally:
        log.close()


def stop_process_tree(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0
                      ) -> tuple[float, list[int]]:
    """Signal ``proc``; wait for it and its children. Returns (seconds taken, pids still alive);
    anything still alive after ``timeout`` is SIGKILLed (tests must not leak processes). SIGKILL goes
    to the children too: a killed parent cannot pass it on."""
    children = child_pids(proc.pid)
    t0 = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(sig)
    if sig == signal.SIGKILL:
        for c in children:
            try:
                os.kill(c, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    while time.monotonic() - t0 < timeout and any(pid_alive(c) for c in children):
        time.sleep(0.05)
    took = time.monotonic() - t0
    left = [p for p in [proc.pid, *children] if pid_alive(p)]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.wait(5)
    return took, left
