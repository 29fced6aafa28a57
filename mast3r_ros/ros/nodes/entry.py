"""Console entry points of the two nodes (pyproject.toml, CMakeLists.txt).

Why not ``<node module>:main`` directly: the console script imports the node module before any of
our code runs, and those imports (rclpy, numpy, OpenCV, the front-end) take seconds on a small
machine; Ctrl-C in that time printed a KeyboardInterrupt traceback. Here the import happens inside
a handler, so Ctrl-C at any moment exits quietly with code 0, as it does after start-up
(spin.run_node). This module imports nothing heavy itself.
"""
from __future__ import annotations

import importlib
import signal


def _run(module: str) -> int:
    interrupted: list[int] = []

    def on_sigint(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    # Some library's import code swallows KeyboardInterrupt (a bare ``except``): under load a Ctrl-C
    # landed there and the node started as if never interrupted. The flag remembers it all the same.
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        return 0
    try:
        return main()
    except KeyboardInterrupt:  # between run_node's steps, before rclpy's own handlers are installed
        return 0


def localization_node() -> int:
    return _run("mast3r_ros.ros.nodes.localization_node")


def mapping_node() -> int:
    return _run("mast3r_ros.ros.nodes.mapping_node")
