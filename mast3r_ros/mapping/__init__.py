"""mast3r_ros.mapping (ROS-free core)."""
