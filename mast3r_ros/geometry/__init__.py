"""mast3r_ros.geometry (ROS-free core)."""
