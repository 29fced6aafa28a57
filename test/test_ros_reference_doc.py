"""README's "ROS reference" block is exactly what scripts/ros_reference.py generates from the
parameter dataclasses and the live ROS graph of both nodes (shipped defaults), so it cannot drift.
After changing parameters, topics, services or QoS: `.venv/bin/python -m scripts.ros_reference
--write README.md`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mast3r_ros.msg")

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- ros-reference:begin"
END = "<!-- ros-reference:end -->"


def test_readme_ros_reference_is_generated():
    out = subprocess.run([sys.executable, "-m", "scripts.ros_reference"], cwd=ROOT,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    generated = out.stdout
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    i, j = text.find(BEGIN), text.find(END)
    assert 0 <= i < j, "README.md has no ROS reference block"
    in_readme = text[i:j + len(END)] + "\n"
    # content checks, so the generator itself cannot silently lose a section
    for needle in ("| `qos_image` | str | `\"best_effort\"`", "| publishes | `/mast3r/localization_pose`",
                   "| subscribes | `/camera/image_raw` | `sensor_msgs/msg/Image` | best_effort, volatile |",
                   "| service | `/mast3r/optimize` |", "#### TF tree"):
        assert needle in generated, needle
    assert in_readme == generated, ("README's ROS reference differs from the code; run "
                                    "`.venv/bin/python -m scripts.ros_reference --write README.md`")
