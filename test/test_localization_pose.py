"""PnP back-ends, covariance (vs Monte Carlo), retrieval and the state machine."""
from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.geometry.camera import project_points
from mast3r_ros.geometry.transforms import invert, make_T, pose_errors, rotation_exp, rotation_log, transform_points
from mast3r_ros.localization.covariance import pose_covariance
from mast3r_ros.localization.pose import PnPConfig, solve_pnp
from mast3r_ros.localization.retrieval import RetrievalConfig, Retriever, fit_vocabulary, vlad
from mast3r_ros.localization.state import GateConfig, LocState, StateMachine, check_gates

K = np.array([[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]])
T_TRUE = make_T(rotation_exp([0.1, -0.3, 0.05]), [0.4, -0.2, 1.0])  # T_map_cam


def _scene(rng, n=400, noise=0.5, outliers=0.3):
    X_cam = rng.uniform([-2, -1.5, 1.5], [2, 1.5, 5], (n, 3))
    X_map = transform_points(T_TRUE, X_cam)
    xy, _ = project_points(K, X_cam)
    xy = xy + rng.normal(0, noise, xy.shape)
    n_out = int(outliers * n)
    xy[:n_out] = rng.uniform([0, 0], [639, 479], (n_out, 2))
    return xy, X_map, n_out


@pytest.mark.parametrize("solver", ["poselib", "opencv"])
def test_pnp_recovers_pose_with_outliers(solver):
    xy, X, n_out = _scene(np.random.default_rng(0))
    r = solve_pnp(xy, X, K, (640, 480), PnPConfig(solver=solver))
    te, re = pose_errors(r.T_map_cam, T_TRUE)
    assert te < 0.0013 and re < 0.015  # measured 1.02 mm / 0.0113 deg (poselib), 0.99 mm / 0.0107 deg (opencv)
    assert r.inliers[n_out:].all() and not r.inliers[:n_out].any()  # measured: exactly the true inliers


def test_pnp_handles_distortion():
    rng = np.random.default_rng(1)
    xy, X, _ = _scene(rng, outliers=0.0, noise=0.0)
    import cv2

    dist = np.array([0.1, -0.05, 0.001, 0.0005, 0.0])
    X_cam = transform_points(invert(T_TRUE), X)
    xy_d, _ = cv2.projectPoints(X_cam, np.zeros(3), np.zeros(3), K, dist)
    r = solve_pnp(xy_d.reshape(-1, 2), X, K, (640, 480), dist=dist)
    assert pose_errors(r.T_map_cam, T_TRUE)[0] < 1e-3
    r_ignored = solve_pnp(xy_d.reshape(-1, 2), X, K, (640, 480))
    assert pose_errors(r_ignored.T_map_cam, T_TRUE)[0] > 10 * pose_errors(r.T_map_cam, T_TRUE)[0]


def test_pnp_degenerate_inputs_fail_cleanly():
    r = solve_pnp(np.zeros((3, 2)), np.zeros((3, 3)), K, (640, 480))
    assert not r.success and "too few" in r.message
    r = solve_pnp(np.full((10, 2), np.nan), np.ones((10, 3)), K, (640, 480))
    assert not r.success


def test_covariance_matches_monte_carlo():
    """Predicted covariance (ROS order, map-axis rotations) vs spread of PnP over noise draws."""
    rng = np.random.default_rng(2)
    X_cam = rng.uniform([-2, -1.5, 1.5], [2, 1.5, 5], (150, 3))
    X_map = transform_points(T_TRUE, X_cam)
    xy0, _ = project_points(K, X_cam)
    samples, covs = [], []
    for _ in range(150):
        xy = xy0 + rng.normal(0, 1.0, xy0.shape)
        r = solve_pnp(xy, X_map, K, (640, 480), PnPConfig(max_reproj_px=6.0))
        T = r.T_map_cam
        dp = T[:3, 3] - T_TRUE[:3, 3]
        dth = rotation_log(T[:3, :3] @ T_TRUE[:3, :3].T)  # left (map-frame) perturbation
        samples.append(np.r_[dp, dth])
        covs.append(pose_covariance(T, K, xy, X_map))
    emp = np.cov(np.array(samples).T)
    pred = np.mean(covs, axis=0)
    ratio = np.diag(pred) / np.diag(emp)
    assert np.all((ratio > 0.6) & (ratio < 1.6)), ratio
    corr = lambda C: C / np.sqrt(np.outer(np.diag(C), np.diag(C)))  # noqa: E731
    assert np.max(np.abs(corr(pred) - corr(emp))) < 0.3


