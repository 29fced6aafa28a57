"""mast3r_ros.ros.core: the nodes' ROS-free cores (numpy and dataclasses in and out; never rclpy or messages).

Modules
-------
* :mod:`~mast3r_ros.ros.core.localization_core` - frames in, poses/status/TF out, service actions.
* :mod:`~mast3r_ros.ros.core.mapping_core` - odometry-gated RGB-D keyframes into the incremental mapper.
* :mod:`~mast3r_ros.ros.core.params` - node parameter schemas: the core dataclasses under nested names, plus
  the ROS-only parameters (built on :class:`mast3r_ros.config_fields.SettingSet`).
* :mod:`~mast3r_ros.ros.core.frames` - decoded input frames and their validation (stamps, image, depth).
* :mod:`~mast3r_ros.ros.core.frame_queue` - newest-frame bounded queue and its worker thread.
* :mod:`~mast3r_ros.ros.core.reference` - inputs of the ``set_reference`` service (files or the current frame).
* :mod:`~mast3r_ros.ros.core.model_source` - the MASt3R model of a node: checkpoint or oracle stand-in.

Import the modules by path; this package imports nothing so that it stays cheap.
"""

__all__ = ["frame_queue", "frames", "localization_core", "mapping_core", "model_source", "params", "reference"]
