"""The ROS layer's roles (issue 15): ``ros.core`` and the pure-Python stand-ins in ``ros.compat`` load
no ROS module (rclpy, generated messages), so they run and are tested without a ROS install; every
``ros`` sub-package's ``__all__`` lists exactly its modules (the table of contents cannot go stale)."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROS = Path(__file__).resolve().parents[1] / "mast3r_ros" / "ros"
ROS_FREE = [f"mast3r_ros.ros.core.{p.stem}" for p in sorted((ROS / "core").glob("*.py")) if p.stem != "__init__"]
ROS_FREE += ["mast3r_ros.ros.compat.sync", "mast3r_ros.ros.compat.tf_tree", "mast3r_ros.ros.nodes.launch_description"]
ROS_ROOTS = ("rclpy", "rosidl_runtime_py", "builtin_interfaces", "std_msgs", "sensor_msgs", "geometry_msgs",
             "nav_msgs", "diagnostic_msgs", "tf2_msgs", "mast3r_ros.msg", "mast3r_ros.srv")


def test_ros_free_modules_load_no_ros_module():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in ROS_FREE)
            + f"bad = sorted(m for m in sys.modules if m.startswith({ROS_ROOTS!r}))\n"
              "assert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.parametrize("sub", ["nodes", "core", "compat", "bag"])
def test_subpackage_all_lists_its_modules(sub):
    modules = sorted(p.stem for p in (ROS / sub).glob("*.py") if p.stem != "__init__")
    package = importlib.import_module(f"mast3r_ros.ros.{sub}")
    assert sorted(package.__all__) == modules
    assert all(f"mast3r_ros.ros.{sub}.{m}`" in package.__doc__ for m in modules)
