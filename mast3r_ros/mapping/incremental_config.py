"""The incremental mapper's parameters (torch-free, so the mapping node's schema reads its defaults
here; the mapper itself is :mod:`mast3r_ros.mapping.incremental`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from mast3r_ros.localization.frontends.classical import ClassicalConfig
from mast3r_ros.mapping.alignment_config import AlignmentConfig, rgbd_incremental


@dataclass
class IncrementalConfig:
    """Incremental mapping parameters: the one home of the mapping node's defaults (its ROS
    parameters of the same names read their defaults from here, ``ros/core/params.py``)."""
    kf_min_translation: float = 0.10
    kf_min_rotation_deg: float = 10.0
    kf_max_overlap: float = 0.3
    max_keyframes: int = 500
    sequential_window: int = 3
    retrieval_k: int = 5
    retrieval_max_dist_m: float = 1.5
    window_size: int = 10
    optimize_every_n_keyframes: int = 1
    global_every: int = 10
    min_inliers: int = 20
    inlier_m: float = 0.05
    relocalize_candidates: int = 5
    alignment: AlignmentConfig = field(default_factory=rgbd_incremental)
    classical: ClassicalConfig = field(default_factory=ClassicalConfig)
