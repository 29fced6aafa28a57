"""Map-free solver on oracle inputs from real 7-Scenes frames (depth + GT poses + noise).

The reference pointmap is the reference depth back-projected (with multiplicative depth noise);
matches are reference pixels re-projected into the query with the GT relative pose (pixel noise
+ 15 % random outliers). Every solver must recover the relative pose (bounds per solver below).
"""
from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.geometry.camera import depth_to_pointmap, project_points
from mast3r_ros.geometry.transforms import compose, invert, pose_errors, transform_points
from mast3r_ros.localization.mapfree import MapFreeConfig, sample_pointmap, solve_mapfree

PAIRS = [(300, 330), (600, 618)]


def _oracle(ds, ref_idx, query_idx, rng):
    ref, qry = (next(f for f in ds.frames() if f.index == i) for i in (ref_idx, query_idx))
    K = ds.K
    d_ref, d_q = ds.load_depth(ref), ds.load_depth(qry)
    noisy_ref = d_ref * (1.0 + rng.normal(0, 0.003, d_ref.shape)).astype(np.float32)
    pm_ref = depth_to_pointmap(K, noisy_ref)
    noisy_q = d_q * (1.0 + rng.normal(0, 0.003, d_q.shape)).astype(np.float32)
    pm_q = depth_to_pointmap(K, noisy_q)
    T_q_r = compose(invert(qry.T_world_cam), ref.T_world_cam)
    ys, xs = np.nonzero(d_ref > 0)
    pick = rng.choice(len(xs), 3000, replace=False)
    xy_ref = np.stack([xs[pick], ys[pick]], 1).astype(np.float64)
    X_ref = depth_to_pointmap(K, d_ref)[ys[pick], xs[pick]]
    X_q = transform_points(T_q_r, X_ref)
    xy_q, z = project_points(K, X_q)
    W, H = ds.image_size
    # keep points visible in the query: inside, in front, and not occluded (query depth agrees)
    inside = (z > 0) & (xy_q[:, 0] > 0) & (xy_q[:, 1] > 0) & (xy_q[:, 0] < W - 1) & (xy_q[:, 1] < H - 1)
    ix, iy = np.rint(xy_q[inside]).astype(int).T
    vis = np.zeros(len(z), bool)
    vis[np.flatnonzero(inside)] = np.abs(d_q[iy, ix] - z[inside]) < 0.05
    xy_ref, xy_q = xy_ref[vis], xy_q[vis] + rng.normal(0, 0.5, (vis.sum(), 2))
    n_out = int(0.15 * len(xy_q))
    xy_q[:n_out] = rng.uniform([0, 0], [W - 1, H - 1], (n_out, 2))
    return ref, qry, xy_ref, xy_q, pm_ref, pm_q


# (m, deg) per solver, just above the worst of the two pairs measured: pnp 0.19 mm / 0.0058 deg,
# essential 1.08 mm / 0.035 deg, procrustes 4.95 mm / 0.118 deg
BOUNDS = {"pnp": (0.0003, 0.01), "essential": (0.0015, 0.05), "procrustes": (0.006, 0.15)}


@pytest.mark.parametrize("method", ["pnp", "essential", "procrustes"])
@pytest.mark.parametrize("pair", PAIRS)
def test_mapfree_oracle_recovers_pose(data_dir, method, pair):
    ds = open_dataset(data_dir / "7scenes_redkitchen")
    rng = np.random.default_rng(pair[0])
    ref, qry, xy_ref, xy_q, pm_ref, pm_q = _oracle(ds, *pair, rng)
    assert len(xy_q) > 300
    res = solve_mapfree(xy_q, xy_ref, ds.K, ds.image_size, pm_ref, ds.K, T_map_ref=ref.T_world_cam,
                        pointmap_query=pm_q, config=MapFreeConfig(methods=(method,)))
    assert res.T_map_cam is not None, res.message
    assert res.method == method
    te, re = pose_errors(res.T_map_cam, qry.T_world_cam)
    baseline = np.linalg.norm(ref.T_world_cam[:3, 3] - qry.T_world_cam[:3, 3])
    assert baseline > 0.1  # a real relative pose, not identity
    max_t, max_r = BOUNDS[method]
    assert te < max_t and re < max_r, (method, te, re)


def test_mapfree_falls_back_when_pointmap_is_unusable(data_dir):
    """With a zero-confidence pointmap PnP and essential-scale fail; Procrustes must take over."""
    ds = open_dataset(data_dir / "7scenes_redkitchen")
    rng = np.random.default_rng(7)
    ref, qry, xy_ref, xy_q, pm_ref, pm_q = _oracle(ds, 300, 330, rng)
    conf = np.zeros(pm_ref.shape[:2], np.float32)
    res = solve_mapfree(xy_q, xy_ref, ds.K, ds.image_size, pm_ref, ds.K, ref.T_world_cam,
                        conf_ref=conf, pointmap_query=pm_q, config=MapFreeConfig(min_conf=0.5))
    assert res.T_map_cam is None  # procrustes also needs the reference points
    assert "pnp" in res.message and "essential" in res.message and "procrustes" in res.message
    res = solve_mapfree(xy_q, xy_ref, ds.K, ds.image_size, pm_ref, ds.K, ref.T_world_cam, pointmap_query=None,
                        config=MapFreeConfig(methods=("procrustes", "pnp")))
    assert res.method == "pnp" and res.T_map_cam is not None


def test_sample_pointmap_marks_invalid():
    pm = np.zeros((4, 5, 3))
    pm[..., 2] = 1.0
    pm[1, 2, 2] = 0.0
    conf = np.ones((4, 5))
    conf[2, 3] = 0.1
    out = sample_pointmap(pm, np.array([[0.0, 0.0], [2.0, 1.0], [3.0, 2.0], [9.0, 1.0]]), conf, 0.5)
    assert np.all(np.isfinite(out[0])) and np.isnan(out[1:]).all()
