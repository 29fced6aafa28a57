"""Synthetic room: geometry consistency (depth + poses + K), matchability (SIFT + PnP recovers the
query pose), determinism, and the renderer's culling being exact."""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mast3r_ros.datasets import (
    SyntheticRoomConfig,
    default_demo_dataset,
    load_sequence_info,
    render_synthetic_sequence,
)
from mast3r_ros.datasets.raycast import raycast
from mast3r_ros.datasets.readers import SevenScenesDataset, open_dataset
from mast3r_ros.datasets.synthetic_room import RoomRenderer, trajectories

TINY = SyntheticRoomConfig(seed=3, width=160, height=120, fx=131.25, fy=131.25, cx=79.5, cy=59.5,
                           n_map=2, n_query=1, query_start=5, texture_res_m=0.02)


@pytest.fixture(scope="module")
def demo() -> SevenScenesDataset:
    t0 = time.perf_counter()
    root = default_demo_dataset()
    print(f"default synthetic dataset ready in {time.perf_counter() - t0:.1f} s at {root}")
    return open_dataset(root)


def _frame(ds, index: int):
    return ds.frames(f"{index}:{index + 1}")[0]


def _interp_depth(depth: np.ndarray, u: np.ndarray, v: np.ndarray, max_spread: float):
    """Bilinear interpolation of inverse depth (exact on planes) at float pixels; NaN where a
    neighbour is invalid/out of the image or the 4 neighbours span more than ``max_spread`` m."""
    h, w = depth.shape
    out = np.full(u.shape, np.nan)
    ok = (u >= 0) & (v >= 0) & (u < w - 1) & (v < h - 1)
    u0, v0 = np.floor(u[ok]).astype(int), np.floor(v[ok]).astype(int)
    nb = np.stack([depth[v0, u0], depth[v0, u0 + 1], depth[v0 + 1, u0], depth[v0 + 1, u0 + 1]])
    good = np.all(nb > 0, axis=0) & (nb.max(0) - nb.min(0) < max_spread)
    a, b = u[ok] - u0, v[ok] - v0
    inv = 1.0 / np.where(nb > 0, nb, 1.0)
    inv_i = (inv[0] * (1 - a) + inv[1] * a) * (1 - b) + (inv[2] * (1 - a) + inv[3] * a) * b
    vals = np.where(good, 1.0 / inv_i, np.nan)
    out[np.flatnonzero(ok)] = vals
    return out


def _backproject(K, T_world_cam, u, v, z) -> np.ndarray:
    """[N,3] world points of pixels (u, v) with z-depth z."""
    pc = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z])
    return (T_world_cam[:3, :3] @ pc + T_world_cam[:3, 3:]).T


def test_demo_dataset_layout(demo: SevenScenesDataset):
    info = load_sequence_info(demo.root)
    assert (info.map_spec, info.query_spec, info.n_map, info.n_query) == ("0:60", "100:140", 60, 40)
    meta = json.loads((demo.root / "synthetic.json").read_text())
    assert meta["config"]["seed"] == 0
    np.testing.assert_allclose(demo.K, [[525, 0, 319.5], [0, 525, 239.5], [0, 0, 1]])
    assert demo.image_size == (640, 480)
    assert [f.index for f in demo.frames(info.map_spec)] == list(range(60))
    assert [f.index for f in demo.frames(info.query_spec)] == list(range(100, 140))
    depth = demo.load_depth(_frame(demo, 7))
    assert depth.dtype == np.float32 and np.all(depth > 0.3) and depth.max() < 8.0
    assert default_demo_dataset() == demo.root  # reused, not re-rendered


