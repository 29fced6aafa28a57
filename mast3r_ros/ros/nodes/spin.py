"""Run a node on a multi-threaded executor and shut it down cleanly on Ctrl-C / SIGTERM."""
from __future__ import annotations

import fcntl
import os
import sys
import tempfile
import time
from pathlib import Path

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.utilities import remove_ros_args

from mast3r_ros.ros.nodes.launch_description import LIFECYCLE_FLAG


def ignore_half_built_futures() -> None:
    """Install a ``sys.unraisablehook`` that drops one harmless message and passes the rest on.

    Why: a Ctrl-C's KeyboardInterrupt can land inside rclpy's ``Task.__init__`` before it sets
    ``_exception``; collecting that half-built Task makes ``Future.__del__`` raise AttributeError, which
    Python prints as an "Exception ignored ... Traceback" on the user's terminal (1 of 20 random Ctrl-Cs
    in ``test_ros_live_sigint.py`` once). Only that exception from that method is dropped."""
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if (isinstance(unraisable.exc_value, AttributeError)
                and getattr(unraisable.object, "__qualname__", "") == "Future.__del__"):
            return
        previous(unraisable)

    sys.unraisablehook = hook


def run_node(node_cls, argv: list[str], name: str, startup_errors: tuple[type[BaseException], ...],
             num_threads: int = 4, managed_cls=None) -> int:
    """Create ``node_cls()`` (``managed_cls()`` when ``argv`` has ``--lifecycle`` before any
    ``--ros-args``) and spin it. Start-up errors (bad parameter, missing map) are printed with their
    reason and give exit code 2; a signal gives a clean exit 0. A managed node starts unconfigured:
    its errors come as FAILUREs of its transitions."""
    if managed_cls is not None and LIFECYCLE_FLAG in remove_ros_args(argv)[1:]:
        node_cls = managed_cls
    ignore_half_built_futures()
    rclpy.init(args=argv)  # installs SIGINT/SIGTERM handlers that shut the context down
    started = time.monotonic()
    try:
        node = node_cls()
    except BaseException as exc:  # noqa: BLE001 - sorted below: signal, start-up error, or a real failure
        by_signal = stopped_by_signal(exc)  # before our own shutdown below
        rclpy.try_shutdown()
        if by_signal:  # Ctrl-C while loading the map / warming up
            return 0
        if isinstance(exc, startup_errors):
            print(f"{name}: error: {exc}", file=sys.stderr, flush=True)
            return 2
        raise
    try:
        twin, lock = refuse_twin(node, started)
    except BaseException as exc:  # noqa: BLE001
        by_signal = stopped_by_signal(exc)
        node.destroy_node()
        rclpy.try_shutdown()
        if by_signal:  # Ctrl-C while looking for a twin
            return 0
        raise
    if twin:
        print(f"{name}: error: {twin}", file=sys.stderr, flush=True)
        node.destroy_node()
        rclpy.try_shutdown()
        return 2
    executor = MultiThreadedExecutor(num_threads=num_threads)
    executor.add_node(node)
    try:
        executor.spin()
    except BaseException as exc:  # noqa: BLE001
        if not stopped_by_signal(exc):
            raise
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown()
        lock.close()  # releases the node's name
    return 0


def stopped_by_signal(exc: BaseException) -> bool:
    """Whether ``exc`` is how Ctrl-C / SIGTERM showed up: KeyboardInterrupt, rclpy's shutdown
    exception, or an RCLError ("context is not valid") from an rcl call that was in flight when the
    signal handler shut the context down. Under two busy loops such a call failed once in 20 random
    Ctrl-Cs, in the executor's wait-set creation and, in another run, in refuse_twin's graph query."""
    if isinstance(exc, (KeyboardInterrupt, ExternalShutdownException)):
        return True
    return isinstance(exc, _rclpy.RCLError) and not rclpy.ok()


def refuse_twin(node, started: float, discovery_s: float = 2.0):
    """('' or why this node must not run, the held name lock). Two nodes of one fully qualified name in one
    ROS domain would both answer every service and publish every pose twice: the one started second
    refuses. On one machine an exclusive lock per (domain, name) decides at once (released by the OS when
    the process ends, however it ends); nodes on other machines are looked for in the ROS graph until
    ``started + discovery_s`` (best effort: discovery may be slower than that)."""
    fq_name = node.get_fully_qualified_name()
    twin = (f"a node named {fq_name} is already running in ROS domain {os.environ.get('ROS_DOMAIN_ID', '0')}; "
            "stop it or start this one in another namespace (--namespace / namespace:=)")
    lock = _name_lock(fq_name)
    if lock is None:
        return twin, None
    while True:
        same = [ns for n, ns in node.get_node_names_and_namespaces() if f"{ns.rstrip('/')}/{n}" == fq_name]
        if len(same) > 1:
            lock.close()
            return twin, None
        if time.monotonic() >= started + discovery_s or not rclpy.ok():
            return "", lock
        time.sleep(0.1)


def _name_lock(fq_name: str):
    """The open lock file of (ROS_DOMAIN_ID, ``fq_name``) on this machine, or None when another process holds it."""
    folder = Path(tempfile.gettempdir()) / f"mast3r_ros-{os.getuid()}" / "node_names"
    folder.mkdir(parents=True, exist_ok=True)
    key = f"domain{os.environ.get('ROS_DOMAIN_ID', '0')}{fq_name}".replace("/", "_")
    handle = open(folder / f"{key}.lock", "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
