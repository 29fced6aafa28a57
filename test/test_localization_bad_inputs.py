"""Bad inputs give LOST / clear errors; nothing escapes ``Localizer.localize``; a wrong pose prior is refused
by its narrowed gates, which clearing the prior gives back as configured."""
from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.geometry.transforms import pose_errors
from mast3r_ros.localization.evaluation import localize_frames
from mast3r_ros.localization.frontends import FrontEndError, make_frontend
from mast3r_ros.localization.localizer import Localizer
from mast3r_ros.localization.state import LocState
from mast3r_ros.map import KeyframeMap
from mast3r_ros.map.build import build_map


@pytest.fixture(scope="module")
def scene(data_dir):
    return open_dataset(data_dir / "7scenes_redkitchen")


@pytest.fixture(scope="module")
def small_map(scene, tmp_path_factory):
    path = tmp_path_factory.mktemp("maps") / "small"
    build_map(scene, "0:60:6", make_frontend("classical"), path)
    return path


@pytest.fixture
def localizer(small_map):
    kmap = KeyframeMap.open(small_map)
    yield Localizer(kmap, make_frontend("classical"))
    kmap.close()


def _frame(scene, index):
    return next(f for f in scene.frames(f"{index}:{index + 1}"))


def test_good_query_localizes(scene, localizer):
    f = _frame(scene, 27)
    r = localizer.localize(scene.load_rgb(f), scene.K, stamp=f.timestamp)
    assert r.ok and r.state.value == "TRACKING", r.error
    te, re = pose_errors(r.T_map_cam, f.T_world_cam)
    assert te < 0.05 and re < 2.0
    assert r.covariance.shape == (6, 6) and np.all(np.linalg.eigvalsh(r.covariance) > 0)
    assert set(r.timings) >= {"retrieval", "matching", "pnp", "total"}
    assert r.timings["total"] >= r.timings["matching"] > 0


@pytest.mark.parametrize("bad_K", [np.eye(4), np.zeros((3, 3)), np.full((3, 3), np.nan), "585"])
def test_bad_intrinsics_give_error_not_exception(scene, localizer, bad_K):
    img = scene.load_rgb(_frame(scene, 27))
    r = localizer.localize(img, bad_K)
    assert not r.ok and r.state.value in ("INIT", "LOST") and "intrinsics" in r.error


@pytest.mark.parametrize("make_image", [
    lambda img: img[..., 0],                       # grayscale
    lambda img: img.astype(np.float32),            # wrong dtype
    lambda img: np.zeros((4, 4, 3), np.uint8),     # tiny
    None,                                          # not an array at all
])
def test_bad_images_give_error(scene, localizer, make_image):
    img = scene.load_rgb(_frame(scene, 27))
    r = localizer.localize(make_image(img) if make_image else None, scene.K)
    assert not r.ok and r.error


def test_featureless_and_noise_images_are_lost(scene, localizer):
    rng = np.random.default_rng(0)
    for img in (np.full((480, 640, 3), 128, np.uint8), rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)):
        r = localizer.localize(img, scene.K)
        assert not r.ok and r.T_map_cam is None and r.covariance is None and r.error


def test_depth_shape_mismatch(scene, localizer):
    img = scene.load_rgb(_frame(scene, 27))
    r = localizer.localize(img, scene.K, depth=np.zeros((10, 10), np.float32))
    assert not r.ok and "depth" in r.error


def test_tracking_survives_bad_frames_then_relocalizes(scene, localizer):
    good = [_frame(scene, i) for i in (21, 27, 33)]
    assert localizer.localize(scene.load_rgb(good[0]), scene.K).ok
    blank = np.zeros((480, 640, 3), np.uint8)
    states = [localizer.localize(blank, scene.K).state.value for _ in range(4)]
    assert states[-1] == "LOST"
    r = localizer.localize(scene.load_rgb(good[2]), scene.K)
    assert r.ok and r.state.value == "TRACKING"


