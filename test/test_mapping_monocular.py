"""Monocular MASt3R mapping on real 7-Scenes images with the oracle stand-in (default noise): poses,
metric scale and focal length from images alone, the saved map localizes RGB queries, and bad inputs
fail with one clear line. Network images of 256 px (the stand-in at that size) keep each test short;
the full-size, 84-image figures are in the README ("Monocular mapping")."""
from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.cli import main as cli_main
from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.geometry.transforms import pose_errors
from mast3r_ros.localization.evaluation import localize_frames
from mast3r_ros.localization.frontends.mast3r import Mast3rFrontEnd, Mast3rFrontEndConfig
from mast3r_ros.localization.localizer import Localizer, LocalizerConfig
from mast3r_ros.localization.retrieval import RetrievalConfig
from mast3r_ros.map import KeyframeMap
from mast3r_ros.map.build import build_map
from mast3r_ros.mapping.monocular import (
    MonocularConfig,
    frame_alignment,
    map_monocular,
    save_monocular_map,
    trajectory_accuracy,
)
from mast3r_ros.mapping.pairs import PairSelectionConfig
from mast3r_ros.mapping.pipeline import MapOptimizeConfig, optimize_map
from mast3r_ros.mapping.types import MappingError
from mast3r_ros.model.oracle import OracleModel

SIZE = 256
MAP, QUERIES = "0:96:12", "30:91:60"  # 8 images over 3.2 s; queries 30 and 90 lie between keyframes
APART = "420:433:12"  # two images 14 s later that see another part of the kitchen (GT overlap with 0 and 12 <= 2.5 %)


def _config() -> MonocularConfig:
    cfg = MonocularConfig(image_size=SIZE, pairs=PairSelectionConfig(complete_below=0, sequential_window=2,
                                                                     retrieval_k=1))
    cfg.matching.subsample = 8  # a 256x192 image: ~700 matches per pair as the default 16 gives at 512
    return cfg


@pytest.fixture(scope="module")
def kitchen(data_dir):
    return open_dataset(data_dir / "7scenes_redkitchen")


@pytest.fixture(scope="module")
def oracle(kitchen):
    frames = sorted({f.index for s in (MAP, QUERIES, APART) for f in kitchen.frames(s)})
    return OracleModel.from_dataset(kitchen, frames=frames, image_size=SIZE)


@pytest.fixture(scope="module")
def mono(kitchen, oracle):
    frames = kitchen.frames(MAP)
    images = [kitchen.load_rgb(f) for f in frames]
    return frames, images, map_monocular(images, oracle, _config())


def test_images_alone_give_metric_poses_and_focal(kitchen, mono):
    frames, _, res = mono
    T_gt = np.stack([f.T_world_cam for f in frames])
    acc = trajectory_accuracy(res.T_map_cam, T_gt, res.K, kitchen.K)
    assert np.allclose(res.T_map_cam[0], np.eye(4), atol=1e-9)  # map frame = first camera
    # metric without any scale fit: measured ATE 0.20 cm after SE(3) (0.15 cm after Sim(3)), scale 0.992
    assert acc["ate_se3_m"] < 0.003, acc
    assert abs(acc["sim3_scale"] - 1.0) < 0.015, acc
    assert acc["focal_error_pct"] < 0.6, acc  # measured 0.32 % (583.1 px for 585)
    summary = res.summary()
    assert summary["pairs_ok"] == summary["n_pairs"] == len(res.pairs)
    # keyframe points: metric, in each camera, where the sensor saw the surface (z = true depth +- noise)
    d_gt = kitchen.load_depth(frames[3])
    X = res.points[3]
    tf = res.encoded[3].transform
    xy = tf.nearest_original_pixels().reshape(X.shape[0], X.shape[1], 2)
    z_gt = d_gt[xy[..., 1], xy[..., 0]]
    ok = np.isfinite(X[..., 2]) & (z_gt > 0)
    assert ok.mean() > 0.8  # measured 0.88
    assert np.median(np.abs(X[..., 2][ok] / z_gt[ok] - 1)) < 0.008  # measured 0.0054


