"""ROS 2 adapter: the only sub-package that may import rclpy.

Modules (import them directly; this package imports nothing so that `import mast3r_ros.ros`
stays cheap and works without rclpy):

* ``conversions``: Image / CompressedImage / CameraInfo <-> numpy and ``CameraIntrinsics``
  (no cv_bridge), stamps and headers.
* ``conversions_geometry``: poses, covariance, PoseArray, Path, TF, PointCloud2; optical vs body
  frame (REP 103).
* ``bag``, ``bag_play``: rosbag2 files with ``rosbags`` (dataset bags, reading) and DDS playback.
* nodes and their ROS-free cores: ``localization_node``, ``mapping_node`` and their helpers.

The generated interfaces are ``mast3r_ros.msg`` and ``mast3r_ros.srv`` (see README, "ROS 2: two
installs").
"""
