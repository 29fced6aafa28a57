"""`mast3r-ros map build --optimize` and `evaluate-trajectory` end to end on 7-Scenes, an
evaluate-trajectory oracle (perturbed ground truth with a known error), and the clear errors of
map optimisation on unsupported maps."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mast3r_ros.cli import main
from mast3r_ros.datasets.calibration import RgbdCalibration
from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.datasets.tum import read_tum, write_tum
from mast3r_ros.geometry.alignment import umeyama
from mast3r_ros.map import KeyframeMap, MapMeta
from mast3r_ros.mapping.outputs import read_ply
from mast3r_ros.mapping.pipeline import CHAIN_TUM, optimize_map
from mast3r_ros.mapping.types import MappingError


def _evaluate(gt: str, est, tmp_path, name: str, calib: bool = True) -> dict:
    out = tmp_path / f"{name}.json"
    args = ["evaluate-trajectory", "--gt", gt, "--est", str(est), "--json", str(out)]
    assert main(args + (["--rgbd-calib", "7scenes"] if calib else [])) == 0
    return json.loads(out.read_text())


def test_map_build_optimize_beats_chain(data_dir, tmp_path, capsys):
    ds_dir = str(data_dir / "7scenes_redkitchen")
    mp, summary = tmp_path / "map", tmp_path / "summary.json"
    # 25 keyframes 12 cm apart; poses start from the chain of pairwise estimates (GT unused)
    assert main(["map", "build", "--dataset", ds_dir, "--frames", "0:150:6", "--out", str(mp),
                 "--rgbd-calib", "7scenes", "--optimize", "--json", str(summary)]) == 0
    assert "optimised 25 keyframes" in capsys.readouterr().out
    doc = json.loads(summary.read_text())
    for key in ("n_keyframes", "n_pairs", "pairs_ok", "pairs_fallback", "pairs_dropped", "n_cloud_points",
                "timings"):
        assert key in doc
    # measured: 138 of 142 pairs aligned (4 dropped), 154379 cloud points
    assert doc["n_keyframes"] == 25 and doc["pairs_ok"] >= 0.97 * doc["n_pairs"] and doc["n_pairs"] >= 24
    stamps, T = read_tum(mp / "trajectory_tum.txt")
    assert len(stamps) == 25 and np.array_equal(T[0], np.eye(4))  # map = first keyframe, exactly
    stamps_c, T_c = read_tum(mp / CHAIN_TUM)  # the chain start is in the same frame
    np.testing.assert_array_equal(stamps_c, stamps)
    # the optimisation moved the chain (measured up to 1.78 cm)
    assert np.array_equal(T_c[0], np.eye(4)) and not np.allclose(T_c, T, rtol=0, atol=0.015)
    xyz, rgb = read_ply(mp / "cloud.ply")
    assert len(xyz) == doc["n_cloud_points"] > 150_000 and rgb.dtype == np.uint8
    # the cloud lies in front of the first camera, at the kitchen's depth (median measured 2.08 m)
    assert 2.0 < np.median(xyz[:, 2]) < 2.2
    opt = _evaluate(ds_dir, mp / "trajectory_tum.txt", tmp_path, "opt")
    chain = _evaluate(ds_dir, mp / CHAIN_TUM, tmp_path, "chain")
    assert opt["n_poses"] == chain["n_poses"] == 25
    assert opt["ate_m"]["rmse"] < 0.018  # measured 1.71 cm
    assert opt["ate_m"]["rmse"] < chain["ate_m"]["rmse"]  # measured 1.71 < 1.74 cm
    with KeyframeMap.open(mp) as kmap:  # the optimised poses are the map's keyframe poses
        poses = kmap.poses()
        # to the 9 decimals of the TUM file: measured 9.7e-10
        np.testing.assert_allclose(np.stack([poses[i] for i in kmap.keyframe_ids()]), T, rtol=0, atol=2e-9)


def test_evaluate_trajectory_on_perturbed_ground_truth(data_dir, tmp_path, capsys):
    """Estimate = GT colour poses moved by an arbitrary rigid transform plus known per-pose
    offsets: the ATE must equal the RMSE of the offsets after an independent Umeyama fit."""
    ds_dir = str(data_dir / "7scenes_redkitchen")
    ds = open_dataset(ds_dir)
    cal = RgbdCalibration.load("7scenes")
    frames = list(ds.frames("0:300:6"))
    T_gt = np.stack([cal.colour_pose(f.T_world_cam) for f in frames])
    G = np.eye(4)
    G[:3, :3] = Rotation.from_euler("xyz", [20, -35, 60], degrees=True).as_matrix()
    G[:3, 3] = [1.0, -2.0, 0.5]
    rng = np.random.default_rng(0)
    offsets = rng.normal(0, 0.02, (len(frames), 3))
    T_est = G @ T_gt
    T_est[:, :3, 3] += offsets
    write_tum(tmp_path / "est.txt", [f.timestamp for f in frames], T_est)
    m = _evaluate(ds_dir, tmp_path / "est.txt", tmp_path, "pert")
    # independent oracle: rigid Umeyama of the estimate's (depth-camera) positions onto the GT's
    P_est = np.stack([cal.dataset_pose(T)[:3, 3] for T in T_est])
    P_gt = np.stack([f.T_world_cam[:3, 3] for f in frames])
    S, _ = umeyama(P_est, P_gt)
    e = np.linalg.norm(P_est @ S[:3, :3].T + S[:3, 3] - P_gt, axis=1)
    assert m["n_poses"] == len(frames)
    # measured: 3.2099965 cm vs the oracle's 3.2099959 cm (rel 1.9e-7: the TUM file's 9 decimals)
    assert m["ate_m"]["rmse"] == pytest.approx(np.sqrt(np.mean(e ** 2)), rel=3e-7)
    assert m["ate_m"]["rmse"] == pytest.approx(0.02 * np.sqrt(3), rel=0.08)  # ~ the offsets' RMS (7.3 % below)
    # rotations are exact up to G, so their error is the fitted alignment's rotation error alone
    R_est = np.stack([cal.dataset_pose(T)[:3, :3] for T in T_est])
    R_gt = np.stack([f.T_world_cam[:3, :3] for f in frames])
    rot = Rotation.from_matrix(np.linalg.svd(R_gt)[0] @ np.linalg.svd(R_gt)[2]).inv() * \
        Rotation.from_matrix(S[:3, :3] @ R_est)
    # measured 0.97701 vs 0.97705 deg; relative rotations exact up to the file's rounding (8.2e-8 deg)
    assert m["ape_rot_deg"]["rmse"] == pytest.approx(np.sqrt(np.mean(np.degrees(rot.magnitude()) ** 2)), abs=5e-5)
    assert m["rpe_deg"]["rmse"] < 1e-7
    # without offsets the error vanishes; a missing file is a clean error
    write_tum(tmp_path / "exact.txt", [f.timestamp for f in frames], G @ T_gt)
    assert _evaluate(ds_dir, tmp_path / "exact.txt", tmp_path, "exact")["ate_m"]["rmse"] < 5e-7  # measured 3.8e-7
    assert main(["evaluate-trajectory", "--gt", ds_dir, "--est", str(tmp_path / "none.txt")]) == 2
    assert "evaluate-trajectory: error" in capsys.readouterr().err


def test_optimize_refuses_unsupported_maps(data_dir, tmp_path, capsys):
    ds_dir = str(data_dir / "7scenes_redkitchen")
    assert main(["map", "build", "--dataset", ds_dir, "--frames", "0:12:6", "--out", str(tmp_path / "nodepth"),
                 "--rgbd-calib", "7scenes"]) == 0
    with pytest.raises(MappingError, match="--store-depth"):
        optimize_map(tmp_path / "nodepth")
    # one keyframe: nothing to align (through the CLI: exit code 2 and the reason)
    assert main(["map", "build", "--dataset", ds_dir, "--frames", "0:6:6", "--out", str(tmp_path / "one"),
                 "--rgbd-calib", "7scenes", "--optimize"]) == 2
    assert "at least 2" in capsys.readouterr().err
    with KeyframeMap.create(tmp_path / "m3r", MapMeta(frontend="mast3r", image_size=(512, 384))):
        pass
    # a MASt3R map is optimised from its cached encodings: that needs the model that made them
    with pytest.raises(MappingError, match="needs its model"):
        optimize_map(tmp_path / "m3r")
