"""Dataset readers (7-Scenes on the real redkitchen data, TUM on a generated folder) and TUM I/O."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mast3r_ros.datasets.readers import (
    DatasetError,
    FrameSpec,
    SevenScenesDataset,
    TumRgbdDataset,
    open_dataset,
    parse_frame_spec,
)
from mast3r_ros.datasets.tum import T_to_tum_line, read_tum, tum_to_T, write_tum


@pytest.fixture(scope="module")
def kitchen(data_dir: Path) -> SevenScenesDataset:
    return open_dataset(data_dir / "7scenes_redkitchen")


# ------------------------------------------------------------------ frame specs
@pytest.mark.parametrize("spec, expected", [
    ("0:10", FrameSpec(0, 10, 1)), ("3:999:6", FrameSpec(3, 999, 6)), (" 5:6 ", FrameSpec(5, 6, 1)),
])
def test_parse_frame_spec_valid(spec, expected):
    assert parse_frame_spec(spec) == expected


@pytest.mark.parametrize("spec, words", [
    ("10", "START:STOP"), ("0:10:2:1", "START:STOP"), ("a:10", "START 'a'"), ("0:x", "STOP 'x'"),
    ("0:10:y", "STEP 'y'"), ("5:5", "greater than start"), ("9:2", "greater than start"),
    ("0:10:0", "step must be >= 1"), ("-3:10", "start must be >= 0"), ("", "START:STOP"),
])
def test_parse_frame_spec_errors_name_the_problem(spec, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        parse_frame_spec(spec)


def test_frame_spec_contains_is_strided_half_open():
    spec = FrameSpec(3, 20, 6)
    assert [i for i in range(30) if spec.contains(i)] == [3, 9, 15]


# ------------------------------------------------------------------ 7-Scenes (real data)
def test_seven_scenes_metadata(kitchen):
    assert isinstance(kitchen, SevenScenesDataset)
    assert kitchen.data_dir.name == "data"
    np.testing.assert_array_equal(kitchen.K, [[585, 0, 320], [0, 585, 240], [0, 0, 1]])
    assert kitchen.image_size == (640, 480)
    frames = kitchen.frames()
    assert len(frames) == 334 and frames[0].index == 0 and frames[-1].index == 999


def test_seven_scenes_spec_skips_missing_indices(kitchen):
    # only every 3rd index exists on disk: 1..19 step 1 -> 3, 6, ..., 18
    assert [f.index for f in kitchen.frames("1:20")] == [3, 6, 9, 12, 15, 18]
    assert [f.index for f in kitchen.frames(FrameSpec(600, 700, 30))] == [600, 630, 660, 690]
    f = kitchen.frames("600:601")[0]
    assert f.timestamp == 600.0 and f.rgb_path.name == "frame-000600.color.jpg"
    np.testing.assert_array_equal(f.T_world_cam, np.loadtxt(f.rgb_path.with_name("frame-000600.pose.txt")))


def test_seven_scenes_pixels(kitchen):
    f = kitchen.frames("300:301")[0]
    rgb, depth = kitchen.load_rgb(f), kitchen.load_depth(f)
    assert rgb.shape == (480, 640, 3) and rgb.dtype == np.uint8
    bgr = cv2.imread(str(f.rgb_path))
    np.testing.assert_array_equal(rgb, bgr[..., ::-1])
    raw = cv2.imread(str(f.depth_path), cv2.IMREAD_UNCHANGED)
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    valid = (raw > 0) & (raw < 65535)
    np.testing.assert_array_equal(depth[valid], (raw[valid] / 1000.0).astype(np.float32))  # mm -> m, rounded once
    assert np.all(depth[~valid] == 0) and 0.5 < np.median(depth[valid]) < 4.0


def _reprojection_agreement(ds, fi, fj, tol: float) -> float:
    """Fraction of frame i's valid depth pixels landing in frame j whose depth agrees within tol."""
    di, dj = ds.load_depth(fi), ds.load_depth(fj)
    v, u = np.nonzero(di > 0)
    z = di[v, u]
    K = ds.K
    pts = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z, np.ones_like(z)])
    T_j_i = np.linalg.inv(fj.T_world_cam) @ fi.T_world_cam
    pj = T_j_i @ pts
    uj = np.round(K[0, 0] * pj[0] / pj[2] + K[0, 2]).astype(int)
    vj = np.round(K[1, 1] * pj[1] / pj[2] + K[1, 2]).astype(int)
    inside = (pj[2] > 0) & (uj >= 0) & (uj < dj.shape[1]) & (vj >= 0) & (vj < dj.shape[0])
    zj = dj[vj[inside], uj[inside]]
    ok = zj > 0
    return float(np.mean(np.abs(zj[ok] - pj[2][inside][ok]) < tol))


