"""The mapping node's monocular engine (``frontend: mast3r``, no depth) through its ROS-free core, on real
7-Scenes images with the oracle stand-in (default noise): the keyframe rule without odometry (stamp
interval) and with it (odometry gates), the keyframe buffer's bound, a MASt3R pass at ``optimize``,
``save_map`` writing a MASt3R map with the stand-in's hash that the localization core loads and
localizes in, and the refusals. Network images of 256 px keep it short (the live test runs 512)."""
from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.geometry.transforms import invert, pose_errors
from mast3r_ros.map import KeyframeMap
from mast3r_ros.model.oracle import OracleModel
from mast3r_ros.ros.core.frames import Frame
from mast3r_ros.ros.core.localization_core import LocalizationCore
from mast3r_ros.ros.core.mapping_core import MappingCore
from mast3r_ros.ros.core.params import LocalizationParams, MappingParams

SIZE = 256
STREAM = range(0, 37, 3)  # 13 frames, 0.1 s apart (index / 30 fps): keyframes every 0.4 s = 0, 12, 24, 36
KEYFRAMES = [0, 12, 24, 36]
QUERY = 18


@pytest.fixture(scope="module")
def kitchen(data_dir):
    return open_dataset(data_dir / "7scenes_redkitchen")


@pytest.fixture(scope="module")
def oracle(kitchen):
    return OracleModel.from_dataset(kitchen, frames=[*KEYFRAMES, QUERY], image_size=SIZE)


def _params(kitchen, **changes) -> MappingParams:
    return MappingParams().replace({"frontend": "mast3r", "subscribe_depth": False, "mast3r.image_size": SIZE,
                                    "oracle_dataset": str(kitchen.root), **changes})


def _frame(kitchen, i: int) -> Frame:
    f = next(iter(kitchen.frames(f"{i}:{i + 1}")))
    rgb = kitchen.load_rgb(f)
    return Frame(round(i / 30 * 1e9), "camera_optical", rgb, kitchen.K, None, (rgb.shape[1], rgb.shape[0]))


def test_keyframes_by_interval_then_a_mast3r_pass_and_a_saved_map_that_localizes(kitchen, oracle, tmp_path):
    core = MappingCore(_params(kitchen), background=False, model=oracle)
    try:
        outs = {i: core.process(_frame(kitchen, i), None, odom_is_real=False) for i in STREAM}
        assert not [o.status.message for o in outs.values() if o.status.error]
        assert [i for i, o in outs.items() if o.keyframe_added] == KEYFRAMES  # no depth, no odometry: 0.4 s
        assert "0.10 s after the last keyframe" in outs[3].status.message
        assert "mapped by MASt3R at optimize or save_map" in outs[12].status.message
        assert core.keyframe_poses()[0].shape == (0, 4, 4) and core.passes == 0  # posed by a pass only
        why, summary = core.optimize()
        assert why == "" and summary["what"].startswith("MASt3R mapping pass") and core.passes == 1
        T, stamps = core.keyframe_poses()
        np.testing.assert_array_equal(stamps, [round(i / 30 * 1e9) for i in KEYFRAMES])
        gt = [next(iter(kitchen.frames(f"{i}:{i + 1}"))).T_world_cam for i in KEYFRAMES]
        # the map frame is the first keyframe's camera: compare with the ground truth seen from it
        errs = [pose_errors(t, invert(gt[0]) @ g) for t, g in zip(T, gt)]
        print("keyframe errors (cm, deg):", [(round(100 * e[0], 2), round(e[1], 2)) for e in errs])
        # measured: 0.16 / 0.30 / 0.31 cm, 0.06 / 0.03 / 0.11 deg (the oracle's noise is seeded)
        assert max(e[0] for e in errs) < 0.004 and max(e[1] for e in errs) < 0.15
        xyz, rgb = core.cloud()
        assert len(xyz) > 1000 and xyz.dtype == np.float32 and rgb.dtype == np.uint8
        assert core.save_map(tmp_path / "mono") == ""
    finally:
        core.close()
    with KeyframeMap.open(tmp_path / "mono") as kmap:
        assert kmap.meta.frontend == "mast3r" and kmap.meta.checkpoint_sha256 == oracle.checkpoint_sha256
        assert len(kmap.keyframe_ids()) == len(KEYFRAMES)
    # the localization core loads it with the same stand-in and localizes a frame between keyframes
    lp = LocalizationParams().replace({"frontend": "mast3r", "mast3r.image_size": SIZE,
                                       "oracle_dataset": str(kitchen.root)})
    from mast3r_ros.localization.frontends.mast3r import Mast3rFrontEnd

    loc = LocalizationCore(lp, Mast3rFrontEnd(lp.mast3r, model=oracle))
    try:
        assert loc.load_map(tmp_path / "mono") == ""
        out = loc.process(_frame(kitchen, QUERY), np.eye(4), np.eye(4))
    finally:
        loc.close()
    assert out.status.state == "TRACKING" and out.T_map_cam is not None, out.status.message
    gt_q = invert(gt[0]) @ next(iter(kitchen.frames(f"{QUERY}:{QUERY + 1}"))).T_world_cam
    dt, dr = pose_errors(out.T_map_cam, gt_q)
    print(f"query {QUERY}: {100 * dt:.2f} cm, {dr:.2f} deg")
    assert dt < 0.003 and dr < 0.05  # measured 0.23 cm, 0.03 deg


