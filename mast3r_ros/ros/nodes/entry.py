"""Console entry points of the two nodes (pyproject.toml, CMakeLists.txt).

Why not ``<node module>:main`` directly: the console script imports the node module before any of
our code runs, and those imports (rclpy, numpy, OpenCV, the front-end) take seconds on a small
machine; Ctrl-C in that time printed a KeyboardInterrupt traceback. Here the import happens inside
a handler, so Ctrl-C at any moment exits quietly with code 0, as it does after start-up
(spin.run_node). This module imports nothing heavy itself.
"""
from __future__ import annotations

import importlib


def _run(module: str) -> int:
    try:
        return importlib.import_module(module).main()
    except KeyboardInterrupt:  # before run_node's own handling (imports) or between its steps
        return 0


def localization_node() -> int:
    return _run("mast3r_ros.ros.nodes.localization_node")


def mapping_node() -> int:
    return _run("mast3r_ros.ros.nodes.mapping_node")