def test_pose_prior_narrows_the_gates_and_clearing_restores_the_configured_ones(scene, localizer):
    """seed_pose_prior: a prior 3 m off with a 0.3 m radius refuses the true pose (jump gate), the
    true prior accepts it; clear_pose_prior gives back exactly the configured gates and radius, also
    after set_gates changed them; a None prior relocalizes globally."""
    configured, radius = localizer.gates, localizer.prior_radius_m
    f = _frame(scene, 27)
    img = scene.load_rgb(f)
    wrong = f.T_world_cam.copy()
    wrong[:3, 3] += [3.0, 0.0, 0.0]
    localizer.seed_pose_prior(wrong, 0.3, max_jump_deg=10.0)
    assert localizer.state.state == LocState.TRACKING and localizer.prior_radius_m == 0.3
    assert localizer.gates == replace(configured, max_jump_m=0.3, max_jump_deg=10.0)
    assert localizer.config.gates == configured  # the configured values are not written
    r = localizer.localize(img, scene.K)
    assert not r.ok and "jump" in r.error and r.selection == "retrieval", r.error
    localizer.seed_pose_prior(f.T_world_cam, 0.3)  # max_jump_deg None: the configured rotation gate
    assert localizer.gates == replace(configured, max_jump_m=0.3)
    r = localizer.localize(img, scene.K)
    assert r.ok and r.state == LocState.TRACKING and r.selection == "retrieval", r.error
    localizer.clear_pose_prior()
    assert localizer.gates == configured and localizer.prior_radius_m == radius
    assert localizer.state.state == LocState.TRACKING  # clearing keeps the tracking state
    stricter = replace(configured, min_inliers=25, max_jump_m=0.2, max_jump_deg=5.0)
    localizer.set_gates(stricter)
    assert localizer.gates == stricter
    localizer.seed_pose_prior(f.T_world_cam, 1.0, max_jump_deg=20.0)
    localizer.clear_pose_prior()
    assert localizer.gates == stricter and localizer.prior_radius_m == radius
    localizer.seed_pose_prior(None, 1.0)
    assert localizer.state.state == LocState.LOST and localizer.state.prior() is None
    r = localizer.localize(img, scene.K)
    assert r.ok and r.selection == "retrieval", r.error


def test_map_build_without_depth_is_a_clear_error(scene, tmp_path):
    src = scene.data_dir
    dst = tmp_path / "ds"
    dst.mkdir()
    shutil.copy(src / "camera-intrinsics.txt", dst)
    for i in (0, 3, 6):
        for ext in ("color.jpg", "depth.png", "pose.txt"):
            shutil.copy(src / f"frame-{i:06d}.{ext}", dst)
    (dst / "frame-000003.depth.png").unlink()
    with pytest.raises(FrontEndError, match="frame 3 .*no depth"):
        build_map(open_dataset(dst), "0:9", make_frontend("classical"), tmp_path / "map")


def test_unreadable_query_image_is_reported(scene, small_map, tmp_path):
    src = scene.data_dir
    dst = tmp_path / "ds"
    dst.mkdir()
    shutil.copy(src / "camera-intrinsics.txt", dst)
    for ext in ("color.jpg", "depth.png", "pose.txt"):
        shutil.copy(src / f"frame-000027.{ext}", dst)
        shutil.copy(src / f"frame-000030.{ext}", dst)
    (dst / "frame-000030.color.jpg").write_bytes(b"not a jpeg")
    with KeyframeMap.open(small_map) as kmap:
        loc = Localizer(kmap, make_frontend("classical"))
        recs = localize_frames(loc, open_dataset(dst), "0:100")
    assert [r.localized for r in recs] == [True, False]
    assert "cannot read colour image" in recs[1].error


def test_frontend_factory_errors():
    with pytest.raises(FrontEndError, match="needs a checkpoint"):
        make_frontend("mast3r")
    with pytest.raises(FrontEndError, match="unknown front-end"):
        make_frontend("orb")


def test_localizer_rejects_map_of_other_frontend(small_map):
    class Other:
        name = "mast3r"
    with KeyframeMap.open(small_map) as kmap, pytest.raises(ValueError, match="built with front-end"):
        Localizer(kmap, Other())
