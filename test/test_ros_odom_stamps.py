"""ROS-free pieces of the nodes' input handling: publish_odom_tf auto/true/false and the stamp guard
(far-future frames refused without poisoning the history, backwards jumps recovered)."""
from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.ros.compat.tf_tree import ODOM_GRACE_S, OdomSource
from mast3r_ros.ros.core.frames import FUTURE_LIMIT_S, JUMP_CONFIRM, JUMP_LIMIT_S, StampGuard
from mast3r_ros.ros.core.params import LocalizationParams, MappingParams, ParamError

S = 10**9


def _missing():
    return None, "no TF path"


def test_publish_odom_tf_is_a_tristate_defaulting_to_auto():
    assert LocalizationParams().publish_odom_tf == "auto" and MappingParams().publish_odom_tf == "auto"
    # ROS and YAML give true/false as bools: accepted as the tri-state's strings
    assert LocalizationParams().replace(publish_odom_tf=True).publish_odom_tf == "true"
    assert LocalizationParams().replace(publish_odom_tf=False).publish_odom_tf == "false"
    with pytest.raises(ParamError, match="publish_odom_tf must be one of"):
        LocalizationParams().replace(publish_odom_tf="sometimes")


def test_odom_auto_uses_tf_then_identity_after_the_grace_period():
    src = OdomSource("auto")
    T = np.diag([1.0, 1.0, 1.0, 1.0])
    T[0, 3] = 2.0
    got, note = src.T_odom_base(lambda: (T, ""), 0.0)
    assert got is T and note == "" and not src.identity and src.describe() == "from TF"
    got, note = src.T_odom_base(_missing, 1.0)
    assert got is None and "no odometry" in note and src.describe() == "missing on TF"
    got, _ = src.T_odom_base(_missing, 1.0 + ODOM_GRACE_S - 0.1)
    assert got is None and not src.identity
    got, note = src.T_odom_base(_missing, 1.0 + ODOM_GRACE_S)
    np.testing.assert_array_equal(got, np.eye(4))
    assert src.identity and "publishing identity odom->base" in note and "auto" in src.describe()
    # final until reset: TF would echo our own identity back
    got, _ = src.T_odom_base(lambda: (T, ""), 10.0)
    np.testing.assert_array_equal(got, np.eye(4))
    src.reset()
    assert not src.identity


def test_odom_auto_waits_while_tf_has_odometry_at_other_times():
    """Odometry late for this stamp is not 'no odometry': auto never switches to identity then."""
    src = OdomSource("auto")
    for t in (0.0, ODOM_GRACE_S, 10 * ODOM_GRACE_S):
        got, note = src.T_odom_base(_missing, t, connected=lambda: True)
        assert got is None and "at the image stamp" in note and not src.identity
    got, _ = src.T_odom_base(_missing, 11 * ODOM_GRACE_S, connected=lambda: False)
    assert got is None and not src.identity               # the grace period starts now
    got, _ = src.T_odom_base(_missing, 12 * ODOM_GRACE_S, connected=lambda: False)
    assert src.identity


def test_odom_true_and_false():
    assert OdomSource("true").T_odom_base(_missing, 0.0)[0] is not None
    src = OdomSource("false")
    assert src.T_odom_base(_missing, 100.0)[0] is None and not src.identity
    with pytest.raises(ValueError):
        OdomSource("yes")


def test_stamp_guard_refuses_the_far_future_without_poisoning_the_history():
    g = StampGuard()
    now = 1_000 * S
    assert g.check(now - S, now) == ("ok", "")
    verdict, why = g.check(now + 11 * 24 * 3600 * S, now)  # 11 days ahead of the clock
    assert verdict == "refuse" and "ahead of the node's clock" in why
    assert g.check(now - S + S // 30, now)[0] == "ok"          # the next normal frame is fine
    assert g.check(now + int((FUTURE_LIMIT_S - 1) * S), now)[0] == "ok"  # within the limit


def test_stamp_guard_jumps_without_a_clock():
    g = StampGuard()
    assert g.check(5 * S)[0] == "ok"
    far = 5 * S + int(2 * JUMP_LIMIT_S * S)
    verdict, why = g.check(far)
    assert verdict == "refuse" and "ahead of the previous image" in why
    assert g.check(6 * S)[0] == "ok"                            # history not poisoned
    # a genuine new timeline: JUMP_CONFIRM consecutive frames agree
    verdicts = [g.check(far + i * S // 30)[0] for i in range(JUMP_CONFIRM)]
    assert verdicts == ["refuse"] * (JUMP_CONFIRM - 1) + ["reset"]
    assert g.check(far + JUMP_CONFIRM * S // 30)[0] == "ok"
    verdict, why = g.check(S)                                   # a bag loop: backwards
    assert verdict == "reset" and "went backwards" in why
    assert g.check(S + S // 30)[0] == "ok"
