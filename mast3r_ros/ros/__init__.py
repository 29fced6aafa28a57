"""ROS 2 adapter: the only sub-package that may import rclpy, split by role.

Sub-packages (import their modules directly; this package imports nothing so that
`import mast3r_ros.ros` stays cheap and works without rclpy):

* ``nodes``: the two nodes (``localization_node``, ``mapping_node``) and their shared rclpy wiring.
* ``core``: the nodes' ROS-free cores (frames in, poses/maps/status out) and parameter schemas.
* ``compat``: stand-ins for ROS packages without wheels (cv_bridge conversions, message_filters
  sync, tf2 buffer).
* ``bag``: rosbag2 files with ``rosbags``: dataset bags, DDS playback, offline replay.

The live tests' DDS client is ``test/live_client.py`` (not shipped).

The generated interfaces are ``mast3r_ros.msg`` and ``mast3r_ros.srv`` (see README, "ROS 2: two
installs").
"""

__all__ = ["bag", "compat", "core", "nodes"]
