"""The MASt3R front-end's parameters (torch-free, so the localization node's schema reads its defaults
here; the front-end itself is :mod:`mast3r_ros.localization.frontends.mast3r`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mast3r_ros.config_fields import setting


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
    coarse_to_fine: match a query against a keyframe at full resolution from network-sized crops (paper
        section 3.4, ``matching/coarse_to_fine.py``) when either image is larger than the network image and
        the map stores the keyframe's full-resolution depth (``map build --store-depth``); other keyframes,
        and images that fit, use the single network pass.
    """
    checkpoint: str | Path = setting("", "local MASt3R checkpoint .pth (never downloaded)")
    device: str = setting("cpu", "inference device: cpu, cuda or cuda:N")
    amp_dtype: str | None = setting(None, "autocast dtype: '' / fp32 off; bf16 (CPU or CUDA); fp16 (CUDA); "
                                    "auto: bf16 on CPUs with amx_bf16/avx512_bf16, else fp32",
                                    choices=(None, "", "fp32", "auto", "bf16", "fp16"))
    bf16_weights: bool = setting(False, "with bf16 precision: hold a bf16 copy of the network weights, cast "
                                 "once (half the weight memory, the same outputs as bf16 autocast)")
    image_size: int = setting(512, "long side of the network image (pixels, multiple of 16)", min=64,
                              max=2048)
    subsample: int = setting(8, "FRM start-point spacing (network pixels)", min=1, max=64)
    pixel_tol: float = setting(5.0, "FRM round-trip tolerance (network pixels)", min=0.0, max=64.0)
    min_desc_conf: float = setting(0.0, "minimum descriptor confidence of a match", min=0.0, max=1e6)
    coarse_to_fine: bool = setting(False, "full-resolution matches from network-sized crops (paper 3.4) for "
                                   "images larger than image_size; keyframes whose depth the map stores "
                                   "(map build --store-depth)")
    min_pts_conf: float = 1.5
    nn_backend: str = "auto"
