"""README: the core packages never import rclpy; only ``mast3r_ros.ros`` does."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mast3r_ros"
CORE = ["model", "matching", "geometry", "localization", "mapping", "map", "datasets", "files"]


def test_importing_the_core_loads_no_ros_module():
    code = ("import sys\n" + "".join(f"import mast3r_ros.{name}\n" for name in CORE)
            + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosidl_runtime_py'))\n"
              "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_core_source_imports_rclpy():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] in ("ros", "msg", "srv"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "rclpy"]
    assert not offenders
