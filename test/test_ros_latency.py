"""The published latency is the node clock minus the image stamp only when the stamp is on the node's
clock; a bag stamped from 0 (or recorded long ago) played without /clock gives NaN, not its age.
Live: test_ros_qos_delivery.py checks the diagnostics of such a bag."""
from __future__ import annotations

import math

import pytest

pytest.importorskip("rclpy")

from mast3r_ros.ros.nodes.node_io import STAMP_AGE_MAX_S, STAMP_AHEAD_MAX_S, stamp_latency_s  # noqa: E402

NOW = 1_764_600_000 * 10**9  # a wall-clock now, ns


def test_latency_on_the_node_clock_is_now_minus_stamp():
    assert stamp_latency_s(NOW, NOW - 250_000_000) == pytest.approx(0.25, abs=1e-12)
    assert stamp_latency_s(NOW, NOW) == 0.0
    # a camera clock slightly ahead (NTP skew) still counts as on the node's clock
    assert stamp_latency_s(NOW, NOW + 500_000_000) == pytest.approx(-0.5, abs=1e-12)
    assert stamp_latency_s(NOW, NOW - int(STAMP_AGE_MAX_S * 1e9)) == pytest.approx(STAMP_AGE_MAX_S)


def test_stamps_off_the_node_clock_give_nan():
    assert math.isnan(stamp_latency_s(NOW, 3 * 10**9))  # make-bag stamps from t=0, no /clock
    assert math.isnan(stamp_latency_s(NOW, NOW - 3600 * 10**9))  # a bag recorded an hour ago
    assert math.isnan(stamp_latency_s(NOW, NOW - int(STAMP_AGE_MAX_S * 1e9) - 1))
    assert math.isnan(stamp_latency_s(NOW, NOW + int(STAMP_AHEAD_MAX_S * 1e9) + 1))


def test_no_stamp_gives_zero():
    assert stamp_latency_s(NOW, 0) == 0.0
