"""Shared test fixtures: the reference data in ../shared (never committed) loaded once per session."""
from __future__ import annotations

import fcntl
import os
import shutil
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
    """The temporal split's map, built once per test run and only read by its users: 7-Scenes
    redkitchen frames 0:598 (200 keyframes), classical front-end, the ``7scenes`` rig calibration.
    Under pytest-xdist the workers share it (the first to need it builds it under a file lock, the
    others wait and read it): building it took ~45 s of the one CPU that each worker has."""
    from mast3r_ros.datasets.calibration import RgbdCalibration
    from mast3r_ros.datasets.readers import open_dataset
    from mast3r_ros.localization.frontends import make_frontend
    from mast3r_ros.map.build import build_map

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # this run's folder, common to its workers
    out = shared / "kitchen_map"
    with open(shared / "kitchen_map.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "map.yaml").is_file():
            partial = shared / "kitchen_map.partial"
            shutil.rmtree(partial, ignore_errors=True)
            build_map(open_dataset(data_dir / "7scenes_redkitchen"), "0:598", make_frontend("classical"), partial,
                      calib=RgbdCalibration.load("7scenes"))
            partial.rename(out)  # whole or absent: a worker never reads a half-built map
    return out