@pytest.mark.parametrize("i, j", [(0, 2), (20, 23), (5, 101), (44, 129)])
def test_depth_poses_and_K_are_consistent(demo: SevenScenesDataset, i: int, j: int):
    """Back-project frame i, re-project into frame j: >95 % of co-visible pixels agree < 1 cm."""
    fi, fj = _frame(demo, i), _frame(demo, j)
    di, dj = demo.load_depth(fi), demo.load_depth(fj)
    v, u = np.mgrid[0:480:2, 0:640:2].reshape(2, -1)
    z = di[v, u].astype(np.float64)
    pw = _backproject(demo.K, fi.T_world_cam, u, v, z)
    T_cam_world = np.linalg.inv(fj.T_world_cam)
    pc = pw @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
    uj = demo.K[0, 0] * pc[:, 0] / pc[:, 2] + demo.K[0, 2]
    vj = demo.K[1, 1] * pc[:, 1] / pc[:, 2] + demo.K[1, 2]
    zj = _interp_depth(dj, uj, vj, max_spread=0.2)
    covisible = np.isfinite(zj) & (pc[:, 2] > 0)
    assert covisible.mean() > 0.3, "frames chosen for the check must overlap"
    agree = np.abs(zj[covisible] - pc[covisible, 2]) < 0.01
    assert agree.mean() > 0.95, f"only {agree.mean():.3f} of co-visible pixels agree"
    # inverting the pose convention must break the agreement (the test can fail)
    pc_bad = pw @ fj.T_world_cam[:3, :3].T + fj.T_world_cam[:3, 3]
    zb = _interp_depth(dj, demo.K[0, 0] * pc_bad[:, 0] / pc_bad[:, 2] + demo.K[0, 2],
                       demo.K[1, 1] * pc_bad[:, 1] / pc_bad[:, 2] + demo.K[1, 2], 0.2)
    okb = np.isfinite(zb) & (pc_bad[:, 2] > 0)
    assert okb.sum() == 0 or np.mean(np.abs(zb[okb] - pc_bad[okb, 2]) < 0.01) < 0.5


@pytest.fixture(scope="module")
def sift():
    return cv2.SIFT_create()


def test_sift_finds_many_keypoints(demo: SevenScenesDataset, sift):
    counts = [len(sift.detect(cv2.cvtColor(demo.load_rgb(f), cv2.COLOR_RGB2GRAY)))
              for f in demo.frames("0:140:20")]
    print("SIFT keypoints per frame:", counts)
    assert min(counts) > 300


def _nearest_mapping_frame(demo, query, n_map: int):
    maps = demo.frames(f"0:{n_map}")
    def score(f):
        dt = np.linalg.norm(f.T_world_cam[:3, 3] - query.T_world_cam[:3, 3])
        cosang = np.clip(f.T_world_cam[:3, 2] @ query.T_world_cam[:3, 2], -1, 1)
        return dt + 0.5 * np.arccos(cosang)
    return min(maps, key=score)


def _pose_error(T_est, T_gt) -> tuple[float, float]:
    dT = np.linalg.inv(T_gt) @ T_est
    angle = np.degrees(np.arccos(np.clip((np.trace(dT[:3, :3]) - 1) / 2, -1, 1)))
    return float(np.linalg.norm(T_est[:3, 3] - T_gt[:3, 3])), float(angle)


@pytest.mark.parametrize("q", [100, 113, 127, 138])
def test_sift_pnp_recovers_query_pose(demo: SevenScenesDataset, sift, q: int):
    """SIFT + ratio test + PnP-RANSAC against the nearest mapping frame's depth: query pose within
    1.5 mm / 0.025 deg of ground truth (measured worst of the four: 0.8 mm / 0.011 deg; the textures
    are matchable and the geometry is exact)."""
    fq = _frame(demo, q)
    fm = _nearest_mapping_frame(demo, fq, 60)
    gray = [cv2.cvtColor(demo.load_rgb(f), cv2.COLOR_RGB2GRAY) for f in (fm, fq)]
    (kp_m, des_m), (kp_q, des_q) = [sift.detectAndCompute(g, None) for g in gray]
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(des_q, des_m, k=2)
    good = [m for m, n in pairs if m.distance < 0.8 * n.distance]
    uv_m = np.array([kp_m[m.trainIdx].pt for m in good])
    uv_q = np.array([kp_q[m.queryIdx].pt for m in good])
    z = _interp_depth(demo.load_depth(fm), uv_m[:, 0], uv_m[:, 1], max_spread=0.02)
    ok = np.isfinite(z)
    pw = _backproject(demo.K, fm.T_world_cam, uv_m[ok, 0], uv_m[ok, 1], z[ok])
    found, rvec, tvec, inliers = cv2.solvePnPRansac(pw, uv_q[ok], demo.K, None, reprojectionError=2.0,
                                                    iterationsCount=2000, confidence=0.9999)
    n_in = 0 if inliers is None else len(inliers)
    assert found and n_in > 50, f"{len(good)} matches, {n_in} inliers"
    idx = inliers[:, 0]
    rvec, tvec = cv2.solvePnPRefineLM(pw[idx], uv_q[ok][idx], demo.K, None, rvec, tvec)
    T_cam_world = np.eye(4)
    T_cam_world[:3, :3] = cv2.Rodrigues(rvec)[0]
    T_cam_world[:3, 3] = tvec[:, 0]
    t_err, r_err = _pose_error(np.linalg.inv(T_cam_world), fq.T_world_cam)
    baseline = _pose_error(fm.T_world_cam, fq.T_world_cam)
    print(f"query {q} vs map {fm.index}: {len(good)} matches, {len(idx)} inliers, "
          f"error {100 * t_err:.2f} cm / {r_err:.3f} deg "
          f"(baseline {100 * baseline[0]:.1f} cm / {baseline[1]:.1f} deg)")
    assert baseline[0] > 0.05, "query must not coincide with a mapping frame"
    assert t_err < 0.0015 and r_err < 0.025


