"""mast3r_ros.files (ROS-free core): file primitives with no knowledge of maps, datasets or ROS.

Modules
-------
* :mod:`~mast3r_ros.files.atomic_io` - crash-safe writes (temp file + fsync + rename), fresh files, sha256.
* :mod:`~mast3r_ros.files.bag_check` - a rosbag2 folder's metadata checked before a reader opens it.

Why a package of its own: the map store, the TUM writer, the mapper's outputs and the CLI all write
through ``atomic_io``, and ``play``/``replay`` check bags before rosbags or rclpy are imported; as a
leaf (it imports nothing of ``mast3r_ros``) it can never join an import cycle.
"""
from mast3r_ros.files.atomic_io import atomic_write_bytes, file_sha256, fsync_dir, write_fresh_file
from mast3r_ros.files.bag_check import check_bag_folder

__all__ = ["atomic_write_bytes", "file_sha256", "fsync_dir", "write_fresh_file", "check_bag_folder"]