def test_seven_scenes_poses_are_camera_to_world(kitchen):
    """Depth of frame i re-projected with T_world_cam into frame j matches j's depth (the README
    check): proves the reader's pose direction, K and depth scale together."""
    for i, j in ((300, 330), (90, 120)):
        fi, fj = kitchen.frames(f"{i}:{i + 1}")[0], kitchen.frames(f"{j}:{j + 1}")[0]
        assert _reprojection_agreement(kitchen, fi, fj, 0.05) > 0.92  # measured 0.931 (300, 330), 0.965 (90, 120)
        fi.T_world_cam = np.linalg.inv(fi.T_world_cam)  # the wrong reading must fail the check
        fj.T_world_cam = np.linalg.inv(fj.T_world_cam)
        assert _reprojection_agreement(kitchen, fi, fj, 0.05) < 0.05  # measured 0.039, 0.033


@pytest.fixture
def small_7scenes(tmp_path: Path, data_dir: Path) -> Path:
    """Two real frames copied into a flat (no data/ subfolder) 7-Scenes folder."""
    src = data_dir / "7scenes_redkitchen" / "data"
    for name in ["camera-intrinsics.txt"] + [f"frame-{i:06d}.{s}" for i in (0, 3)
                                             for s in ("color.jpg", "depth.png", "pose.txt")]:
        shutil.copy(src / name, tmp_path / name)
    return tmp_path


def test_flat_layout_invalid_depth_codes_and_missing_parts(small_7scenes: Path):
    raw = cv2.imread(str(small_7scenes / "frame-000003.depth.png"), cv2.IMREAD_UNCHANGED)
    raw[:10, :10] = 65535
    raw[10:20, :10] = 0
    cv2.imwrite(str(small_7scenes / "frame-000003.depth.png"), raw)
    (small_7scenes / "frame-000000.depth.png").unlink()
    (small_7scenes / "frame-000000.pose.txt").unlink()
    ds = open_dataset(small_7scenes)
    f0, f3 = ds.frames()
    assert ds.data_dir == small_7scenes
    assert f0.depth_path is None and f0.T_world_cam is None and ds.load_depth(f0) is None
    depth = ds.load_depth(f3)
    assert np.all(depth[:20, :10] == 0) and depth[100, 100] == np.float32(raw[100, 100] / 1000.0)
    K = np.diag([500.0, 500.0, 1.0])
    assert np.array_equal(SevenScenesDataset(small_7scenes, K=K).K, K)


def test_seven_scenes_errors_name_the_file(small_7scenes: Path, tmp_path: Path):
    (small_7scenes / "frame-000003.color.jpg").write_bytes(b"not a jpeg")
    ds = open_dataset(small_7scenes)
    with pytest.raises(DatasetError, match="frame-000003.color.jpg"):
        ds.load_rgb(ds.frames("3:4")[0])
    (small_7scenes / "frame-000003.pose.txt").write_text("1 0 0\n0 1 0\n")
    with pytest.raises(DatasetError, match="frame-000003.pose.txt"):
        ds.frames("3:4")
    (small_7scenes / "camera-intrinsics.txt").write_text("585 0 320\n0 585 240\n")
    with pytest.raises(DatasetError, match="camera-intrinsics.txt.*3x3"):
        open_dataset(small_7scenes)
    (small_7scenes / "camera-intrinsics.txt").unlink()
    with pytest.raises(DatasetError, match="missing .*camera-intrinsics.txt"):
        open_dataset(small_7scenes)


def test_open_dataset_errors(tmp_path: Path):
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="unrecognised dataset layout.*rgb.txt"):
        open_dataset(tmp_path / "empty")
    assert issubclass(DatasetError, ValueError)


# ------------------------------------------------------------------ TUM RGB-D
def _make_tum(root: Path) -> list[np.ndarray]:
    """5 RGB frames at 30 Hz; depth offset 5 ms (frame 3 has none); GT at 100 Hz from t=0.01."""
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    t_rgb = 1000.0 + np.arange(5) / 30.0
    rgb_lines, depth_lines = ["# color images"], ["# depth maps"]
    for i, t in enumerate(t_rgb):
        img = np.full((48, 64, 3), (10 * i, 100, 200), np.uint8)
        cv2.imwrite(str(root / f"rgb/{t:.6f}.png"), img)
        rgb_lines.append(f"{t:.6f} rgb/{t:.6f}.png")
        if i != 3:
            d = np.full((48, 64), 5000 * (i + 1), np.uint16)
            d[0, 0] = 0
            cv2.imwrite(str(root / f"depth/{t + 0.005:.6f}.png"), d)
            depth_lines.append(f"{t + 0.005:.6f} depth/{t + 0.005:.6f}.png")
    gt_lines, poses = ["# timestamp tx ty tz qx qy qz qw"], []
    for k in range(1, 14):
        T = np.eye(4)
        T[:3, :3] = Rotation.from_euler("z", 5 * k, degrees=True).as_matrix()
        T[:3, 3] = (0.1 * k, -0.2, 1.5)
        gt_lines.append(T_to_tum_line(1000.0 + 0.01 * k, T))
        poses.append(T)
    for name, lines in (("rgb.txt", rgb_lines), ("depth.txt", depth_lines), ("groundtruth.txt", gt_lines)):
        (root / name).write_text("\n".join(lines) + "\n")
    return poses


