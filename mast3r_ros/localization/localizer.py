"""ROS-free localizer: image -> gated pose ``T_map_cam`` with covariance and a tracking state.

Pipeline per query: keyframe selection (while tracking: the ``tracking_k`` keyframes nearest the
pose prior's view, by default the front-end's choice: one for MASt3R, none for the classical
front-end; retrieval for the same query if they fail it; otherwise, or after
:meth:`Localizer.request_retrieval`: global-descriptor retrieval of the top-k, gated around the
prior when there is one) -> front-end matching against those keyframes
(in one batch when the front-end has ``match_many``) -> one PnP + RANSAC + refinement on all 2D-3D
matches -> covariance -> acceptance gates -> state machine. ``localize`` never
raises: bad inputs and failures come back as a result with ``T_map_cam=None`` and ``error``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from mast3r_ros.config_fields import setting
from mast3r_ros.geometry.camera import check_intrinsics
from mast3r_ros.localization.covariance import CovarianceConfig, nearest_keyframe_distance
from mast3r_ros.localization.frontends import Correspondences, FrontEnd, QueryFrame
from mast3r_ros.localization.keyframe_cache import KeyframeCache
from mast3r_ros.localization.pose import PnPConfig, PnPResult, fix_covariance, solve_pnp, solve_pose_rgbd
from mast3r_ros.localization.retrieval import RetrievalConfig, Retriever
from mast3r_ros.localization.state import GateConfig, LocState, StateMachine, check_gates
from mast3r_ros.map import Keyframe, KeyframeMap
from mast3r_ros.map.keys import RETRIEVAL_DESC, RETRIEVAL_IDS


@dataclass
class LocalizerConfig:
    """Localizer parameters (one sub-config per stage) and the keyframe cache's memory budget.

    rgbd_pose: when a query depth image is given, estimate the pose from 3D-3D matches (query
        depth vs map points) instead of PnP; falls back to PnP if too few matches have depth.
    rgbd_inlier_m: 3D-3D inlier distance (metres).
    covariance: the published covariance's model (``covariance.py``).
    keyframe_cache_mb: MiB of keyframe arrays (MASt3R encoder tokens and points, SIFT features) kept
        in memory between queries, least recently used dropped first (``keyframe_cache.py``); the rest
        stay in the map folder and are read back when a query needs them (results do not change).
        512 MiB holds ~90 released-size MASt3R keyframes with depth (5.5 MB each); 0 keeps none.
    """
    rgbd_pose: bool = setting(True, "with depth: pose from 3D-3D matches (falls back to PnP)")
    rgbd_inlier_m: float = 0.05
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    pnp: PnPConfig = field(default_factory=PnPConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    covariance: CovarianceConfig = field(default_factory=CovarianceConfig)
    keyframe_cache_mb: float = 512.0


@dataclass
class LocalizationResult:
    """Outcome of one query.

    state: tracking state after this query.
    T_map_cam: [4,4] float64 camera-to-map pose (OpenCV optical camera, metres) or None when
        not confident (nothing should be published).
    covariance: [6,6] float64, ROS order (x, y, z, roll, pitch, yaw) about map axes (see
        ``covariance.py``), or None.
    n_matches / n_inliers: 2D-3D matches fed to PnP and its inliers.
    kf_ids: keyframe ids matched, best first.
    selection: how they were chosen: 'prior' (nearest the tracking prior) or 'retrieval'.
    timings: seconds per stage: 'features' (query feature extraction), 'retrieval', 'matching',
        'pnp' (pose solver + covariance), 'total'.
    error: why no pose was returned ('' on success).
    """
    state: LocState
    T_map_cam: np.ndarray | None = None
    covariance: np.ndarray | None = None
    n_matches: int = 0
    n_inliers: int = 0
    kf_ids: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: str = ""
    median_reproj_px: float = float("nan")
    selection: str = ""

    @property
    def ok(self) -> bool:
        return self.T_map_cam is not None


@dataclass
class _Attempt:
    """One keyframe selection's outcome inside :meth:`Localizer.localize` (``reason`` '' = passed)."""
    selection: str
    kf_ids: list[int]
    n_matches: int
    pnp: PnPResult
    cov: np.ndarray | None
    median_px: float
    reason: str


