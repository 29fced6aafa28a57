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
    """Ignored folder for rebuilt artefacts (the tiny checkpoint); override with MAST3R_ROS_CACHE."""
    env = os.environ.get("MAST3R_ROS_CACHE")
    path = Path(env) if env else REPO_ROOT / ".cache"
    path.mkdir(parents=True, exist_ok=True)
    return path