def test_tum_association_depth_scale_and_defaults(tmp_path: Path):
    gt = _make_tum(tmp_path)
    ds = open_dataset(tmp_path)
    assert isinstance(ds, TumRgbdDataset)
    np.testing.assert_array_equal(ds.K, [[525, 0, 319.5], [0, 525, 239.5], [0, 0, 1]])
    assert ds.image_size == (64, 48)
    frames = ds.frames()
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert frames[1].timestamp == 1000.033333  # as written in rgb.txt (6 decimals)
    assert frames[3].depth_path is None and frames[2].depth_path.name.startswith("1000.07166")
    # frame 0 (t=1000.000) is nearest to GT t=1000.01 (within 0.02 s); frame 4 at t=1000.1333 -> GT k=13
    # (to the 9 decimals of groundtruth.txt: measured 3.3e-11, 7.1e-10)
    np.testing.assert_allclose(frames[0].T_world_cam, gt[0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(frames[4].T_world_cam, gt[12], rtol=0, atol=1e-9)
    depth = ds.load_depth(frames[2])
    assert depth.dtype == np.float32 and depth[5, 5] == 3.0 and depth[0, 0] == 0  # 15000 / 5000
    assert ds.load_rgb(frames[2])[0, 0].tolist() == [200, 100, 20]
    assert [f.index for f in ds.frames("1:5:2")] == [1, 3]


def test_tum_gt_outside_tolerance_and_intrinsics_sources(tmp_path: Path):
    _make_tum(tmp_path)
    lines = (tmp_path / "groundtruth.txt").read_text().splitlines()
    (tmp_path / "groundtruth.txt").write_text("\n".join(lines[:2]) + "\n")  # only GT at t=1000.01
    ds = TumRgbdDataset(tmp_path)
    # frame 1 (t=1000.0333) is 23 ms from the only GT stamp: beyond the 20 ms tolerance
    assert [f.T_world_cam is not None for f in ds.frames()] == [True, False, False, False, False]
    np.savetxt(tmp_path / "camera-intrinsics.txt", np.diag([517.3, 516.5, 1.0]))
    assert TumRgbdDataset(tmp_path).K[0, 0] == 517.3
    assert TumRgbdDataset(tmp_path, K=np.diag([1.0, 2.0, 1.0])).K[1, 1] == 2.0
    (tmp_path / "depth.txt").write_text("1000.0 depth/x.png extra\n")
    with pytest.raises(DatasetError, match=r"depth.txt:1: expected 2 fields"):
        TumRgbdDataset(tmp_path)


# ------------------------------------------------------------------ TUM trajectory I/O
def test_tum_quaternion_order_and_roundtrip(tmp_path: Path):
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    T[:3, 3] = (1.0, 2.0, 3.0)
    vals = [float(x) for x in T_to_tum_line(12.5, T).split()]
    # 9 decimals written: measured 1.9e-10 from sqrt(0.5); the rotation back within 2.2e-16
    np.testing.assert_allclose(vals, [12.5, 1, 2, 3, 0, 0, np.sqrt(0.5), np.sqrt(0.5)], rtol=0, atol=5e-10)
    np.testing.assert_allclose(tum_to_T(vals[1:]), T, rtol=0, atol=1e-15)
    rng = np.random.default_rng(0)
    Ts = np.tile(np.eye(4), (7, 1, 1))
    Ts[:, :3, :3] = Rotation.random(7, random_state=1).as_matrix()
    Ts[:, :3, 3] = rng.normal(size=(7, 3))
    stamps = 1e9 + np.arange(7) * 0.033
    path = write_tum(tmp_path / "sub" / "poses.tum", stamps, Ts)
    s2, T2 = read_tum(path)
    np.testing.assert_array_equal(s2, stamps)  # 9 decimals hold every float64 near 1e9 s
    np.testing.assert_allclose(T2, Ts, rtol=0, atol=6e-9)  # quaternion to 9 decimals: measured 4.9e-9
    assert list((tmp_path / "sub").iterdir()) == [path]  # no temp file left behind


def test_tum_errors(tmp_path: Path):
    bad = tmp_path / "bad.tum"
    bad.write_text("# header\n0 1 2 3 0 0 0 1\n1 2 3 0 0 0 1\n")
    with pytest.raises(ValueError, match=r"bad.tum:3: expected 8 numbers"):
        read_tum(bad)
    bad.write_text("0 1 2 3 0 0 0 0\n")
    with pytest.raises(ValueError, match="degenerate quaternion"):
        read_tum(bad)
    with pytest.raises(ValueError, match=r"\[N,4,4\]"):
        write_tum(bad, [0.0, 1.0], np.eye(4)[None])
