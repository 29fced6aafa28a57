"""mast3r_ros: camera localization and mapping for ROS 2 robots built on MASt3R.

The core sub-packages (model, matching, geometry, localization, mapping, map, datasets, files) never
import rclpy; the ROS 2 adapter lives in :mod:`mast3r_ros.ros`.
"""

__version__ = "0.1.0"
