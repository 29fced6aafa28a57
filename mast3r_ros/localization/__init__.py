"""mast3r_ros.localization (ROS-free core)."""
