"""mast3r_ros.ros.testing: DDS helpers for the live tests, the ROS benchmarks and ``scripts/ros_reference.py``.

They live in the package, not under ``test/``, because ``benchmarks/`` and ``scripts/`` import them too and
run as plain scripts (no ``sys.path`` hacks); nothing else in ``mast3r_ros`` imports them.

Modules
-------
* :mod:`~mast3r_ros.ros.testing.live_client` - publish frames, record outputs, call services; per-run DDS domain.
* :mod:`~mast3r_ros.ros.testing.flood` - flood a running localization node at a fixed rate and measure it.

Import the modules by path; this package imports nothing so that it stays cheap.
"""

__all__ = ["flood", "live_client"]
