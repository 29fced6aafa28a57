"""mast3r_ros.ros.compat: what replaces ROS packages that have no wheels (cv_bridge, message_filters, tf2_ros,
diagnostic_updater).

Modules
-------
* :mod:`~mast3r_ros.ros.compat.conversions` - Image / CompressedImage / CameraInfo <-> numpy (cv_bridge), stamps.
* :mod:`~mast3r_ros.ros.compat.conversions_geometry` - poses, covariance, Path, TF, PointCloud2 <-> numpy.
* :mod:`~mast3r_ros.ros.compat.decode` - synchronised messages -> :class:`~mast3r_ros.ros.core.frames.Frame`.
* :mod:`~mast3r_ros.ros.compat.diagnostics` - a node's /diagnostics: periodic status, errors (diagnostic_updater).
* :mod:`~mast3r_ros.ros.compat.sync` - approximate time synchroniser (message_filters), ROS-free.
* :mod:`~mast3r_ros.ros.compat.tf_io` - a node's TF in and out: tf2_ros where importable, else our TF buffer on /tf.
* :mod:`~mast3r_ros.ros.compat.tf_tree` - a small TF buffer with interpolated lookups (tf2_ros), ROS-free.

Import the modules by path; this package imports nothing so that it stays cheap.
"""

__all__ = ["conversions", "conversions_geometry", "decode", "diagnostics", "sync", "tf_io", "tf_tree"]
