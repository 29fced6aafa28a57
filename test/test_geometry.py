"""Geometry helpers checked against independent constructions (no hard-coded results)."""
from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.geometry import (
    backproject_depth,
    check_intrinsics,
    compose,
    invert,
    make_T,
    pose_errors,
    project_points,
    rotation_error_deg,
    scale_intrinsics,
    transform_points,
    umeyama,
)
from mast3r_ros.geometry.transforms import nearest_rotation, rotation_exp, with_nearest_rotation
from mast3r_ros.geometry.twoview import essential_relative_pose, metric_scale, triangulate

K = np.array([[525.0, 0.0, 319.5], [0.0, 530.0, 239.5], [0.0, 0.0, 1.0]])


def _random_pose(rng, t_scale=1.0):
    return make_T(rotation_exp(rng.normal(0, 0.5, 3)), rng.normal(0, t_scale, 3))


def test_invert_compose_roundtrip():
    rng = np.random.default_rng(1)
    A, B = _random_pose(rng), _random_pose(rng)
    X = rng.normal(size=(10, 3))
    np.testing.assert_allclose(compose(A, invert(A)), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(transform_points(compose(A, B), X),
                               transform_points(A, transform_points(B, X)), atol=1e-12)


def test_rotation_error_matches_known_angle():
    for deg in (0.01, 1.0, 45.0, 179.0):
        axis = np.array([1.0, 2.0, -0.5]) / np.linalg.norm([1.0, 2.0, -0.5])
        R0 = rotation_exp([0.3, -0.2, 0.1])
        R1 = rotation_exp(axis * np.radians(deg)) @ R0
        assert rotation_error_deg(R1, R0) == pytest.approx(deg, abs=1e-6)


def test_pose_errors_uses_camera_centres():
    T = make_T(rotation_exp([0, 0, 0.2]), [1.0, 2.0, 3.0])
    T2 = T.copy()
    T2[:3, 3] += [0.03, -0.04, 0.0]
    te, re = pose_errors(T2, T)
    assert te == pytest.approx(0.05) and re == pytest.approx(0.0, abs=1e-9)


def test_project_backproject_roundtrip():
    rng = np.random.default_rng(2)
    X = rng.uniform([-1, -1, 0.5], [1, 1, 4], (50, 3))
    xy, z = project_points(K, X)
    np.testing.assert_allclose(backproject_depth(K, xy, z), X, atol=1e-9)


def test_scale_intrinsics_matches_pixel_mapping():
    """A point's pixel in the resized/cropped image must equal the mapped original pixel."""
    rng = np.random.default_rng(3)
    X = rng.uniform([-0.5, -0.5, 1], [0.5, 0.5, 3], (20, 3))
    crop = (32, 16, 608, 464)  # 576 x 448
    to = (512, 384)
    K2 = scale_intrinsics(K, (640, 480), to, crop)
    xy, _ = project_points(K, X)
    sx, sy = to[0] / (crop[2] - crop[0]), to[1] / (crop[3] - crop[1])
    # pixel-centre mapping: centre of original pixel i maps to (i - x0 + 0.5) * s - 0.5
    expect = np.stack([(xy[:, 0] - crop[0] + 0.5) * sx - 0.5, (xy[:, 1] - crop[1] + 0.5) * sy - 0.5], 1)
    np.testing.assert_allclose(project_points(K2, X)[0], expect, atol=1e-9)
    # and back again
    K_back = scale_intrinsics(K2, to, (crop[2] - crop[0], crop[3] - crop[1]))
    K_back[0, 2] += crop[0]
    K_back[1, 2] += crop[1]
    np.testing.assert_allclose(K_back, K, atol=1e-9)


@pytest.mark.parametrize("bad", [np.eye(4), np.zeros((3, 3)), [[1, 0, 0], [0, 1, 0]],
                                 np.full((3, 3), np.nan)])
def test_check_intrinsics_rejects_bad_matrices(bad):
    with pytest.raises(ValueError):
        check_intrinsics(bad)


def test_umeyama_recovers_rigid_and_similarity():
    rng = np.random.default_rng(4)
    T = _random_pose(rng)
    src = rng.normal(size=(100, 3))
    dst = transform_points(T, src) + rng.normal(0, 1e-4, (100, 3))
    T_est, s = umeyama(src, dst)
    te, re = pose_errors(T_est, T)
    assert s == 1.0 and te < 1e-3 and re < 0.01
    T_est, s = umeyama(src, 2.5 * (src @ T[:3, :3].T) + T[:3, 3], with_scale=True)
    assert s == pytest.approx(2.5, rel=1e-9)
    np.testing.assert_allclose(T_est, T, atol=1e-9)
    with pytest.raises(ValueError):
        umeyama(np.zeros((5, 3)), np.zeros((5, 3)))


def test_essential_pose_and_metric_scale():
    rng = np.random.default_rng(5)
    X1 = rng.uniform([-1.5, -1, 2], [1.5, 1, 5], (200, 3))  # points in camera 1
    T21 = make_T(rotation_exp([0.02, -0.1, 0.03]), [-0.3, 0.05, 0.1])
    xy1, _ = project_points(K, X1)
    xy2, _ = project_points(K, transform_points(T21, X1))
    xy1 += rng.normal(0, 0.3, xy1.shape)
    xy2 += rng.normal(0, 0.3, xy2.shape)
    R, t, inl = essential_relative_pose(xy1, xy2, K, K)
    # measured: all inliers, rotation 0.025 deg, translation direction 0.087 deg, scale -0.43 %
    assert inl.all()
    assert rotation_error_deg(R, T21[:3, :3]) < 0.035
    t_true = T21[:3, 3] / np.linalg.norm(T21[:3, 3])
    assert np.degrees(np.arccos(np.clip(t @ t_true, -1, 1))) < 0.12
    Xu = triangulate(R, t, xy1, xy2, K, K)
    s = metric_scale(Xu[:, 2], X1[:, 2])
    assert s == pytest.approx(np.linalg.norm(T21[:3, 3]), rel=0.006)


def test_register_depth_matches_analytic_plane():
    """A fronto-parallel plane seen by a depth camera, re-projected into a shifted colour camera."""
    from mast3r_ros.geometry.camera import register_depth

    K_d = np.array([[585.0, 0, 320], [0, 585.0, 240], [0, 0, 1]])
    K_c = np.array([[525.0, 0, 320], [0, 525.0, 240], [0, 0, 1]])
    T_c_d = make_T(np.eye(3), [-0.025, 0.0, 0.0])
    depth = np.full((480, 640), 2.0, np.float32)
    reg = register_depth(depth, K_d, K_c, T_c_d, (640, 480))
    # in the colour camera the plane is still at z = 2 m; the depth camera's narrower field of
    # view and the baseline leave the borders unknown (0)
    assert np.allclose(reg[reg > 0], 2.0)
    assert reg[240, 320] == pytest.approx(2.0)
    assert reg[240, 5] == 0.0 and reg[5, 320] == 0.0
    # right border: depth camera's rightmost ray x/z = 320/585 -> colour x = 525*(x - 0.025/2)/... + 320
    right = 525.0 * (319.0 / 585.0 * 2.0 - 0.025) / 2.0 + 320.0
    assert reg[240, int(right) - 2] > 0 and reg[240, int(right) + 2] == 0


def test_ransac_rigid_rejects_outliers():
    from mast3r_ros.geometry.alignment import ransac_rigid

    rng = np.random.default_rng(6)
    T = _random_pose(rng)
    src = rng.uniform(-2, 2, (500, 3))
    dst = transform_points(T, src) + rng.normal(0, 0.005, (500, 3))
    dst[:200] = rng.uniform(-2, 2, (200, 3))
    T_est, inl = ransac_rigid(src, dst, 0.03)
    te, re = pose_errors(T_est, T)
    assert te < 0.005 and re < 0.2
    assert inl[200:].mean() > 0.97 and inl[:200].mean() < 0.05
    assert ransac_rigid(src[:2], dst[:2], 0.03)[0] is None


def test_nearest_rotation_projects_onto_so3():
    rng = np.random.default_rng(3)
    R = np.stack([rotation_exp(w) for w in rng.normal(size=(5, 3))])
    noisy = R + rng.normal(scale=1e-4, size=R.shape)
    P = nearest_rotation(noisy)
    np.testing.assert_allclose(P @ P.transpose(0, 2, 1), np.broadcast_to(np.eye(3), P.shape), atol=1e-12)
    assert np.allclose(np.linalg.det(P), 1.0)
    assert np.abs(P - R).max() < 1e-3 and np.abs(P - R).max() < np.abs(noisy - R).max() * 3
    np.testing.assert_allclose(nearest_rotation(R), R, atol=1e-12)  # rotations are fixed points
    assert np.linalg.det(nearest_rotation(np.diag([1.0, 1.0, -1.0]) @ R[0])) > 0  # never a reflection
    T = np.tile(np.eye(4), (5, 1, 1))
    T[:, :3, :3], T[:, :3, 3] = noisy, rng.normal(size=(5, 3))
    out = with_nearest_rotation(T)
    np.testing.assert_allclose(out[:, :3, :3], P)
    np.testing.assert_array_equal(out[:, :3, 3], T[:, :3, 3])
    assert np.array_equal(T[:, :3, :3], noisy)  # input untouched
