"""The search region of a pose prior given with a covariance (``/initialpose``, AMCL-like): the radius and
yaw gate the localizer's prior takes (:meth:`~mast3r_ros.localization.localizer.Localizer.seed_pose_prior`)."""
from __future__ import annotations

import numpy as np

DEFAULT_HINT_RADIUS_M = 1.0   # a prior without a usable covariance (and the localize service's default)
MIN_HINT_RADIUS_M = 0.25      # 3 sigma of the covariance, at least this
MIN_HINT_YAW_DEG = 5.0


def prior_search_region(covariance: np.ndarray) -> tuple[float, float | None]:
    """(radius_m, max_yaw_deg) around a prior: 3 sigma of its x/y and yaw variances.

    ``covariance``: (36,) or (6, 6) float, row-major over (x, y, z, roll, pitch, yaw) in m^2 / rad^2
    (``PoseWithCovariance``). A zero variance means "not given": the default radius, no yaw gate.
    Raises ValueError for a covariance with NaN/inf."""
    cov = np.asarray(covariance, dtype=np.float64).reshape(6, 6)
    if not np.all(np.isfinite(cov)):
        raise ValueError("covariance is not finite")
    sigma_xy = float(np.sqrt(max(cov[0, 0], cov[1, 1], 0.0)))
    radius = max(MIN_HINT_RADIUS_M, 3.0 * sigma_xy) if sigma_xy > 0 else DEFAULT_HINT_RADIUS_M
    sigma_yaw = float(np.sqrt(max(cov[5, 5], 0.0)))
    max_deg = min(180.0, max(MIN_HINT_YAW_DEG, float(np.degrees(3.0 * sigma_yaw)))) if sigma_yaw > 0 else None
    return radius, max_deg
