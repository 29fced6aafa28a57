"""Benchmarks (see README.md here); the ROS ones run as modules: ``python -m benchmarks.bench_ros_qos``."""
