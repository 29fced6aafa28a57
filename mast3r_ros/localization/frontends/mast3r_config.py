"""The MASt3R front-end's parameters (torch-free, so the localization node's schema reads its defaults
here; the front-end itself is :mod:`mast3r_ros.localization.frontends.mast3r`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Mast3rFrontEndConfig:
    """MASt3R front-end parameters.

    checkpoint: local MASt3R .pth (never downloaded).
    device / amp_dtype: inference device ('cpu', 'cuda') and precision (None/'fp32', 'bf16', 'fp16' on CUDA,
        or 'auto'; see ``mast3r_ros.model.precision``).
    image_size: long side of the network image (512 for the released model).
    subsample: spacing in network pixels of the FRM start points on the keyframe.
    pixel_tol: FRM round-trip tolerance in network pixels (paper's localization uses 5).
    min_desc_conf: drop matches whose descriptor confidence (either side) is below this.
    min_pts_conf: keyframe pointmap confidence threshold when predicted 3D is used.
    nn_backend: exact NN backend for FRM ('auto', 'torch', 'faiss').
    """
    checkpoint: str | Path = ""
    device: str = "cpu"
    amp_dtype: str | None = None
    image_size: int = 512
    subsample: int = 8
    pixel_tol: float = 5.0
    min_desc_conf: float = 0.0
    min_pts_conf: float = 1.5
    nn_backend: str = "auto"
