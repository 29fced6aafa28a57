"""The search region of an /initialpose prior from its covariance (AMCL's convention: x, y, yaw)."""
from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.localization.prior import DEFAULT_HINT_RADIUS_M, MIN_HINT_RADIUS_M, prior_search_region


def _cov(var_x: float, var_y: float, var_yaw: float) -> np.ndarray:
    cov = np.zeros(36)
    cov[0], cov[7], cov[35] = var_x, var_y, var_yaw
    return cov


def test_three_sigma_of_the_larger_xy_and_of_yaw():
    radius, max_deg = prior_search_region(_cov(0.25, 1.0, np.radians(10.0) ** 2))
    assert radius == 3.0 and max_deg == pytest.approx(30.0, abs=1e-9)


def test_floors_caps_and_unset_variances():
    assert prior_search_region(_cov(1e-6, 0.0, np.radians(0.1) ** 2)) == (MIN_HINT_RADIUS_M, 5.0)
    assert prior_search_region(_cov(1.0, 1.0, 4.0))[1] == 180.0  # 3 sigma of 2 rad = 344 deg: no gate
    assert prior_search_region(np.zeros(36)) == (DEFAULT_HINT_RADIUS_M, None)  # no covariance given


def test_non_finite_covariance_is_refused():
    with pytest.raises(ValueError, match="not finite"):
        prior_search_region(_cov(np.nan, 0.0, 0.0))
