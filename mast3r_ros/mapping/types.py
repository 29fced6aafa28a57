"""Inputs and outputs of the sparse global alignment (front-end independent).

Both front-ends reduce to the same two records:

* :class:`ViewData` - one keyframe: image, optional known intrinsics, optional metric depth prior
  (the classical RGB-D front-end's sensor depth is its pointmap prior).
* :class:`PairData` - one image pair: pixel matches with confidences and, for MASt3R, the
  pairwise pointmaps (X11/X21 of the paper: both views expressed in the first view's camera).

Conventions: pixels (x, y) with the centre of the top-left pixel at (0, 0); cameras are OpenCV
optical frames (x right, y down, z forward); metres; poses ``T_world_cam`` camera-to-world.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class MappingError(ValueError):
    """The alignment cannot run on its input (no pairs, disconnected graph, bad shapes...)."""


@dataclass
class ViewData:
    """One keyframe as the optimiser sees it.

    Attributes:
        size: (W, H) of the image / pointmaps of this view, pixels.
        image: optional [H,W,3] uint8 RGB (point cloud colours).
        K: optional [3,3] float64 intrinsics; required when the optimiser runs with known
            intrinsics, otherwise the focal length is estimated from the canonical pointmap.
        depth: optional [H,W] float32 metric depth prior (metres, 0 = invalid), e.g. sensor
            depth registered to the image; back-projected with ``K`` it is one more pointmap
            of this view in the canonical fusion (confidence ``depth_conf``).
        depth_conf: confidence given to the depth prior (MASt3R confidences are >= 1).
        name: free label (frame index, file name) for messages.
    """
    size: tuple[int, int]
    image: np.ndarray | None = None
    K: np.ndarray | None = None
    depth: np.ndarray | None = None
    depth_conf: float = 10.0
    name: str = ""


@dataclass
class PairData:
    """Predictions for one image pair (i, j).

    Attributes:
        i, j: view indices (i != j).
        xy_i, xy_j: [M,2] float32 matched pixels in view i / view j (pixel-centre convention).
        conf: [M] float32 match confidences (MASt3R descriptor confidence, or any positive
            score for the classical matcher); higher is better.
        X_ii: optional [H_i,W_i,3] float32 pointmap of view i in camera i (metres) ("X11").
        C_ii: optional [H_i,W_i] float32 confidence of X_ii (>= 1 like MASt3R; 0 = invalid).
        X_ji: optional [H_j,W_j,3] float32 pointmap of view j in camera **i** ("X21"); lets a
            pair with poor matches fall back to the pointmap regression loss.
        C_ji: optional [H_j,W_j] float32 confidence of X_ji.
    """
    i: int
    j: int
    xy_i: np.ndarray
    xy_j: np.ndarray
    conf: np.ndarray
    X_ii: np.ndarray | None = None
    C_ii: np.ndarray | None = None
    X_ji: np.ndarray | None = None
    C_ji: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.xy_i = np.asarray(self.xy_i, np.float32).reshape(-1, 2)
        self.xy_j = np.asarray(self.xy_j, np.float32).reshape(-1, 2)
        self.conf = np.asarray(self.conf, np.float32).reshape(-1)
        if not (len(self.xy_i) == len(self.xy_j) == len(self.conf)):
            raise MappingError(f"pair ({self.i},{self.j}): xy_i {self.xy_i.shape}, xy_j "
                               f"{self.xy_j.shape} and conf {self.conf.shape} must have the same length")
        if self.i == self.j:
            raise MappingError(f"pair ({self.i},{self.j}) pairs a view with itself")

    def swapped(self) -> "PairData":
        """The same matches seen from view j (pointmaps in camera i are dropped)."""
        return PairData(self.j, self.i, self.xy_j, self.xy_i, self.conf)


@dataclass
class AlignmentResult:
    """Output of :func:`mast3r_ros.mapping.sparse_ga.sparse_global_alignment`.

    Attributes:
        T_world_cam: [N,4,4] float64 camera-to-world poses, metres. The world frame is the first
            view's camera (``T_world_cam[0] = I``) unless poses were fixed by the caller, in which
            case it is the callers' frame.
        K: [N,3,3] float64 optimised intrinsics.
        T_world_cam_init: [N,4,4] float64 poses the optimiser started from (the kinematic chain
            of pairwise poses, or the caller's warm start), same frame as ``T_world_cam``.
        depth_scale: list of N [Ha,Wa] float32 per-anchor multiplicative depth corrections.
        canonical_depth: list of N [H,W] float32 canonical depth maps (metres, 0 = invalid).
        canonical_conf: list of N [H,W] float32 fused confidences.
        parent: [N] int64 kinematic-chain parent of each view (root: itself; -1 where unused).
        pair_status: {(i, j): 'ok' | 'fallback' | 'dropped'} per input pair.
        pair_inliers: {(i, j): [M] bool} matches kept after the pairwise robust check.
        losses: {'stage1': [niter1] float, 'stage2': [niter2] float} loss curves.
        timings: seconds per step (prepare, chain, stage1, stage2).
        subsample: anchor grid spacing in pixels.
    """
    T_world_cam: np.ndarray
    K: np.ndarray
    T_world_cam_init: np.ndarray
    depth_scale: list
    canonical_depth: list
    canonical_conf: list
    parent: np.ndarray
    pair_status: dict = field(default_factory=dict)
    pair_inliers: dict = field(default_factory=dict)
    losses: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    subsample: int = 8

    def depth_map(self, v: int) -> np.ndarray:
        """[H,W] float32 optimised depth of view ``v`` (metres, 0 = invalid): the canonical depth
        with each anchor block scaled by its optimised anchor correction."""
        s = self.subsample
        d = self.canonical_depth[v]
        H, W = d.shape
        up = np.repeat(np.repeat(self.depth_scale[v], s, axis=0), s, axis=1)[:H, :W]
        return (d * up).astype(np.float32)
