"""The mapping node core without ROS, on 7-Scenes RGB-D frames: odometry gating, incremental
passes without the optimize service, accuracy, map->odom, max_keyframes, bad input, save_map
(format the localization node loads, refusals, atomic replace), the cloud's frame, shutdown during
a long pass and parameter refusals."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from mast3r_ros.datasets.calibration import RgbdCalibration
from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.geometry.alignment import umeyama
from mast3r_ros.geometry.camera import depth_to_pointmap
from mast3r_ros.geometry.transforms import invert, pose_errors
from mast3r_ros.map import KeyframeMap
from mast3r_ros.mapping.incremental import IncrementalMapper
from mast3r_ros.ros.core.frames import Frame, FrameError
from mast3r_ros.ros.core.localization_core import LocalizationCore
from mast3r_ros.ros.core.mapping_core import MappingCore
from mast3r_ros.ros.core.params import LocalizationParams, MappingParams, ParamError

pytest.importorskip("mast3r_ros.mapping.incremental")


@pytest.fixture(scope="module")
def seven(data_dir):
    ds = open_dataset(data_dir / "7scenes_redkitchen")
    cal = RgbdCalibration.load("7scenes")
    frames = list(ds.frames("0:150:3"))
    cache = {i: (ds.load_rgb(f), ds.load_depth(f)) for i, f in enumerate(frames)}
    return ds, cal, frames, cache


def _params(changes: dict | None = None, **flat) -> MappingParams:
    """The mapping node's parameters (nested names in ``changes``) on 7-Scenes depth."""
    return MappingParams().replace(changes, rgbd_calibration="7scenes", **flat)


def _frame(seven, i, stamp_ns=None, **kw) -> Frame:
    ds, cal, frames, cache = seven
    rgb, depth = cache[i]
    f = frames[i]
    args = dict(depth=depth)
    args.update(kw)
    return Frame(int(round(f.timestamp * 1e9)) + 1 if stamp_ns is None else stamp_ns, "camera_optical", rgb,
                 cal.colour_K(ds.K), None, (rgb.shape[1], rgb.shape[0]), **args)


def _odom(seven, i) -> np.ndarray:
    """Odometry = the ground-truth colour camera pose, rotation made orthonormal (GT is to 1e-4)."""
    _, cal, frames, _ = seven
    T = np.array(cal.colour_pose(frames[i].T_world_cam), dtype=np.float64)
    U, _, Vt = np.linalg.svd(T[:3, :3])
    T[:3, :3] = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    return T


def _axis_points(T: np.ndarray) -> np.ndarray:
    offsets = np.vstack([np.zeros(3), 0.3 * np.eye(3)])
    return np.concatenate([P[:3, 3] + (P[:3, :3] @ offsets.T).T for P in T])


