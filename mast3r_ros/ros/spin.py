"""Run a node on a multi-threaded executor and shut it down cleanly on Ctrl-C / SIGTERM."""
from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor


def run_node(node_cls, argv: list[str], name: str, startup_errors: tuple[type[BaseException], ...],
             num_threads: int = 4) -> int:
    """Create ``node_cls()`` and spin it. Start-up errors (bad parameter, missing map) are
    printed with their reason and give exit code 2; a signal gives a clean exit 0."""
    rclpy.init(args=argv)  # installs SIGINT/SIGTERM handlers that shut the context down
    try:
        node = node_cls()
    except startup_errors as exc:
        print(f"{name}: error: {exc}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):  # Ctrl-C while loading the map / warming up
        rclpy.try_shutdown()
        return 0
    executor = MultiThreadedExecutor(num_threads=num_threads)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