def test_odometry_gates_when_present_and_the_buffer_is_bounded(kitchen, oracle):
    core = MappingCore(_params(kitchen, **{"mono.max_keyframes": 2}), background=False, model=oracle)
    try:
        T0 = np.eye(4)
        T_small, T_far, T_farther = np.eye(4), np.eye(4), np.eye(4)
        T_small[0, 3], T_far[0, 3], T_farther[0, 3] = 0.02, 0.5, 1.0
        assert core.process(_frame(kitchen, 0), T0).keyframe_added
        # 0.6 s later (the interval rule would take it), but odometry says it barely moved
        out = core.process(_frame(kitchen, 18), T_small)
        assert not out.keyframe_added and "odometry: moved 0.02 m" in out.status.message
        assert core.process(_frame(kitchen, 21), T_far).keyframe_added  # 0.1 s later, but moved 0.5 m
        out = core.process(_frame(kitchen, 24), T_farther)
        assert not out.keyframe_added and "keyframe buffer full (mono.max_keyframes 2)" in out.status.message
        assert not out.status.error and core.num_keyframes == 2
        assert core.T_map_odom() is None  # no pass yet: no keyframe pose for map->odom
    finally:
        core.close()


def test_monocular_refusals(kitchen, oracle, tmp_path):
    core = MappingCore(_params(kitchen), background=False, model=oracle)
    try:
        assert core.optimize()[0] == "need at least 2 keyframes to optimise, have 0"
        assert core.save_map(tmp_path / "m") == "no keyframes yet"
        core.process(_frame(kitchen, 0), None, odom_is_real=False)
        assert "at least 2 keyframes" in core.save_map(tmp_path / "m") and not (tmp_path / "m").exists()
        (tmp_path / "saved").mkdir()
        (tmp_path / "saved" / "map.yaml").write_text("x: 1\n")
        assert "not supported with frontend 'mast3r'" in core.load_map(tmp_path / "saved")
        assert core.num_keyframes == 1  # kept
    finally:
        core.close()


def test_a_checkpoint_model_carries_its_file_hash_into_the_engine(tiny_checkpoint):
    # the saved map records model.checkpoint_sha256: the file's hash, which the localization node checks
    from mast3r_ros.model import file_sha256

    params = MappingParams().replace({"frontend": "mast3r", "subscribe_depth": False,
                                      "mast3r.checkpoint": str(tiny_checkpoint)})
    core = MappingCore(params, background=False)
    try:
        assert core.mapper.model.checkpoint_sha256 == file_sha256(tiny_checkpoint)
    finally:
        core.close()