class Localizer:
    """Localizes camera images against a keyframe map built with the same front-end.

    Args:
        kmap: an open :class:`KeyframeMap` (its front-end arrays and retrieval globals).
        frontend: the front-end the map was built with.
        config: :class:`LocalizerConfig`.
    """

    def __init__(self, kmap: KeyframeMap, frontend: FrontEnd, config: LocalizerConfig | None = None):
        self.config = config or LocalizerConfig()  # never written: set_gates replaces it
        self.map = kmap
        self.frontend = frontend
        if kmap.meta.frontend != frontend.name:
            raise ValueError(f"map was built with front-end {kmap.meta.frontend!r}, not {frontend.name!r}")
        frontend.load_global({n: kmap.get_global(n) for n in frontend.global_names})
        ids = kmap.get_global(RETRIEVAL_IDS)
        desc = kmap.get_global(RETRIEVAL_DESC)
        if ids is None or desc is None:
            raise ValueError(f"map {kmap.path} has no retrieval index; rebuild it with `map build`")
        poses = kmap.poses()
        # working copies: a seeded prior narrows them, clear_pose_prior() restores them from self.config
        self.retriever = Retriever(ids.tolist(), desc, np.stack([poses[int(i)] for i in ids]),
                                   self._retrieval_config())
        self.state = StateMachine(replace(self.config.gates))
        if not self.config.keyframe_cache_mb >= 0:  # also refuses NaN
            raise ValueError(f"keyframe_cache_mb must be >= 0 MiB, got {self.config.keyframe_cache_mb!r}")
        # read-only for callers (tests and benchmarks count its loads and resident keyframes)
        self.keyframe_cache = KeyframeCache(self._load_keyframe, self.config.keyframe_cache_mb * 2**20)
        self._retrieve_next = False

    def request_retrieval(self) -> None:
        """Select the next query's keyframes by retrieval even while tracking (a localize request)."""
        self._retrieve_next = True

    # ---------------------------------------------------------------- priors and gates
    def seed_pose_prior(self, T_map_cam: np.ndarray | None, radius_m: float,
                        max_jump_deg: float | None = None) -> None:
        """Localize the next queries near a pose prior (e.g. /initialpose), or globally.

        Forgets the tracking state. With a prior: TRACKING from ``T_map_cam``, the next query's
        keyframes come from descriptor retrieval among those within ``radius_m`` of it, and its pose
        is accepted only within ``radius_m`` / ``max_jump_deg`` of it (the tracking gates, the others
        as configured). The narrowed gates stay until :meth:`clear_pose_prior` (or the next seed).

        Args:
            T_map_cam: [4,4] float64 camera (OpenCV optical) to map pose prior, metres; None =
                no prior: LOST, the next query is relocalized globally.
            radius_m: search radius around the prior (metres): keyframe camera centres and the
                accepted pose's translation from the prior.
            max_jump_deg: rotation allowed from the prior (degrees); None = the configured
                ``gates.max_jump_deg``.
        """
        self.state.seed(None if T_map_cam is None else np.asarray(T_map_cam, dtype=np.float64))
        if T_map_cam is None:
            self.clear_pose_prior()
            return
        self.request_retrieval()  # keyframes by retrieval within the radius, not only the one nearest the prior
        self.retriever.config = self._retrieval_config(prior_max_dist_m=float(radius_m))
        deg = self.config.gates.max_jump_deg if max_jump_deg is None else float(max_jump_deg)
        self.state.config = replace(self.config.gates, max_jump_m=float(radius_m), max_jump_deg=deg)

    def clear_pose_prior(self) -> None:
        """Back to the configured retrieval radius and gates (``self.config``, as last set by
        :meth:`set_gates`) after a :meth:`seed_pose_prior`; the tracking state is kept."""
        self.retriever.config = self._retrieval_config()
        self.state.config = replace(self.config.gates)

    def _retrieval_config(self, **changes) -> RetrievalConfig:
        """A working copy of ``config.retrieval`` with ``tracking_k`` -1 (auto) resolved to the
        front-end's ``tracking_keyframes``."""
        k = self.config.retrieval.tracking_k
        return replace(self.config.retrieval, **changes,
                       tracking_k=self.frontend.tracking_keyframes if k < 0 else k)

    def set_gates(self, gates: GateConfig) -> None:
        """Change the acceptance gates at run time (from the next query on); they become the
        configured gates that :meth:`clear_pose_prior` returns to (they also replace a seeded prior's
        narrowed ones). ``gates`` is copied."""
        self.config = replace(self.config, gates=replace(gates))
        self.state.config = replace(gates)

    @property
    def gates(self) -> GateConfig:
        """A copy of the gates in use (the configured ones, or narrowed by a seeded prior)."""
        return replace(self.state.config)

    @property
    def prior_radius_m(self) -> float | None:
        """Retrieval radius around the pose prior in use (metres; None = no distance gate)."""
        return self.retriever.config.prior_max_dist_m

    def localize(self, image: np.ndarray, K: np.ndarray, depth: np.ndarray | None = None,
                 stamp: float = 0.0, dist: np.ndarray | None = None) -> LocalizationResult:
        """Localize one image (never raises; see :class:`LocalizationResult`).

        Args:
            image: [H,W,3] uint8 RGB.
            K: [3,3] intrinsics of ``image`` (pixel-centre convention).
            depth: optional [H,W] float32 metres registered to ``image``; when given (and
                ``config.rgbd_pose``) the pose comes from 3D-3D matches (RGB-D localization).
            stamp: seconds.
            dist: optional OpenCV distortion coefficients of ``image``.
        """
        t0 = time.perf_counter()
        timings = {"features": 0.0, "retrieval": 0.0, "matching": 0.0, "pnp": 0.0, "total": 0.0}
        try:
            result = self._localize(image, K, depth, stamp, dist, timings)
        except Exception as exc:  # a bad frame must never kill the caller's loop
            state, _ = self.state.update(None)
            result = LocalizationResult(state, error=f"{type(exc).__name__}: {exc}")
        timings["total"] = time.perf_counter() - t0
        result.timings = timings
        return result

    def _localize(self, image, K, depth, stamp, dist, timings) -> LocalizationResult:
        K = check_intrinsics(K)
        image = _check_image(image)
        if depth is not None and np.shape(depth) != image.shape[:2]:
            raise ValueError(f"depth shape {np.shape(depth)} does not match image {image.shape[:2]}")
        query = QueryFrame(image, K, dist, depth, stamp)
        prior = self.state.prior()

        t = time.perf_counter()
        self.frontend.prepare_query(query)
        timings["features"] = time.perf_counter() - t

        by_prior = prior is not None and not self._retrieve_next and self.retriever.config.tracking_k > 0
        self._retrieve_next = False
        matched: dict[int, Correspondences] = {}
        attempt = self._attempt(query, prior, "prior" if by_prior else "retrieval", matched, timings)
        if attempt.reason and by_prior and self.retriever.config.tracking_retry:
            # tracking lost its keyframe (too few matches, a gate): retrieval gets this same query,
            # so the cheap path never costs a fix that the full search would have found
            attempt = self._attempt(query, prior, "retrieval", matched, timings)
        state, T = self.state.update(None if attempt.reason else attempt.pnp.T_map_cam)
        reason = attempt.reason
        if T is None and not reason:
            reason = "relocalization candidate awaiting confirmation"
        return LocalizationResult(state, T, attempt.cov if T is not None else None, attempt.n_matches,
                                  attempt.pnp.n_inliers, attempt.kf_ids, error=reason,
                                  median_reproj_px=attempt.median_px, selection=attempt.selection)

    def _attempt(self, query: QueryFrame, prior: np.ndarray | None, selection: str,
                 matched: dict[int, Correspondences], timings: dict[str, float]) -> _Attempt:
        """Keyframe selection ('prior' or 'retrieval'), matching, pose and gates for one query.
        ``matched`` (keyframe id -> matches) is this query's: a keyframe matched by the tracking
        attempt is not matched again by its retrieval fallback; ``timings`` accumulate."""
        t = time.perf_counter()
        if selection == "prior":
            kf_ids = self.retriever.nearest(prior)
        else:
            kf_ids, _ = self.retriever.query(self.frontend.query_descriptor(query), prior)
        timings["retrieval"] += time.perf_counter() - t

        t = time.perf_counter()
        new = [i for i in kf_ids if i not in matched]
        matched.update(zip(new, self._match(query, [self.keyframe_cache.get(i) for i in new])))
        corr, _ = Correspondences.concat([matched[i] for i in kf_ids])
        timings["matching"] += time.perf_counter() - t

        t = time.perf_counter()
        K, dist, depth = query.K, query.dist, query.depth
        H, W = query.image.shape[:2]
        pnp = None
        if depth is not None and self.config.rgbd_pose:
            pnp = solve_pose_rgbd(corr.xy_query, corr.X_map, depth, K, self.config.rgbd_inlier_m, dist,
                                  self.config.pnp.seed)
        if pnp is None or not pnp.success:
            pnp = solve_pnp(corr.xy_query, corr.X_map, K, (W, H), self.config.pnp, dist, corr.conf)
        cov, med, med3d = None, float("nan"), None
        if pnp.success:
            inl = pnp.inliers
            med = float(np.median(pnp.reproj_err_px[inl])) if inl.any() else float("inf")
            if pnp.residual_m is not None:
                med3d = float(np.median(pnp.residual_m[inl])) if inl.any() else float("inf")
            cov = fix_covariance(pnp, corr.xy_query, corr.X_map, corr.X_cov, K, dist, self.config.covariance,
                                 nearest_keyframe_distance(pnp.T_map_cam, self.retriever.T))
        timings["pnp"] += time.perf_counter() - t
        reason = pnp.message or check_gates(self.state.config, len(corr), pnp.n_inliers, med,
                                            pnp.T_map_cam, prior, med3d)
        return _Attempt(selection, kf_ids, len(corr), pnp, cov, med, reason)

    def _match(self, query: QueryFrame, keyframes: list[Keyframe]) -> list[Correspondences]:
        """Front-end matches per keyframe; one batched call when the front-end offers ``match_many``."""
        match_many = getattr(self.frontend, "match_many", None)
        if match_many is not None:
            return match_many(query, keyframes)
        return [self.frontend.match(query, kf) for kf in keyframes]

    def _load_keyframe(self, kf_id: int) -> Keyframe:
        """Keyframe with its front-end arrays, read from the map (sha256-verified); the image and depth
        only when the front-end asks for them (``keyframe_pixels``, e.g. MASt3R coarse-to-fine)."""
        pixels = bool(getattr(self.frontend, "keyframe_pixels", False))
        return self.map.get_keyframe(kf_id, load_image=pixels, arrays=list(self.frontend.array_names),
                                     load_depth=pixels)


def _check_image(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or min(img.shape[:2]) < 8:
        raise ValueError(f"image must be [H,W,3] uint8 RGB, got shape {img.shape} dtype {img.dtype}")
    return img
