"""Acceptance gates and the INIT / TRACKING / LOST / RELOCALIZING state machine.

Why a state machine: a wrong pose is worse than no pose for a robot, so a pose is only
published when it passes the gates, and after losing track the first poses must pass
stricter gates (no prior to check them against) before tracking resumes.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from mast3r_ros.config_fields import setting
from mast3r_ros.geometry.transforms import pose_errors


class LocState(str, enum.Enum):
    INIT = "INIT"                  # no pose yet since start
    TRACKING = "TRACKING"          # recent poses accepted; a prior gates retrieval and jumps
    LOST = "LOST"                  # tracking failed; next query is relocalized globally
    RELOCALIZING = "RELOCALIZING"  # a global pose candidate waits for confirmation


@dataclass
class GateConfig:
    """Acceptance gates.

    min_inliers: PnP inliers needed while tracking.
    min_inliers_global: inliers needed without a prior (INIT / LOST), stricter.
    min_inlier_ratio: inliers / matches.
    max_median_reproj_px: median inlier reprojection error (PnP poses).
    max_median_residual_m: median inlier 3D-3D residual (RGB-D poses, which are judged in 3D
        because colour intrinsics errors inflate their reprojection errors).
    max_jump_m / max_jump_deg: maximum difference from the prior pose while tracking.
    max_misses: rejected queries tolerated in TRACKING before declaring LOST.
    relocalize_confirmations: consistent global poses needed to leave LOST (1 = the first one
        passing the global gates is trusted; 2+ goes through RELOCALIZING, not published).
    """
    min_inliers: int = setting(20, "PnP inliers needed while tracking", min=4, max=100000)
    min_inliers_global: int = setting(30, "inliers needed without a prior (INIT / LOST)", min=4,
                                      max=100000)
    min_inlier_ratio: float = 0.1
    max_median_reproj_px: float = setting(6.0, "gate: median inlier reprojection error (pixels)", min=0.1,
                                          max=100.0)
    max_median_residual_m: float = 0.03
    max_jump_m: float = setting(0.5, "gate: largest jump from the prior while tracking (m)", min=0.0,
                                max=1000.0)
    max_jump_deg: float = setting(30.0, "gate: largest rotation jump from the prior (deg)", min=0.0,
                                  max=180.0)
    max_misses: int = 2
    relocalize_confirmations: int = 1


def check_gates(cfg: GateConfig, n_matches: int, n_inliers: int, median_err_px: float,
                T: np.ndarray | None, prior: np.ndarray | None,
                median_residual_m: float | None = None) -> str:
    """'' when the pose is acceptable, else a human-readable reason.

    ``median_residual_m`` (RGB-D poses) replaces the reprojection check when given.
    """
    if T is None:
        return "no pose"
    need = cfg.min_inliers if prior is not None else cfg.min_inliers_global
    if n_inliers < need:
        return f"too few inliers ({n_inliers} < {need})"
    if n_matches and n_inliers / n_matches < cfg.min_inlier_ratio:
        return f"inlier ratio {n_inliers / n_matches:.2f} < {cfg.min_inlier_ratio}"
    if median_residual_m is not None:
        if not median_residual_m <= cfg.max_median_residual_m:
            return (f"median 3D residual {100 * median_residual_m:.1f} cm > "
                    f"{100 * cfg.max_median_residual_m:.1f} cm")
    elif not median_err_px <= cfg.max_median_reproj_px:
        return f"median reprojection error {median_err_px:.2f}px > {cfg.max_median_reproj_px}px"
    if prior is not None:
        dt, dr = pose_errors(T, prior)
        if dt > cfg.max_jump_m or dr > cfg.max_jump_deg:
            return f"pose jump vs prior too large ({dt:.2f} m, {dr:.1f} deg)"
    return ""


class StateMachine:
    """Tracks the localization state and the prior pose across queries."""

    def __init__(self, config: GateConfig | None = None):
        self.config = config or GateConfig()
        self.state = LocState.INIT
        self.last_pose: np.ndarray | None = None
        self._misses = 0
        self._candidates: list[np.ndarray] = []

    def prior(self) -> np.ndarray | None:
        """Pose prior for retrieval gating and jump checks (None = relocalize globally)."""
        if self.state == LocState.TRACKING:
            return self.last_pose
        if self.state == LocState.RELOCALIZING and self._candidates:
            return self._candidates[-1]
        return None

    def update(self, T: np.ndarray | None) -> tuple[LocState, np.ndarray | None]:
        """Feed one query's gated pose (None = rejected). Returns (state, pose to publish)."""
        if T is None:
            return self._reject()
        if self.state in (LocState.INIT, LocState.LOST, LocState.RELOCALIZING):
            self._candidates.append(T)
            if len(self._candidates) < self.config.relocalize_confirmations:
                self.state = LocState.RELOCALIZING
                return self.state, None
            self._candidates.clear()
        self.state, self.last_pose, self._misses = LocState.TRACKING, T, 0
        return self.state, T

    def _reject(self) -> tuple[LocState, None]:
        if self.state == LocState.TRACKING:
            self._misses += 1
            if self._misses > self.config.max_misses:
                self.state = LocState.LOST
        elif self.state == LocState.RELOCALIZING:
            self._candidates.clear()
            self.state = LocState.LOST
        return self.state, None

    def reset(self) -> None:
        self.__init__(self.config)

    def seed(self, T_map_cam: np.ndarray | None) -> None:
        """Start over from an external pose prior: TRACKING from ``T_map_cam`` ([4,4] float64
        camera-to-map, metres), or LOST (None: the next query relocalizes globally)."""
        self.reset()
        if T_map_cam is None:
            self.state = LocState.LOST
        else:
            self.state, self.last_pose = LocState.TRACKING, T_map_cam
