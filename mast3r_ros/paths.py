"""Where the shared fixtures and datasets live (outside the repository, never committed)."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """The `shared/` folder beside the checkout; override with MAST3R_ROS_SHARED."""
    env = os.environ.get("MAST3R_ROS_SHARED")
    return Path(env) if env else REPO_ROOT.parent / "shared"


def cache_dir() -> Path:
    """Folder for rebuilt artefacts (the tiny checkpoint, rendered synthetic scenes), created on use.

    ``MAST3R_ROS_CACHE`` if set; in a source checkout its git-ignored ``.cache/``; otherwise (an
    installed package: never inside site-packages) ``$ROS_HOME/mast3r_ros`` when ``ROS_HOME`` is
    set, else ``$XDG_CACHE_HOME/mast3r_ros`` (default ``~/.cache/mast3r_ros``).
    """
    env = os.environ.get("MAST3R_ROS_CACHE")
    if env:
        path = Path(env)
    elif (REPO_ROOT / "pyproject.toml").is_file():
        path = REPO_ROOT / ".cache"
    elif os.environ.get("ROS_HOME"):
        path = Path(os.environ["ROS_HOME"]) / "mast3r_ros"
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mast3r_ros"
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_file(name: str) -> Path:
    """``config/<name>`` from the installed package share (colcon workspace) or from this checkout."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return REPO_ROOT / "config" / name
    try:
        share = Path(get_package_share_directory("mast3r_ros")) / "config" / name
        if share.is_file():
            return share
    except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset (plain venv)
        pass
    return REPO_ROOT / "config" / name
