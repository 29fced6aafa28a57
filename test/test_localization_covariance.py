"""Published pose covariance: propagation vs Monte-Carlo oracles, and calibration on 7-Scenes.

Synthetic scenes with known noise (pixels + Kinect-like depth noise on both the map and the query
points) give the true covariance of the actual estimators (poselib PnP, 3D-3D RANSAC + Umeyama) by
Monte-Carlo; fewer inliers and a narrower field of view are built independently and must change
the predicted covariance the way they change the Monte-Carlo one.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from mast3r_ros.geometry.alignment import ransac_rigid
from mast3r_ros.geometry.camera import project_points
from mast3r_ros.geometry.transforms import invert, make_T, rotation_exp, rotation_log, transform_points
from mast3r_ros.localization.covariance import (
    CovarianceConfig,
    ModelError,
    depth_point_covariance,
    nearest_keyframe_distance,
    pnp_covariance,
    pointmap_covariance,
    pose_covariance,
    published_covariance,
    rigid_covariance,
    rotate_covariance,
)
from mast3r_ros.localization.pose import PnPConfig, solve_pnp

K = np.array([[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]])
T_Q = make_T(rotation_exp([0.1, -0.3, 0.05]), [0.4, -0.2, 1.0])              # query T_map_cam
T_KF = T_Q @ make_T(rotation_exp([0.0, 0.15, 0.0]), [-0.3, 0.0, 0.1])          # keyframe T_map_cam
CFG = CovarianceConfig().without_model_error()                                   # propagation only
POS, ROT = slice(0, 3), slice(3, 6)


def _scene(rng, n: int, fov: float = 1.0):
    """n points seen by the query inside the central ``fov`` fraction of the image, 1-3.5 m deep;
    their map-frame covariance is the keyframe's depth noise. Returns (X_query, X_map, C_map)."""
    u = rng.uniform(320 * (1 - fov), 320 * (1 + fov), n)
    v = rng.uniform(240 * (1 - fov), 240 * (1 + fov), n)
    z = rng.uniform(1.0, 3.5, n)
    X_q = np.c_[(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z]
    X_map = transform_points(T_Q, X_q)
    C_kf = depth_point_covariance(transform_points(invert(T_KF), X_map), K, CFG)
    return X_q, X_map, rotate_covariance(T_KF[:3, :3], C_kf)


def _err(T: np.ndarray) -> np.ndarray:
    """(dp, dtheta) of T vs the true query pose, map axes (the covariance's parameterisation)."""
    return np.r_[T[:3, 3] - T_Q[:3, 3], rotation_log(T[:3, :3] @ T_Q[:3, :3].T)]


def _noisy(rng, X: np.ndarray, C: np.ndarray) -> np.ndarray:
    return X + (np.linalg.cholesky(C) @ rng.normal(size=(len(X), 3, 1)))[..., 0]


def _mc_pnp(rng, X_q, X_map, C_map, draws=150):
    """(Monte-Carlo covariance of poselib PnP, mean predicted covariance) over noise draws."""
    xy0, _ = project_points(K, X_q)
    errs, preds = [], []
    for _ in range(draws):
        X_n = _noisy(rng, X_map, C_map)
        xy = xy0 + rng.normal(0, CFG.pixel_sigma_px, xy0.shape)
        r = solve_pnp(xy, X_n, K, (640, 480), PnPConfig(max_reproj_px=20.0))
        errs.append(_err(r.T_map_cam))
        preds.append(pnp_covariance(r.T_map_cam, K, xy[r.inliers], X_n[r.inliers], C_map[r.inliers], CFG))
    return np.cov(np.array(errs).T), np.mean(preds, axis=0)


def _mc_rigid(rng, X_q, X_map, C_map, draws=120):
    """Same for the RGB-D estimator (3-point RANSAC + Umeyama on query depth points)."""
    C_q = depth_point_covariance(X_q, K, CFG)
    errs, preds = [], []
    for _ in range(draws):
        Xq_n, Xm_n = _noisy(rng, X_q, C_q), _noisy(rng, X_map, C_map)
        T, inl = ransac_rigid(Xq_n, Xm_n, 0.2, iterations=50)
        errs.append(_err(T))
        preds.append(rigid_covariance(T, Xq_n[inl], Xm_n[inl], C_q[inl], C_map[inl]))
    return np.cov(np.array(errs).T), np.mean(preds, axis=0)


def _trace(C, block):
    return float(np.trace(C[block, block]))


def _assert_matches(emp, pred, lo, hi):
    ratio = np.diag(pred) / np.diag(emp)
    assert np.all((ratio > lo) & (ratio < hi)), ratio
    corr = lambda C: C / np.sqrt(np.outer(np.diag(C), np.diag(C)))  # noqa: E731
    assert np.max(np.abs(corr(pred) - corr(emp))) < 0.3


def test_depth_point_covariance_matches_monte_carlo_and_grows_with_z_squared():
    rng = np.random.default_rng(0)
    cfg = CovarianceConfig()
    for z in (1.0, 3.0):
        u, v = 500.0, 100.0
        zs = z + rng.normal(0, cfg.depth_sigma_m + cfg.depth_sigma_quad * (z - cfg.depth_sigma_z0_m) ** 2, 20000)
        us, vs = u + rng.normal(0, cfg.pixel_sigma_px, 20000), v + rng.normal(0, cfg.pixel_sigma_px, 20000)
        X = np.c_[(us - K[0, 2]) / K[0, 0] * zs, (vs - K[1, 2]) / K[1, 1] * zs, zs]
        X0 = np.array([[(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z]])
        pred = depth_point_covariance(X0, K, cfg)[0]
        np.testing.assert_allclose(pred, np.cov(X.T), rtol=0.06, atol=1e-9)  # first order; measured < 3 %
    sz = [np.sqrt(depth_point_covariance(np.array([[0, 0, z]]), K, cfg)[0, 2, 2]) for z in (1.0, 2.0, 4.0)]
    assert sz[0] < sz[1] < sz[2]
    assert sz[2] == pytest.approx(0.0012 + 0.0019 * 3.6**2)  # Nguyen et al.: 1.2 mm + 1.9e-3 (z - 0.4)^2
    # MASt3R points: sigma = rel * z / conf
    C = pointmap_covariance(np.array([[0, 0, 2.0], [0, 0, 2.0]]), np.array([2.0, 8.0]), cfg)
    np.testing.assert_allclose(np.sqrt(C[:, 0, 0]), [0.02 * 2 / 2, 0.02 * 2 / 8])


def test_pnp_covariance_matches_monte_carlo_and_grows_with_fewer_inliers_and_narrower_view():
    """The oracle: the spread of poselib PnP over noise draws of pixels and map points."""
    rng = np.random.default_rng(1)
    X_q, X_map, C_map = _scene(rng, 300)
    full = _mc_pnp(rng, X_q, X_map, C_map)
    few = _mc_pnp(rng, X_q[:40], X_map[:40], C_map[:40])            # subsampled inliers
    narrow = _mc_pnp(rng, *_scene(rng, 300, fov=0.3))                 # 30 % of the field of view
    for emp, pred in (full, few, narrow):
        _assert_matches(emp, pred, 0.7, 1.6)  # measured 0.93-1.37 (correlations within 0.12)
    for emp, pred in (few, narrow):
        for block in (POS, ROT):  # the oracle grows (x4.7-9.0 measured) and so does the prediction (x4.0-8.2)
            assert _trace(emp, block) > 2 * _trace(full[0], block)
            assert _trace(pred, block) > 2 * _trace(full[1], block)


def test_rigid_covariance_matches_monte_carlo_and_grows_with_fewer_inliers_and_narrower_view():
    rng = np.random.default_rng(2)
    X_q, X_map, C_map = _scene(rng, 300)
    full = _mc_rigid(rng, X_q, X_map, C_map)
    few = _mc_rigid(rng, X_q[:40], X_map[:40], C_map[:40])
    narrow = _mc_rigid(rng, *_scene(rng, 300, fov=0.3))
    for emp, pred in (full, few, narrow):
        _assert_matches(emp, pred, 0.7, 1.6)  # measured 0.85-1.33 (few points: s^2 >= 1 is conservative)
    for block in (POS, ROT):  # measured x11-14 (oracle and prediction)
        assert _trace(few[0], block) > 3 * _trace(full[0], block)
        assert _trace(few[1], block) > 3 * _trace(full[1], block)
    # a narrow view weakens the rotation of a 3D-3D fit (the lever arm shrinks), not its position
    assert _trace(narrow[0], ROT) > 2 * _trace(full[0], ROT)  # measured x3.2
    assert _trace(narrow[1], ROT) > 2 * _trace(full[1], ROT)  # measured x2.8


def test_covariance_grows_monotonically_when_inliers_are_removed():
    """Removing inliers from one fix never shrinks the propagated covariance (same residual scale)."""
    rng = np.random.default_rng(3)
    X_q, X_map, C_map = _scene(rng, 400)
    xy, _ = project_points(K, X_q)
    xy = xy + rng.normal(0, 1.0, xy.shape)
    prev = None
    for n in (400, 200, 100, 50, 25, 12):
        C = pnp_covariance(T_Q, K, xy[:n], X_map[:n], C_map[:n], CFG)
        if prev is not None:
            assert _trace(C, POS) > _trace(prev, POS) and _trace(C, ROT) > _trace(prev, ROT)
        prev = C


def test_published_covariance_adds_the_model_floor_and_handles_degenerate_input():
    model = ModelError(sigma_m=0.02, growth_m_per_m=0.1, sigma_rad=0.01, growth_rad_per_m=0.05)
    P = np.diag([1e-6] * 3 + [1e-7] * 3)
    np.testing.assert_allclose(published_covariance(P, model), P + np.diag([4e-4] * 3 + [1e-4] * 3))
    # 0.3 m from the nearest keyframe: sigma^2 + (growth * d)^2
    np.testing.assert_allclose(published_covariance(P, model, 0.3),
                               P + np.diag([4e-4 + 9e-4] * 3 + [1e-4 + 2.25e-4] * 3))
    assert nearest_keyframe_distance(make_T(np.eye(3), [1, 0, 0]), np.stack([np.eye(4), T_Q])) == 1.0
    assert np.all(np.diag(pnp_covariance(T_Q, K, np.zeros((3, 2)), np.ones((3, 3)))) == 1e6)
    X = np.tile([[0.0, 0.0, 2.0]], (10, 1))  # all points identical: rotation not observable
    assert np.all(np.diag(rigid_covariance(np.eye(4), X, X, depth_point_covariance(X, K))) == 1e6)
    with pytest.raises(ValueError, match="sigma_m"):
        ModelError(sigma_m=-1.0)
    with pytest.raises(ValueError, match="pixel_sigma_px"):
        CovarianceConfig(pixel_sigma_px=float("nan"))
    # the legacy entry point equals the model without point noise at sigma 0.5 px
    rng = np.random.default_rng(4)
    X_q, X_map, _ = _scene(rng, 50)
    xy, _ = project_points(K, X_q)
    np.testing.assert_allclose(pose_covariance(T_Q, K, xy, X_map),
                               pnp_covariance(T_Q, K, xy, X_map, None, CovarianceConfig(pixel_sigma_px=0.5)))


def test_shipped_defaults_cover_chi_square_levels_on_their_own_oracle():
    """With the model floor at zero, the 95 % ellipsoid of the *predicted* covariance holds ~95 %
    of Monte-Carlo PnP errors (a calibration check of the propagation alone)."""
    rng = np.random.default_rng(5)
    X_q, X_map, C_map = _scene(rng, 150)
    xy0, _ = project_points(K, X_q)
    inside = []
    for _ in range(200):
        X_n = _noisy(rng, X_map, C_map)
        xy = xy0 + rng.normal(0, 1.0, xy0.shape)
        r = solve_pnp(xy, X_n, K, (640, 480), PnPConfig(max_reproj_px=20.0))
        C = pnp_covariance(r.T_map_cam, K, xy, X_n, C_map, CFG)
        e = _err(r.T_map_cam)
        inside.append([e[b] @ np.linalg.solve(C[b, b], e[b]) <= chi2.ppf(0.95, 3) for b in (POS, ROT)])
    frac = np.mean(inside, axis=0)
    print("Monte-Carlo PnP errors inside the predicted 95 % ellipsoids (position, rotation):", frac)
    assert np.all((frac > 0.9) & (frac <= 0.99)), frac  # measured 0.93 (position), 0.975 (rotation)


@pytest.mark.slow
def test_temporal_split_published_covariance_is_calibrated(data_dir, kitchen_map):
    """Reduced acceptance on real data: 7-Scenes temporal split (map 0:598, queries 600:1000:12),
    README calibration, classical front-end, shipped covariance defaults (their model error was
    calibrated on the interleaved + reverse splits, see ``benchmarks/bench_covariance.py``)."""
    from mast3r_ros.datasets.calibration import RgbdCalibration
    from mast3r_ros.datasets.readers import open_dataset
    from mast3r_ros.localization.covariance import fraction_inside, pose_error
    from mast3r_ros.localization.frontends import make_frontend
    from mast3r_ros.localization.localizer import Localizer
    from mast3r_ros.map import KeyframeMap

    ds = open_dataset(data_dir / "7scenes_redkitchen")
    cal = RgbdCalibration.load("7scenes")
    K = cal.colour_K(ds.K)
    frac = {}
    with KeyframeMap.open(kitchen_map) as kmap:
        for mode in ("rgbd", "rgb"):
            loc = Localizer(kmap, make_frontend("classical"))
            err, cov, n_inl = [], [], []
            for f in ds.frames("600:1000:12"):
                depth = cal.depth_in_colour(ds.load_depth(f), ds.K, ds.image_size) if mode == "rgbd" else None
                r = loc.localize(ds.load_rgb(f), K, depth=depth, stamp=f.timestamp)
                if r.ok:
                    err.append(pose_error(r.T_map_cam, cal.colour_pose(f.T_world_cam)))
                    cov.append(r.covariance)
                    n_inl.append(r.n_inliers)
            assert len(err) >= 32  # 34 queries
            err, cov = np.array(err), np.array(cov)
            frac[mode] = (fraction_inside(err, cov, POS), fraction_inside(err, cov, ROT))
            for block in (POS, ROT):  # honest, not just huge: median sigma per axis vs median error per axis
                sigma = np.sqrt(np.trace(cov[:, block, block], axis1=1, axis2=2) / 3)
                ratio = np.median(sigma) / np.median(np.linalg.norm(err[:, block], axis=1) / np.sqrt(3))
                assert 0.8 < ratio < 2.0, (mode, block, ratio)  # full split: 1.14-1.40
            # fewer inliers -> larger published position sigma (rank correlation over the real fixes)
            sig = np.trace(cov[:, POS, POS], axis1=1, axis2=2)
            rank = lambda a: np.argsort(np.argsort(a))  # noqa: E731
            assert np.corrcoef(rank(np.array(n_inl)), rank(sig))[0, 1] < -0.5
    # inside the 95 % ellipsoids; expected from the full-split run on these 34 queries: position 0.97
    # (RGB-D) / 0.97 (RGB), rotation 0.85 / 0.82; the band is 0.80-0.99 on the full split
    print("fraction inside the 95 % ellipsoids (position, rotation):", frac)
    for mode, (fp, fr) in frac.items():
        assert 0.75 <= fp <= 1.0 and 0.75 <= fr <= 1.0, (mode, frac)
