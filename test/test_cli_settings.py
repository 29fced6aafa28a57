"""`--set NAME=VALUE` on the dataset commands (localize, evaluate, map build, relocalize): the nested
names of the core dataclasses (the ROS parameters' names) fill the same objects; per command one
setting that changes the result observably, an unknown name and a bad value (one-line errors naming
them). The parsing itself (``config_fields.apply_sets``) is checked first."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mast3r_ros.cli import main
from mast3r_ros.config_fields import apply_sets
from mast3r_ros.datasets.tum import read_tum
from mast3r_ros.localization.frontends.mast3r_config import Mast3rFrontEndConfig
from mast3r_ros.localization.localizer import LocalizerConfig
from mast3r_ros.mapping.pipeline import CHAIN_TUM

UNREACHABLE = "localizer.gates.min_inliers_global=100000"  # no query has that many inliers


def test_apply_sets_parses_by_field_type_and_leaves_the_rest():
    base = {"localizer": LocalizerConfig(), "mast3r": Mast3rFrontEndConfig()}
    out = apply_sets(base, ["localizer.retrieval.top_k=3", "localizer.pnp.solver=opencv", "localizer.rgbd_pose=false",
                            "localizer.gates.max_jump_m=2", "mast3r.amp_dtype=", "mast3r.device=cuda:1"])
    loc = out["localizer"]
    assert (loc.retrieval.top_k, loc.pnp.solver, loc.rgbd_pose, loc.gates.max_jump_m) == (3, "opencv", False, 2.0)
    assert isinstance(loc.gates.max_jump_m, float) and out["mast3r"].amp_dtype is None  # '' stands for None
    assert out["mast3r"].device == "cuda:1" and base["localizer"] == LocalizerConfig()  # inputs unchanged
    # everything not named keeps its default
    assert loc.gates.min_inliers == LocalizerConfig().gates.min_inliers and loc.keyframe_cache_mb == 512.0


@pytest.mark.parametrize("item,message", [
    ("localizer.top_k=3", "--set 'localizer.top_k=3': unknown setting 'localizer.top_k' "
                          "(did you mean 'localizer.retrieval.top_k'?)"),
    ("localizer.retrieval.top_k=three", "localizer.retrieval.top_k must be an integer, got 'three'"),
    ("localizer.retrieval.top_k=0", "localizer.retrieval.top_k must be >= 1, got 0"),
    ("localizer.pnp.solver=ransac", "localizer.pnp.solver must be one of ['poselib', 'opencv'], got 'ransac'"),
    ("localizer.rgbd_pose=maybe", "localizer.rgbd_pose must be a bool, got 'maybe'"),
    ("localizer.retrieval.top_k", "must look like NAME=VALUE"),
])
def test_apply_sets_refuses_with_one_line(item, message):
    with pytest.raises(ValueError) as exc:
        apply_sets({"localizer": LocalizerConfig()}, [item])
    assert message in str(exc.value) and "\n" not in str(exc.value)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def kitchen_map(data_dir, tmp_path_factory):
    ds_dir = str(data_dir / "7scenes_redkitchen")
    mp = tmp_path_factory.mktemp("settings") / "map"
    assert main(["map", "build", "--dataset", ds_dir, "--frames", "0:90:6", "--out", str(mp)]) == 0
    return ds_dir, mp


def test_localize_set(kitchen_map, tmp_path, capsys):
    ds_dir, mp = kitchen_map
    cmd = ["localize", "--map", str(mp), "--dataset", ds_dir, "--frames", "3:90:12", "--out", str(tmp_path / "p.tum")]
    assert main(cmd) == 0
    assert "8/8 frames localized" in capsys.readouterr().out  # the shipped defaults
    assert main(cmd + ["--set", UNREACHABLE]) == 0
    out = capsys.readouterr().out
    assert "0/8 frames localized" in out and "too few inliers" in out, out
    assert main(cmd + ["--set", "localizer.min_inliers=4"]) == 2
    assert "unknown setting 'localizer.min_inliers'" in _error_line(capsys)
    assert main(cmd + ["--set", "localizer.gates.min_inliers=2"]) == 2
    assert "localizer.gates.min_inliers must be >= 4, got 2" in _error_line(capsys)


def test_evaluate_set(kitchen_map, tmp_path, capsys):
    ds_dir, _ = kitchen_map
    cmd = ["evaluate", "--dataset", ds_dir, "--map-frames", "0:90:6", "--query-frames", "3:90:24",
           "--out", str(tmp_path / "r.json")]
    assert main(cmd + ["--set", UNREACHABLE]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n_queries"] == 4 and report["n_localized"] == 0
    assert main(cmd) == 0  # the same run with the defaults localizes every query
    assert json.loads((tmp_path / "r.json").read_text())["n_localized"] == 4
    assert main(cmd + ["--set", "mast3r.image_sise=256"]) == 2
    assert "unknown setting 'mast3r.image_sise' (did you mean 'mast3r.image_size'?)" in _error_line(capsys)
    assert main(cmd + ["--set", "mast3r.pixel_tol=-1"]) == 2
    assert "mast3r.pixel_tol must be >= 0.0, got -1.0" in _error_line(capsys)


def test_map_build_set(data_dir, tmp_path, capsys):
    ds_dir = str(data_dir / "7scenes_redkitchen")
    runs = {}
    for name, sets in (("default", []), ("still", ["--set", "optimize.alignment.niter1=0",
                                                   "--set", "optimize.alignment.niter2=0"])):
        mp = tmp_path / name
        assert main(["map", "build", "--dataset", ds_dir, "--frames", "0:36:6", "--out", str(mp),
                     "--rgbd-calib", "7scenes", "--optimize", *sets]) == 0
        runs[name] = (read_tum(mp / "trajectory_tum.txt")[1], read_tum(mp / CHAIN_TUM)[1])
    T, T_chain = runs["still"]
    np.testing.assert_allclose(T, T_chain, rtol=0, atol=1e-6)  # no iteration: the chain start is the result
    T, T_chain = runs["default"]
    assert not np.allclose(T, T_chain, rtol=0, atol=1e-4)  # the default passes move it
    base = ["map", "build", "--dataset", ds_dir, "--frames", "0:12:6", "--out", str(tmp_path / "x")]
    assert main(base + ["--set", "optimize.alignment.niter1=5"]) == 2  # without --optimize
    assert "need --optimize" in _error_line(capsys)
    assert main(base + ["--optimize", "--set", "optimize.alignment.niter=5"]) == 2
    assert "unknown setting 'optimize.alignment.niter'" in _error_line(capsys)
    assert main(base + ["--optimize", "--set", "optimize.alignment.lr1=fast"]) == 2
    assert "optimize.alignment.lr1 must be a number, got 'fast'" in _error_line(capsys)


def test_relocalize_set(data_dir, tmp_path, capsys):
    cmd = ["relocalize", "--dataset", str(data_dir / "7scenes_redkitchen"), "--reference-frame", "0",
           "--query-frames", "3:13:3", "--frontend", "classical", "--out", str(tmp_path / "r.json")]
    assert main(cmd) == 0
    assert json.loads((tmp_path / "r.json").read_text())["n_localized"] == 4  # frames 3, 6, 9, 12
    assert main(cmd + ["--set", "mapfree.min_inliers=100000"]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n_localized"] == 0 and report["n_queries"] == 4
    assert main(cmd + ["--set", "mapfree.min_inlier=10"]) == 2
    assert "unknown setting 'mapfree.min_inlier'" in _error_line(capsys)
    assert main(cmd + ["--set", "mapfree.min_inlier_ratio=2"]) == 2
    assert "mapfree.min_inlier_ratio must be <= 1.0, got 2.0" in _error_line(capsys)
