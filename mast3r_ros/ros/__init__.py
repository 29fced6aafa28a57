"""ROS 2 adapter (rclpy nodes, conversions). The only sub-package that may import rclpy."""
