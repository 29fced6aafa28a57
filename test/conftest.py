"""Shared test fixtures: the reference data in ../shared (never committed) loaded once per session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mast3r_ros.paths import cache_dir, shared_dir


def pytest_configure(config):
    # The live tests' own publisher (LiveClient) loads the Fast DDS large-data profile, as `mast3r-ros
    # play` does; Fast DDS reads it once per process, so before any test creates an rclpy context.
    try:
        from .live_client import use_publisher_profile
    except ImportError:  # no ROS in this Python: the live tests skip themselves
        return
    use_publisher_profile()


def _require(path: Path) -> Path:
    if not path.exists():
        msg = f"reference data missing: {path} (set MAST3R_ROS_SHARED to the shared/ folder)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return _require(shared_dir() / "fixtures")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _require(shared_dir() / "data")


@pytest.fixture(scope="session")
def tiny_checkpoint(fixtures_dir: Path) -> Path:
    """mast3r_tiny.pth rebuilt with the fixture's own script (kept in .cache between runs)."""
    out = cache_dir() / "mast3r_tiny.pth"
    if not out.exists():
        tmp = out.with_suffix(f".{os.getpid()}.tmp")  # parallel workers: each its own, rename is atomic
        subprocess.run([sys.executable, str(fixtures_dir / "make_tiny_checkpoint.py"), str(tmp)], check=True)
        tmp.rename(out)
    return out


@pytest.fixture(scope="session")
def tiny_io(fixtures_dir: Path):
    return np.load(fixtures_dir / "mast3r_tiny_io.npz", allow_pickle=False)


@pytest.fixture(scope="session")
def kitchen_map(data_dir: Path, tmp_path_factory) -> Path:
    """The temporal split's map, built once per session and only read by its users: 7-Scenes
    redkitchen frames 0:598 (200 keyframes), classical front-end, the ``7scenes`` rig calibration."""
    from mast3r_ros.datasets.calibration import RgbdCalibration
    from mast3r_ros.datasets.readers import open_dataset
    from mast3r_ros.localization.frontends import make_frontend
    from mast3r_ros.map.build import build_map

    out = tmp_path_factory.mktemp("kitchen") / "map"
    build_map(open_dataset(data_dir / "7scenes_redkitchen"), "0:598", make_frontend("classical"), out,
              calib=RgbdCalibration.load("7scenes"))
    return out
