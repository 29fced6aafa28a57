"""mast3r_ros.model (ROS-free core)."""