def test_retrieval_vlad_prefers_same_descriptors_and_prior_gate():
    rng = np.random.default_rng(3)
    words = rng.normal(size=(8, 16)).astype(np.float32)
    sets = [words[rng.integers(0, 8, 200)] + 0.05 * rng.normal(size=(200, 16)).astype(np.float32)
            for _ in range(6)]
    vocab = fit_vocabulary(np.concatenate(sets), n_words=8)
    desc = np.stack([vlad(s, vocab) for s in sets])
    poses = np.stack([make_T(np.eye(3), [i, 0, 0]) for i in range(6)])
    ret = Retriever(list(range(10, 16)), desc, poses, RetrievalConfig(top_k=2, prior_max_dist_m=1.5))
    ids, sims = ret.query(desc[4])
    assert ids[0] == 14 and sims[0] == pytest.approx(1.0, abs=1e-5)
    ids, _ = ret.query(desc[4], prior_T_map_cam=make_T(np.eye(3), [0.2, 0, 0]))
    assert set(ids) <= {10, 11}  # keyframe 14 is 3.8 m from the prior: gated out
    ids, _ = ret.query(desc[4], prior_T_map_cam=make_T(np.eye(3), [50, 0, 0]))
    assert ids[0] == 14  # a prior that excludes everything is ignored


def test_tracking_keyframe_is_the_one_looking_where_the_prior_looks():
    """Keyframe 10 sits 0.1 m from the prior but is turned 60 deg (1.05 rad) about y; keyframe 11 is 0.8 m
    away looking the same way. Centre distance alone picks 10; with 2 m/rad, 11 (0.8 < 0.1 + 2.09)."""
    turned = make_T(rotation_exp(np.array([0.0, np.radians(60.0), 0.0])), [0.1, 0, 0])
    poses = np.stack([turned, make_T(np.eye(3), [0, 0.8, 0])])
    desc = np.eye(2, dtype=np.float32)
    prior = np.eye(4)
    by_view = Retriever([10, 11], desc, poses, RetrievalConfig(tracking_k=1))
    assert by_view.config.tracking_angle_weight_m == 2.0 and by_view.nearest(prior) == [11]
    assert by_view.nearest(prior, k=2) == [11, 10]
    by_centre = Retriever([10, 11], desc, poses, RetrievalConfig(tracking_k=1, tracking_angle_weight_m=0.0))
    assert by_centre.nearest(prior) == [10]
    # the weight at which they tie: 0.7 m / 1.047 rad = 0.668 m/rad
    for weight, nearest in ((0.66, 10), (0.67, 11)):
        config = RetrievalConfig(tracking_k=1, tracking_angle_weight_m=weight)
        assert Retriever([10, 11], desc, poses, config).nearest(prior) == [nearest], weight
    with pytest.raises(ValueError, match="k >= 1"):  # -1 (auto) is the Localizer's to resolve
        Retriever([10, 11], desc, poses, RetrievalConfig()).nearest(prior)


def test_gates_and_state_machine_transitions():
    cfg = GateConfig(min_inliers=20, min_inliers_global=40, max_misses=1, relocalize_confirmations=2)
    T = np.eye(4)
    assert check_gates(cfg, 100, 30, 1.0, T, None).startswith("too few")  # global needs 40
    assert check_gates(cfg, 100, 30, 1.0, T, T) == ""
    far = make_T(np.eye(3), [1.0, 0, 0])
    assert "jump" in check_gates(cfg, 100, 80, 1.0, far, T)
    assert "reprojection" in check_gates(cfg, 100, 80, 9.0, T, None)
    sm = StateMachine(cfg)
    assert sm.update(T) == (LocState.RELOCALIZING, None)  # needs a 2nd confirmation
    state, pose = sm.update(T)
    assert state == LocState.TRACKING and pose is T
    assert sm.prior() is T
    assert sm.update(None)[0] == LocState.TRACKING  # one miss tolerated
    assert sm.update(None)[0] == LocState.LOST
    assert sm.prior() is None