def test_render_is_deterministic_and_readable(tmp_path: Path):
    a = render_synthetic_sequence(tmp_path / "a", TINY)
    render_synthetic_sequence(tmp_path / "b", TINY)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(files) == 3 * 3 + 2
    for name in files:
        if name != "synthetic.json":
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    ds = open_dataset(a.root)
    assert [f.index for f in ds.frames(a.map_spec)] == [0, 1]
    assert [f.index for f in ds.frames(a.query_spec)] == [5]
    assert ds.image_size == (160, 120) and ds.load_rgb(ds.frames("5:6")[0]).std() > 20
    other = render_synthetic_sequence(tmp_path / "c", SyntheticRoomConfig(**{**TINY.__dict__, "seed": 4}))
    first = "frame-000000.color.png"
    assert (other.root / first).read_bytes() != (a.root / first).read_bytes()


def test_default_demo_dataset_replaces_a_stale_render(tmp_path: Path, monkeypatch):
    """A cached render made with another config/renderer version is re-rendered, atomically."""
    import mast3r_ros.datasets.synthetic_room as sr

    monkeypatch.setattr(sr, "demo_config", lambda: TINY)  # keep the test fast
    stale = tmp_path / sr.DEMO_NAME
    stale.mkdir()
    (stale / "synthetic.json").write_text(json.dumps({"render_version": 0, "config": {}}))
    root = sr.default_demo_dataset(cache=tmp_path)
    assert root == stale and sr._is_current_demo(root)
    assert len(list(root.glob("frame-*.color.png"))) == 3
    mtime = (root / "synthetic.json").stat().st_mtime_ns
    assert sr.default_demo_dataset(cache=tmp_path) == root
    assert (root / "synthetic.json").stat().st_mtime_ns == mtime  # reused
    assert sorted(p.name for p in tmp_path.iterdir()) == [sr.DEMO_NAME]  # no temp folders left


def test_bad_config_is_rejected(tmp_path: Path):
    with pytest.raises(ValueError, match="query_start >= n_map"):
        render_synthetic_sequence(tmp_path, SyntheticRoomConfig(n_map=10, query_start=5))
    with pytest.raises(ValueError, match="synthetic.json"):
        load_sequence_info(tmp_path)


def test_screen_space_culling_is_exact():
    """The per-box pixel bounds used for speed must not change a single pixel's hit."""
    renderer = RoomRenderer(TINY)
    mapping, query = trajectories(SyntheticRoomConfig())
    for T in mapping[::5] + query[::5]:
        dirs = np.einsum("ij,jhw->ihw", T[:3, :3], renderer.rays_cam).astype(np.float32)
        t_all, f_all = raycast(T[:3, 3], dirs, renderer.boxes)
        t_cull, f_cull = raycast(T[:3, 3], dirs, renderer.boxes, regions=renderer._regions(T))
        np.testing.assert_array_equal(f_all, f_cull)
        np.testing.assert_array_equal(t_all, t_cull)
        assert np.all(f_all >= 0)  # closed room: every ray hits something
