"""mast3r_ros.ros.nodes: the two rclpy nodes and the wiring they share (rclpy; thin over ``ros.core``).

Modules
-------
* :mod:`~mast3r_ros.ros.nodes.localization_node` - ``localization_node``: frames against a keyframe map -> pose, TF.
* :mod:`~mast3r_ros.ros.nodes.mapping_node` - ``mapping_node``: RGB-D frames + odometry -> keyframe map.
* :mod:`~mast3r_ros.ros.nodes.base` - what both node bodies share: TF, status, services, pause/resume, ``main``.
* :mod:`~mast3r_ros.ros.nodes.entry` - console entry points: the node imported inside a Ctrl-C handler.
* :mod:`~mast3r_ros.ros.nodes.managed` - one node body run plain or as an ``rclpy.lifecycle`` node.
* :mod:`~mast3r_ros.ros.nodes.spin` - multi-threaded executor, clean shutdown on Ctrl-C / SIGTERM.
* :mod:`~mast3r_ros.ros.nodes.node_io` - QoS, callback guarding, synchronised camera input, latency.
* :mod:`~mast3r_ros.ros.nodes.node_params` - declare/validate ROS parameters from ``ros.core.params``.
* :mod:`~mast3r_ros.ros.nodes.outputs` - the localization node's messages for one frame (live and replay).
* :mod:`~mast3r_ros.ros.nodes.launch_description` - the launch node list as plain data (ROS-free).

Import the modules by path; this package imports nothing so that it stays cheap.
"""

__all__ = ["base", "entry", "launch_description", "localization_node", "managed", "mapping_node", "node_io",
           "node_params", "outputs", "spin"]
