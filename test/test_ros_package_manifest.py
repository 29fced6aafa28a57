"""package.xml declares exactly the ROS packages the code imports, and a rosdep key for every
third-party Python import that has one; nothing is declared that nothing uses.

Imports are read from the sources (every ``import`` statement, also inside functions and
``try`` blocks) of mast3r_ros/ (without the generated msg/srv code) and launch/. A module is a ROS
package when it is neither the standard library, nor our own, nor provided by a distribution that
pyproject.toml lists as a PyPI dependency.
"""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10 (Humble)
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ("mast3r_ros/msg", "mast3r_ros/srv")
# rosdep keys of PyPI dependencies that ROS distributions package (the rest is pip-only, see README)
ROSDEP_KEYS = {"numpy": "python3-numpy", "scipy": "python3-scipy", "cv2": "python3-opencv",
               "yaml": "python3-yaml", "PIL": "python3-pil", "matplotlib": "python3-matplotlib",
               "tqdm": "python3-tqdm"}
# needed by the generated interfaces rather than imported by name
INTERFACE_RUNTIME = {"rosidl_default_runtime"}


def _sources() -> list[Path]:
    files = [p for p in (ROOT / "mast3r_ros").rglob("*.py")
             if not any(str(p.relative_to(ROOT)).startswith(g) for g in GENERATED)]
    return files + sorted((ROOT / "launch").glob("*.py"))


def imported_top_level() -> dict[str, list[str]]:
    """Top-level module -> files importing it (absolute imports only)."""
    found: dict[str, list[str]] = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for n in names:
                found.setdefault(n.split(".")[0], []).append(str(path.relative_to(ROOT)))
    return found


def pypi_modules() -> set[str]:
    """Top-level modules provided by pyproject's dependencies (installed distributions)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}
    return {mod for mod, dists in importlib.metadata.packages_distributions().items()
            if any(d.lower().replace("_", "-") in wanted for d in dists)}


def manifest() -> dict[str, set[str]]:
    root = ET.parse(ROOT / "package.xml").getroot()
    out: dict[str, set[str]] = {}
    for el in root:
        out.setdefault(el.tag, set()).add((el.text or "").strip())
    return out


def ros_imports() -> dict[str, list[str]]:
    pypi = pypi_modules()
    return {m: files for m, files in imported_top_level().items()
            if m not in sys.stdlib_module_names and m != "mast3r_ros" and m not in pypi}


def test_import_scan_sees_the_known_imports():
    # guards the scanner itself: lazy imports inside functions and try blocks are found
    found = ros_imports()
    assert {"rclpy", "rosgraph_msgs", "tf2_ros", "launch_ros", "ament_index_python"} <= set(found)
    assert "numpy" not in found and "os" not in found and "mast3r_ros" not in found


def test_package_xml_declares_exactly_the_imported_ros_packages():
    m = manifest()
    run_deps = m.get("depend", set()) | m.get("exec_depend", set())
    declared_ros = {d for d in run_deps if not d.startswith("python3-")} - INTERFACE_RUNTIME
    imported = ros_imports()
    missing = sorted(set(imported) - declared_ros)
    unused = sorted(declared_ros - set(imported))
    assert not missing, f"imported but not in package.xml: {[(d, imported[d][0]) for d in missing]}"
    assert not unused, f"declared in package.xml but never imported: {unused}"
    assert INTERFACE_RUNTIME <= run_deps


def test_package_xml_rosdep_keys_match_python_imports():
    m = manifest()
    declared = {d for d in m.get("depend", set()) | m.get("exec_depend", set()) if d.startswith("python3-")}
    imported = imported_top_level()
    wanted = {key for mod, key in ROSDEP_KEYS.items() if mod in imported}
    assert declared == wanted
    assert "python3-pytest" in m.get("test_depend", set())


def test_rviz_is_not_a_run_dependency():
    # a headless robot must not pull in a GUI; `rviz:=true` needs rviz2 installed (README)
    m = manifest()
    assert "rviz2" not in m.get("exec_depend", set()) | m.get("depend", set())
