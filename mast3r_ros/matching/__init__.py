"""mast3r_ros.matching (ROS-free core)."""
