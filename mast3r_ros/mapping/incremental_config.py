"""The incremental mapper's parameters (torch-free, so the mapping node's schema reads its defaults
here; the mapper itself is :mod:`mast3r_ros.mapping.incremental`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from mast3r_ros.config_fields import setting
from mast3r_ros.localization.frontends.classical import ClassicalConfig
from mast3r_ros.mapping.alignment_config import AlignmentConfig, rgbd_incremental


@dataclass
class IncrementalConfig:
    """Incremental mapping parameters: the one home of the mapping node's defaults, descriptions and
    ranges (its ROS parameters read them from here, ``ros/core/params.py``)."""
    kf_min_translation: float = setting(0.10, "new keyframe after this much translation (m)", min=0.0,
                                        max=100.0)
    kf_min_rotation_deg: float = setting(10.0, "new keyframe after this much rotation (deg)", min=0.0,
                                         max=180.0)
    kf_max_overlap: float = setting(0.3, "new keyframe when the fraction of the frame's depth-backed "
                                    "features matched to the last keyframe falls below this", min=0.0, max=1.0)
    max_keyframes: int = setting(500, "keyframes kept (beyond it the most redundant old one is dropped)",
                                 min=2, max=100000)
    sequential_window: int = setting(3, "pairs with the previous N keyframes", min=1, max=100)
    retrieval_k: int = setting(5, "extra pairs with the nearest older keyframes (pose prior)", min=0,
                               max=100)
    retrieval_max_dist_m: float = 1.5
    window_size: int = setting(10, "keyframes free in a windowed pass (their neighbours held fixed)",
                               min=1, max=10000)
    optimize_every_n_keyframes: int = setting(1, "background windowed pass every N new keyframes", min=1)
    global_every: int = setting(10, "background global pass every N keyframes", min=1)
    min_inliers: int = 20
    inlier_m: float = 0.05
    relocalize_candidates: int = 5
    alignment: AlignmentConfig = field(default_factory=rgbd_incremental)
    classical: ClassicalConfig = field(default_factory=ClassicalConfig)