def _ate(est: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(ATE m, median rotation deg) after a rigid alignment on positions and camera axes."""
    A, _ = umeyama(_axis_points(est), _axis_points(ref))
    errs = [pose_errors(A @ e, g) for e, g in zip(est, ref)]
    return float(np.sqrt(np.mean([e[0] ** 2 for e in errs]))), float(np.median([e[1] for e in errs]))


@pytest.mark.slow
def test_odometry_gating_background_passes_and_accuracy(seven):
    # background=False: the passes the worker would run happen inside process() (deterministic)
    core = MappingCore(_params({"mapper.kf_min_translation": 0.10, "mapper.kf_min_rotation_deg": 10.0,
                                "mapper.optimize_every_n_keyframes": 3, "mapper.global_every": 6}),
                       background=False)
    try:
        kf_odom, first_poses, skipped = {}, {}, 0
        for i in range(0, 40):
            out = core.process(_frame(seven, i), _odom(seven, i))
            assert not out.status.error, out.status.message
            if out.keyframe_added:
                k = out.status.kf_ids[0]
                kf_odom[k] = _odom(seven, i)
                first_poses[k] = core.keyframe_poses()[0][-1].copy()
                # map->odom composes back to the newest keyframe's current pose
                np.testing.assert_allclose(out.T_map_odom @ kf_odom[k], first_poses[k], atol=1e-9)
            elif "odometry" in out.status.message:
                skipped += 1
        ids = sorted(kf_odom)
        assert 5 <= len(ids) <= 20 and skipped >= 10
        for a, b in zip(ids, ids[1:]):  # consecutive keyframes moved at least the gate on odometry
            dt, dr = pose_errors(kf_odom[a], kf_odom[b])
            assert dt >= 0.10 or dr >= 10.0
        # background passes ran without the optimize service and moved the keyframes
        assert core.passes >= 2 and core.n_optimize_calls == 0
        T, stamps = core.keyframe_poses()
        moved = [pose_errors(T[n], first_poses[k])[0] for n, k in enumerate(ids)]
        assert max(moved) > 1e-4
        ate_bg, _ = _ate(T, np.stack([kf_odom[k] for k in ids]))
        why, summary = core.optimize()
        assert why == "" and summary["passes"] > summary["passes_before"] and core.n_optimize_calls == 1
        T, _ = core.keyframe_poses()
        ate, rot = _ate(T, np.stack([kf_odom[k] for k in ids]))
        print(f"\ncore mapping: {len(ids)} keyframes, {core.passes} passes; ATE {100 * ate_bg:.1f} cm "
              f"(background) -> {100 * ate:.1f} cm after optimize, median rotation {rot:.2f} deg")
        assert ate <= 0.021 and rot < 1.35  # measured 1.88 cm / 1.18 deg
        # the map frame is the odom frame at the first keyframe: it keeps its odometry pose (fixed gauge)
        np.testing.assert_allclose(T[0], kf_odom[ids[0]], atol=1e-6)
    finally:
        core.close()


def test_background_worker_reports_passes(seven):
    core = MappingCore(_params({"mapper.kf_min_translation": 0.10, "mapper.alignment.niter1": 20,
                                "mapper.alignment.niter2": 20}))
    try:
        added = [core.process(_frame(seven, i), _odom(seven, i)).keyframe_added for i in range(0, 22)]
        assert sum(added) >= 3
        deadline = time.monotonic() + 60
        while core.passes < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert core.passes >= 1, core.last_pass_error
    finally:
        core.close()


def test_camera_only_rig_gates_visually(seven):
    # no odometry: every frame goes to the mapper, which gates on visual motion / overlap
    core = MappingCore(_params({"mapper.kf_min_translation": 0.10, "mapper.optimize_every_n_keyframes": 0}),
                       background=False)
    try:
        outs = [core.process(_frame(seven, i), np.eye(4), odom_is_real=False) for i in range(0, 8)]
        assert outs[0].keyframe_added and not any("odometry" in o.status.message for o in outs)
        assert not all(o.keyframe_added for o in outs)
        assert all(o.T_map_odom is not None for o in outs)
        # the node's own odom (identity odom->base): the map frame is the odom frame at the first
        # keyframe all the same, so map->odom is the identity
        np.testing.assert_allclose(outs[-1].T_map_odom, np.eye(4), atol=1e-9)
    finally:
        core.close()


def test_max_keyframes_bounds_memory_and_save(seven, tmp_path):
    core = MappingCore(_params({"mapper.kf_min_translation": 0.05, "mapper.max_keyframes": 3, "mapper.window_size": 2,
                                "mapper.optimize_every_n_keyframes": 0}), background=False)
    try:
        added = [core.process(_frame(seven, i), _odom(seven, i)).keyframe_added for i in range(0, 48, 6)]
        assert sum(added) >= 5 and core.num_keyframes == 3
        assert len(core._kf_odom) == 3  # odometry records follow the mapper's drops
        assert core.save_map(tmp_path / "m") == ""
        with KeyframeMap.open(tmp_path / "m") as kmap:
            assert len(kmap) == 3
    finally:
        core.close()


def test_bad_input_is_reported_and_the_next_frame_is_processed(seven):
    core = MappingCore(_params({"mapper.optimize_every_n_keyframes": 0}), background=False)
    try:
        good = _frame(seven, 0)
        bad = {
            "no depth": _frame(seven, 0, depth=None),
            "no TF": good,
            "image must be": _frame(seven, 0),
        }
        bad["image must be"].image = good.image[..., 0]
        for needle, frame in bad.items():
            out = core.process(frame, None if needle == "no TF" else np.eye(4))
            assert out.status.error and needle in out.status.message, out.status.message
        nan = _frame(seven, 0)
        nan.depth = np.full_like(nan.depth, np.nan, dtype=np.float32)
        assert core.process(nan, np.eye(4)).status.error
        assert core.optimize()[0].startswith("need at least 2 keyframes")
        assert core.save_map("/nonexistent/dir/m") != ""
        assert core.process(good, np.eye(4)).keyframe_added
        out = core.process(_frame(seven, 3, stamp_ns=good.stamp_ns - 1), np.eye(4))
        assert out.status.error and "backwards" in out.status.message
        core.paused = True
        assert "paused" in core.process(_frame(seven, 6), _odom(seven, 6)).status.message
        core.paused = False
        core.reset()
        assert core.num_keyframes == 0 and core.T_map_odom() is None
        assert core.process(_frame(seven, 3, stamp_ns=good.stamp_ns - 1), np.eye(4)).keyframe_added
    finally:
        core.close()


def test_frame_checked_once_on_the_node_path(seven):
    """The node checks each frame once with MappingCore.check: the same message as an unchecked
    process gives, the depth cleaned in a new frame (the caller's untouched); process(checked=True)
    still refuses a stamp going backwards and a frame without depth, and maps checked frames."""
    bad = _frame(seven, 0)
    bad.image = bad.image[..., 0]
    with pytest.raises(FrameError, match="image must be") as refused:
        MappingCore.check(bad)
    core = MappingCore(_params({"mapper.optimize_every_n_keyframes": 0}), background=False)
    try:
        assert core.process(bad, np.eye(4)).status.message == str(refused.value)
        raw = _frame(seven, 0)
        raw.depth = raw.depth.copy()
        raw.depth[:10] = np.nan
        checked = MappingCore.check(raw)
        assert np.isnan(raw.depth[:10]).all() and (checked.depth[:10] == 0).all()
        assert np.array_equal(checked.depth[10:], raw.depth[10:]) and checked.image is raw.image
        assert core.process(checked, _odom(seven, 0), checked=True).keyframe_added
        back = MappingCore.check(_frame(seven, 3, stamp_ns=raw.stamp_ns - 1))
        out = core.process(back, _odom(seven, 3), checked=True)
        assert out.status.error and "backwards" in out.status.message, out.status.message
        out = core.process(MappingCore.check(_frame(seven, 6, depth=None)), _odom(seven, 6), checked=True)
        assert out.status.error and "no depth image" in out.status.message, out.status.message
        out = core.process(MappingCore.check(_frame(seven, 20)), _odom(seven, 20), checked=True)
        assert out.keyframe_added and core.num_keyframes == 2, out.status.message
    finally:
        core.close()


def test_save_map_refusals_atomic_replace_and_localizable(seven, tmp_path):
    core = MappingCore(_params({"mapper.kf_min_translation": 0.10, "mapper.optimize_every_n_keyframes": 0}),
                       background=False)
    try:
        assert core.save_map(tmp_path / "m") == "no keyframes yet" and not (tmp_path / "m").exists()
        for i in range(0, 30, 6):
            core.process(_frame(seven, i), _odom(seven, i))
        n = core.num_keyframes
        assert n >= 3
        assert core.save_map(tmp_path / "m") == ""
        assert "already exists" in core.save_map(tmp_path / "m")
        (tmp_path / "other").mkdir()
        assert "not a map folder" in core.save_map(tmp_path / "other", overwrite=True)
        assert "parent folder" in core.save_map(tmp_path / "no" / "m")

        # a failure while writing leaves the saved map as it was
        before = sorted(p.name for p in (tmp_path / "m").rglob("*"))
        real = core._write_map

        def broken(path):
            real(path)
            raise OSError("disk full (simulated)")
        core._write_map = broken
        assert "disk full" in core.save_map(tmp_path / "m", overwrite=True)
        assert sorted(p.name for p in (tmp_path / "m").rglob("*")) == before
        core._write_map = real
        assert core.save_map(tmp_path / "m", overwrite=True) == ""
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left

        T, stamps = core.keyframe_poses()
        with KeyframeMap.open(tmp_path / "m") as kmap:
            ids = kmap.keyframe_ids()
            poses, ts = kmap.poses(), kmap.timestamps()
            assert len(ids) == n and kmap.meta.frontend == "classical"
            np.testing.assert_allclose(np.stack([poses[i] for i in ids]), T, atol=1e-9)
            np.testing.assert_allclose([ts[i] for i in ids], stamps * 1e-9, atol=1e-6)
        assert (tmp_path / "m" / "cloud.ply").is_file() and (tmp_path / "m" / "trajectory_tum.txt").is_file()

        # the localization node loads it and localizes a frame between the keyframes
        ds, cal, frames, _ = seven
        loc = LocalizationCore(LocalizationParams(map_path=str(tmp_path / "m"), subscribe_depth=True,
                                                  rgbd_calibration="7scenes"))
        T_map_cam0 = T[0] @ invert(_odom(seven, 0))  # map <- world (GT) through keyframe 0
        np.testing.assert_allclose(T_map_cam0, np.eye(4), atol=1e-6)  # map = odom (= GT world here)
        out = loc.process(_frame(seven, 9), np.eye(4), np.eye(4))
        assert out.status.localized, out.status.message
        dt, dr = pose_errors(out.T_map_cam, T_map_cam0 @ _odom(seven, 9))
        assert dt < 0.009 and dr < 0.14  # measured 0.75 cm / 0.116 deg
    finally:
        core.close()


def test_cloud_is_in_the_map_frame_and_bounded(seven):
    core = MappingCore(_params({"mapper.optimize_every_n_keyframes": 0}, cloud_max_points=5000), background=False)
    try:
        assert core.cloud()[0].shape == (0, 3)
        core.process(_frame(seven, 0), _odom(seven, 0))
        xyz, rgb = core.cloud()
        assert 1000 < len(xyz) <= 5000 and rgb.dtype == np.uint8 and xyz.dtype == np.float32
        # one keyframe: the map frame is the odom frame at it, so the cloud is its back-projected depth
        # moved by its odometry pose; in its camera frame every point lies in front of it
        ds, cal, frames, cache = seven
        depth = cal.depth_in_colour(cache[0][1], ds.K, cache[0][0].shape[1::-1])
        pts = depth_to_pointmap(cal.colour_K(ds.K), depth).reshape(-1, 3)
        pts = pts[pts[:, 2] > 0]
        T_cam_map = invert(_odom(seven, 0))
        xyz_cam = xyz.astype(np.float64) @ T_cam_map[:3, :3].T + T_cam_map[:3, 3]
        assert np.all(xyz_cam[:, 2] > 0)
        assert abs(np.median(xyz_cam[:, 2]) - np.median(pts[:, 2])) < 0.0035  # measured 2.9 mm (subsampled)
        for i in (6, 12):
            core.process(_frame(seven, i), _odom(seven, i))
        xyz, _ = core.cloud()
        assert len(xyz) <= 5000
    finally:
        core.close()


class HeldPassMapper(IncrementalMapper):
    """The real mapper, except that each optimisation pass waits for ``release`` once it has begun."""

    def __init__(self, config):
        super().__init__(config)
        self.pass_begun, self.release = threading.Event(), threading.Event()

    def optimize(self, mode: str = "global", wait: bool = True) -> bool:
        self.pass_begun.set()
        self.release.wait()
        return super().optimize(mode, wait)


def test_close_stops_waiting_for_a_global_pass_in_flight(seven):
    core = MappingCore(_params({"mapper.kf_min_translation": 0.05, "mapper.optimize_every_n_keyframes": 0}),
                       background=False, mapper_factory=HeldPassMapper)
    for i in (0, 14):
        core.process(_frame(seven, i), _odom(seven, i))
    assert core.num_keyframes == 2
    mapper, result = core.mapper, {}
    t = threading.Thread(target=lambda: result.setdefault("r", core.optimize()))
    t.start()
    assert mapper.pass_begun.wait(60)  # the service's global pass is running (held there)
    core.close()  # what the node does on SIGTERM, while the pass cannot finish
    t.join(60)
    assert not t.is_alive() and result["r"][0] == "shutting down"
    assert mapper.snapshot().version == 0  # close did not wait for the pass
    mapper.release.set()
    for other in threading.enumerate():  # the abandoned pass ends on its own, harmlessly
        if other.name == "mast3r-optimize":
            other.join(120)
    assert mapper.snapshot().version == 1


@pytest.mark.parametrize("changes,reason", [
    ({"frontend": "mast3r", "subscribe_depth": False}, "frontend 'mast3r' needs the mast3r.checkpoint parameter"),
    ({"frontend": "mast3r", "subscribe_depth": False, "mast3r.checkpoint": "/nonexistent/c.pth"},
     "mast3r.checkpoint '/nonexistent/c.pth' is not a file"),
    ({"frontend": "mast3r", "oracle_dataset": ".", "mono.estimate_focal": True},
     "mono.estimate_focal needs subscribe_depth false: the depth prior uses camera_info's K"),
    ({"subscribe_depth": False}, "frontend 'classical' maps with depth: subscribe_depth must be true"),
    ({"oracle_dataset": "."}, "oracle_dataset stands in for the MASt3R network: set frontend 'mast3r'"),
    ({"mono.max_keyframes": 1}, "mono.max_keyframes must be >= 2, got 1"),
    ({"mapper.kf_min_translation": 0.0, "mapper.kf_min_rotation_deg": 0.0}, "every frame would be a keyframe"),
    ({"mapper.max_keyframes": 1}, "mapper.max_keyframes must be >= 2, got 1"),
    ({"map_dir": "/nonexistent/dir/map"}, "map_dir '/nonexistent/dir/map': parent folder does not exist"),
    ({"mapper.optimize_every_n_keyframes": -1}, "mapper.optimize_every_n_keyframes must be >= 0"),
])
def test_mapping_parameters_are_refused_with_a_reason(changes, reason):
    with pytest.raises(ParamError) as exc:
        MappingParams().replace(changes)
    assert reason in str(exc.value)


def test_load_map_continues_mapping_and_refusals_keep_the_map(seven, tmp_path):
    params = _params({"mapper.kf_min_translation": 0.10, "mapper.optimize_every_n_keyframes": 0})
    core = MappingCore(params, background=False)
    try:
        for i in range(0, 30, 6):
            core.process(_frame(seven, i), _odom(seven, i))
        saved_T, saved_stamps = core.keyframe_poses()
        assert core.save_map(tmp_path / "m") == ""
    finally:
        core.close()
    T_map_world = saved_T[0] @ invert(_odom(seven, 0))  # the saved map frame: odom (GT world) at frame 0
    np.testing.assert_allclose(T_map_world, np.eye(4), atol=1e-6)

    core = MappingCore(params, background=False)
    try:
        core.process(_frame(seven, 45), _odom(seven, 45))  # a map of its own
        (tmp_path / "empty").mkdir()
        assert "not a map folder" in core.load_map(tmp_path / "empty")
        assert "not a map folder" in core.load_map(tmp_path / "nope")
        assert core.num_keyframes == 1
        assert core.load_map(tmp_path / "m") == ""
        T, stamps = core.keyframe_poses()
        np.testing.assert_allclose(T, saved_T, atol=1e-9)
        np.testing.assert_array_equal(stamps, saved_stamps)
        assert core.T_map_odom() is None  # odom is tied to the map again only by a new keyframe
        added = [i for i in range(27, 48, 3) if core.process(_frame(seven, i), _odom(seven, i)).keyframe_added]
        assert added and core.num_keyframes == len(saved_T) + len(added)
        T, _ = core.keyframe_poses()
        # the first new keyframe is tracked against the loaded map, in its frame (odometry = GT)
        dt, dr = pose_errors(T[len(saved_T)], T_map_world @ _odom(seven, added[0]))
        assert dt < 0.013 and dr < 1.3  # measured 1.10 cm / 1.13 deg
        np.testing.assert_allclose(core.T_map_odom() @ _odom(seven, added[-1]), T[-1], atol=1e-9)
        assert core.save_map(tmp_path / "m2") == ""
        with KeyframeMap.open(tmp_path / "m2") as kmap:
            assert len(kmap) == core.num_keyframes
    finally:
        core.close()
