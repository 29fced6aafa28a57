"""Sparse global alignment settings (torch-free, so parameter schemas can read the defaults) and
named presets (hloc's ``confs`` pattern): one place for every alignment default.

* ``paper``: :class:`AlignmentConfig`'s own defaults, the MASt3R paper's (network pointmaps).
* ``rgbd_batch``: a classical RGB-D keyframe map optimised from scratch (``map build --optimize``,
  :class:`mast3r_ros.mapping.pipeline.MapOptimizeConfig`).
* ``rgbd_incremental``: the incremental mapper's warm-started passes
  (:class:`mast3r_ros.mapping.incremental_config.IncrementalConfig`, hence the mapping node's defaults).
* ``monocular``: images only, MASt3R pointmaps (:class:`mast3r_ros.mapping.monocular.MonocularConfig`).

Each preset is a factory (a fresh, mutable config per call).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from mast3r_ros.config_fields import setting
from mast3r_ros.mapping.problem import PairCheckConfig


@dataclass
class AlignmentConfig:
    """Sparse global alignment options (defaults: the paper's).

    subsample: anchor spacing (px). canonical_mode: 'avg-angle' | 'avg-reldepth'.
    kinematic_mode: 'mst' | 'hclust-ward' (tree used to initialise / parametrise poses).
    lr1, niter1, gamma1: stage 1 (3D matching) learning rate, iterations, gamma of the loss
        ``(d + eps)^gamma`` (d in metres). lr2, niter2, gamma2: stage 2 (2D reprojection, d in px).
    schedule: 'cosine' | 'linear' decay from lr to lr * lr_end_ratio.
    known_intrinsics: keep every view's K (required in ViewData). shared_intrinsics: one focal
        (and principal point) for all views. optimize_pp: also refine principal points.
    optimize_depth: refine anchor depths and per-view scales (False: rigid pointmaps).
    fallback_weight: weight of the pointmap regression term of poor pairs.
    depth_prior: weights (stage 1, stage 2) of ``mean(log anchor correction ^ 2)``. Why: with
        depths free, both losses are nearly flat along a focal / depth / translation direction
        for small baselines, and the optimiser drifts along it (logged in benchmarks/README.md);
        the input depths are measurements and hold it.
        The two weights differ because stage 1 residuals are metres and stage 2 pixels.
    dtype: torch dtype name; device: torch device.
    """
    subsample: int = 8
    canonical_mode: str = "avg-angle"
    kinematic_mode: str = "mst"
    lr1: float = setting(0.07, "alignment stage 1 (3D) learning rate", min=0.0, max=10.0)
    niter1: int = setting(300, "alignment stage 1 iterations per pass", min=0, max=100000)
    gamma1: float = 1.5
    lr2: float = setting(0.01, "alignment stage 2 (2D reprojection) learning rate", min=0.0, max=10.0)
    niter2: int = setting(300, "alignment stage 2 iterations per pass (0: off; for calibrated colour "
                          "intrinsics and depth registration)", min=0, max=100000)
    gamma2: float = 0.5
    schedule: str = "cosine"
    lr_end_ratio: float = 0.01
    known_intrinsics: bool = False
    shared_intrinsics: bool = setting(False, "one set of intrinsics for all keyframes")
    optimize_pp: bool = False
    optimize_depth: bool = setting(True, "refine keyframe depth in the alignment (false: rigid sensor "
                                   "depth)")
    fallback_weight: float = 0.1
    depth_prior: tuple[float, float] = (10.0, 1000.0)
    check: PairCheckConfig = field(default_factory=PairCheckConfig)
    dtype: str = "float32"
    device: str = "cpu"


def paper() -> AlignmentConfig:
    """The paper's settings (made for MASt3R pointmaps: free depth, robust losses, both stages)."""
    return AlignmentConfig()


def rgbd_batch() -> AlignmentConfig:
    """Alignment for a classical RGB-D map (sensor depth, SIFT matches), from the kinematic chain.

    Why these differ from the paper's defaults:

    * rigid depth (``optimize_depth=False``): the depth is a metric sensor measurement, not a
      network prediction up to per-view scale; freeing the anchors lets the 3D loss bend
      depth to fit outlier matches (the final stage-1 loss drops but the trajectory gets less
      consistent);
    * ``lr1=0.003``: in metres, 0.07 per Adam step on chain-relative poses throws the deep
      chain of a long keyframe sequence far off;
    * no 2D stage by default (``niter2=0``): the reprojection loss is only as good as the colour
      intrinsics and the depth-to-colour registration, which on Kinect-type rigs are nominal
      (7-Scenes: colour focal 525 assumed, uncalibrated). Turn it on with
      ``map build --stage2-iters 300`` for calibrated rigs.
    * squared 3D distances (``gamma1=2``): the pair check's RANSAC already removed the outlier
      matches (5 cm), so what is left is sensor noise, for which least squares is the
      maximum-likelihood fit; the paper's sub-quadratic 1.5 (made for network pointmaps with
      outliers kept) down-weights exactly the well-measured residuals (``map build --gamma1``).
    The measurements behind these choices are logged in ``benchmarks/README.md``.
    SIFT confidences are not MASt3R's, so the matching-confidence pair check is off.
    """
    return AlignmentConfig(known_intrinsics=True, optimize_depth=False, lr1=0.003, niter2=0, gamma1=2.0,
                           check=PairCheckConfig(matching_conf_thr=None))


def rgbd_incremental() -> AlignmentConfig:
    """``rgbd_batch`` for the incremental mapper's passes, which start from the tracked (warm) poses.

    * ``niter1=100``: a warm start needs fewer iterations than a cold start from the chain (300);
    * ``shared_intrinsics=True``: one camera streams every keyframe;
    * ``lr2=0.005``: the 2D stage (off by default, ``niter2=0``) refines warm poses, not a chain.
    Measured as the mapping node's defaults (``benchmarks/README.md``, "Mapping").
    """
    return replace(rgbd_batch(), niter1=100, lr2=0.005, shared_intrinsics=True)


def monocular() -> AlignmentConfig:
    """The paper's settings for a map from one camera's images (``map_monocular``).

    * ``shared_intrinsics=True``: one camera took every image, so one focal length is estimated from
      all views' pointmaps and matches instead of one per view.
    * ``min_inlier_fraction=0.1``: FRM between two redkitchen views that share nothing (GT overlap
      <= 2.5 %) gave 24 RANSAC inliers of 549 matches (4 %), enough for ``min_inliers`` alone, and
      the map went 33 cm wrong; overlapping pairs keep 55-80 % (``test_mapping_monocular.py``).
    """
    return replace(paper(), shared_intrinsics=True, check=PairCheckConfig(min_inlier_fraction=0.1))


ALIGNMENT_PRESETS: dict[str, Callable[[], AlignmentConfig]] = {
    "paper": paper, "rgbd_batch": rgbd_batch, "rgbd_incremental": rgbd_incremental, "monocular": monocular}
