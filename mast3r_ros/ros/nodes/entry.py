"""Console entry points of the two nodes (pyproject.toml, CMakeLists.txt).

Why not ``<node module>:main`` directly: the console script imports the node module before any of
our code runs, and those imports (rclpy, numpy, OpenCV, the front-end) take seconds on a small
machine; Ctrl-C in that time printed a KeyboardInterrupt traceback. Here the import happens inside
a handler, so Ctrl-C at any moment exits quietly with code 0, as it does after start-up
(spin.run_node). This module imports nothing heavy itself.
"""
from __future__ import annotations

import importlib
import os
import signal
import sys
import threading


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
        rc = main()
    except KeyboardInterrupt:  # between run_node's steps, before rclpy's own handlers are installed
        rc = 0
    return _leave(rc)


def _leave(rc: int) -> int:
    """``rc``, or exit at once with it when one of our worker threads (``mast3r-*``: a mapping pass, a
    frame in the network) is still computing after the node shut down. Why: those daemon threads run
    in torch's C++ code without the GIL, and tearing the interpreter down under them aborted the process
    ("terminate called without an active exception", Ctrl-C during a MASt3R mapping pass). The node is
    shut down and its files written or removed by then; only the unfinished computation is dropped."""
    busy = [t for t in threading.enumerate() if t.name.startswith("mast3r-") and t.is_alive()]
    if busy:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


def localization_node() -> int:
    return _run("mast3r_ros.ros.nodes.localization_node")


def mapping_node() -> int:
    return _run("mast3r_ros.ros.nodes.mapping_node")