def test_saved_map_localizes_rgb_queries_with_the_mast3r_frontend(kitchen, oracle, mono, tmp_path):
    frames, images, res = mono
    encodes = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(oracle, "encode", lambda batch, encode=oracle.encode: encodes.append(len(batch)) or encode(batch))
        save_monocular_map(res, images, oracle, tmp_path / "mono", [f.index for f in frames],
                           [f.timestamp for f in frames])
    assert encodes == []  # the keyframes' arrays come from the mapping's encodings, not a second encoder pass
    assert (tmp_path / "mono" / "cloud.ply").stat().st_size > 1000
    frontend = Mast3rFrontEnd(Mast3rFrontEndConfig(image_size=SIZE), model=oracle)
    with KeyframeMap.open(tmp_path / "mono") as kmap:
        assert kmap.meta.frontend == "mast3r" and len(kmap) == len(frames)
        loc = Localizer(kmap, frontend, LocalizerConfig(retrieval=RetrievalConfig(top_k=2)))
        records = localize_frames(loc, kitchen, QUERIES)
    # the map frame is the first camera: compare after the keyframes' own SE(3) map -> world fit
    G = frame_alignment(res.T_map_cam, np.stack([f.T_world_cam for f in frames]))
    for r in records:
        assert r.localized, r.error
        t_err, r_err = pose_errors(G @ np.asarray(r.T_est), np.asarray(r.T_gt))
        assert t_err < 0.013 and r_err < 0.4, (r.index, t_err, r_err)  # measured 0.69 / 0.93 cm, 0.11 / 0.25 deg


def test_given_intrinsics_are_kept(kitchen, oracle):
    frames = kitchen.frames("0:48:12")
    res = map_monocular([kitchen.load_rgb(f) for f in frames], oracle, _config(), K=kitchen.K)
    assert np.allclose(res.K, kitchen.K, rtol=1e-6)  # back from network pixels exactly (float32 focal)
    acc = trajectory_accuracy(res.T_map_cam, np.stack([f.T_world_cam for f in frames]))
    assert acc["ate_se3_m"] < 0.0015, acc  # measured 0.074 cm


def test_optimize_a_mast3r_map_with_depth(kitchen, oracle, tmp_path):
    fe = Mast3rFrontEnd(Mast3rFrontEndConfig(image_size=SIZE), model=oracle)
    build_map(kitchen, "0:48:12", fe, tmp_path / "d")
    cfg = MapOptimizeConfig(mast3r=_config())
    summary = optimize_map(tmp_path / "d", cfg, frontend=fe)
    assert summary["intrinsics"] == "known" and summary["pairs_ok"] == summary["n_pairs"]
    with KeyframeMap.open(tmp_path / "d") as kmap:
        kfs = [kmap.get_keyframe(i, load_image=False, arrays=[]) for i in kmap.keyframe_ids()]
    T_gt = np.stack([f.T_world_cam for f in kitchen.frames("0:48:12")])
    acc = trajectory_accuracy(np.stack([k.T_map_cam for k in kfs]), T_gt)
    assert acc["ate_se3_m"] < 0.0015, acc  # measured 0.066 cm (sensor depth as the prior, K kept)
    assert np.allclose(kfs[0].K, kitchen.K)  # the depth prior's intrinsics are kept


def test_too_few_or_unlinked_images_fail_with_one_line(kitchen, oracle):
    image = kitchen.load_rgb(kitchen.frames(MAP)[0])
    with pytest.raises(MappingError, match="at least 2 overlapping images, got 1"):
        map_monocular([image], oracle, _config())
    # two moments of the sequence that see different parts of the kitchen share no usable pair
    with pytest.raises(MappingError, match="connected") as exc:
        map_monocular([kitchen.load_rgb(f) for f in kitchen.frames("0:13:12") + kitchen.frames(APART)],
                      oracle, _config())
    assert "\n" not in str(exc.value)


def test_cli_no_depth_refuses_the_classical_frontend(data_dir, tmp_path, capsys):
    rc = cli_main(["map", "build", "--dataset", str(data_dir / "7scenes_redkitchen"), "--frames", "0:30:6",
                   "--no-depth", "--optimize", "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert rc == 2 and "--no-depth" in err and "--frontend mast3r" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()
