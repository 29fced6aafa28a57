"""mast3r_ros.ros.compat: what replaces ROS packages that have no wheels (cv_bridge, message_filters, tf2).

Modules
-------
* :mod:`~mast3r_ros.ros.compat.conversions` - Image / CompressedImage / CameraInfo <-> numpy (cv_bridge), stamps.
* :mod:`~mast3r_ros.ros.compat.conversions_geometry` - poses, covariance, Path, TF, PointCloud2 <-> numpy.
* :mod:`~mast3r_ros.ros.compat.decode` - synchronised messages -> :class:`~mast3r_ros.ros.core.frames.Frame`.
* :mod:`~mast3r_ros.ros.compat.sync` - approximate time synchroniser (message_filters), ROS-free.
* :mod:`~mast3r_ros.ros.compat.tf_tree` - a small TF buffer with interpolated lookups (tf2_ros), ROS-free.

Import the modules by path; this package imports nothing so that it stays cheap.
"""

__all__ = ["conversions", "conversions_geometry", "decode", "sync", "tf_tree"]
