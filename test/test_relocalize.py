"""`mast3r-ros relocalize` (map-free, one posed reference) on real 7-Scenes frames: the dataset form's
report, the file form's TUM poses, the MASt3R front-end on the oracle model and the classical one,
and the one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mast3r_ros.cli import main as cli_main
from mast3r_ros.datasets.tum import read_tum

REF, QUERIES = 0, "9:13:3"  # frames 9 and 12 (~1 cm from frame 0, rotated); wide baselines: README


@pytest.fixture(scope="module")
def kitchen_dir(data_dir):
    return data_dir / "7scenes_redkitchen"


def _check_report(report, n):
    assert report["n_queries"] == n and report["n_localized"] == n
    for q in report["queries"]:
        assert q["localized"] and q["method"] in ("pnp", "essential", "procrustes")
        assert set(q) >= {"translation_error_m", "rotation_error_deg", "localized", "method", "baseline_m"}
    assert report["median_translation_m"] is not None and report["by_baseline"][0]["n_queries"] == n


def test_dataset_form_with_the_oracle_model(kitchen_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = cli_main(["relocalize", "--dataset", str(kitchen_dir), "--reference-frame", str(REF),
                   "--query-frames", QUERIES, "--oracle-model", "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    _check_report(report, 2)
    assert report["model"] == "oracle" and "model: oracle" in capsys.readouterr().out
    for q in report["queries"]:
        # measured 0.15 / 0.18 cm, 0.051 / 0.047 deg (PnP)
        assert q["translation_error_m"] < 0.005 and q["rotation_error_deg"] < 0.15, q


def test_views_that_barely_overlap_are_refused_not_answered(kitchen_dir, tmp_path):
    """Reference 0, queries 411 and 459 (1.2 / 1.1 m away). 411 sees almost nothing of the reference:
    before the inlier-ratio gate PnP answered it with 12 inliers of 1056 matches, 4.7 m / 140 deg off;
    459 shares its view (115 of 1298 PnP inliers, 8.9 %) and is answered at 8.4 cm / 0.57 deg."""
    out = tmp_path / "r.json"
    assert cli_main(["relocalize", "--dataset", str(kitchen_dir), "--reference-frame", "0",
                     "--query-frames", "411:460:48", "--oracle-model", "--out", str(out)]) == 0
    far, near = json.loads(out.read_text())["queries"]
    assert (far["index"], near["index"]) == (411, 459)
    assert not far["localized"] and "barely overlap" in far["message"], far
    assert near["localized"] and near["method"] == "pnp", near
    assert near["translation_error_m"] < 0.09 and near["rotation_error_deg"] < 0.6, near  # 8.4 cm, 0.57 deg

def test_dataset_form_classical_needs_no_model(kitchen_dir, tmp_path):
    out = tmp_path / "r.json"
    assert cli_main(["relocalize", "--dataset", str(kitchen_dir), "--reference-frame", str(REF),
                     "--query-frames", QUERIES, "--frontend", "classical", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    _check_report(report, 2)
    assert report["model"] == "none (classical)"
    assert report["median_translation_m"] < 0.01  # measured 0.39 cm (PnP on SIFT + sensor depth)


def test_file_form_writes_tum_poses(kitchen_dir, tmp_path, capsys):
    data = kitchen_dir / "data"
    pose = tmp_path / "T.txt"
    pose.write_text((data / "frame-000000.pose.txt").read_text())
    out = tmp_path / "poses.tum"
    rc = cli_main(["relocalize", "--reference", str(data / "frame-000000.color.jpg"), "--reference-pose", str(pose),
                   "--intrinsics", str(data / "camera-intrinsics.txt"), "--dataset", str(kitchen_dir),
                   "--oracle-model", str(data / "frame-000012.color.jpg"), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    stamps, T = read_tum(out)
    assert list(stamps) == [0.0]
    T_gt = np.loadtxt(data / "frame-000012.pose.txt")
    assert np.linalg.norm(T[0][:3, 3] - T_gt[:3, 3]) < 0.005  # the dataset form's frame 12: 0.18 cm


@pytest.mark.parametrize("args, message", [
    (["--reference-frame", "0", "--query-frames", "3:4"], "needs --checkpoint PATH or --oracle-model"),
    (["--reference-frame", "1", "--query-frames", "3:4", "--oracle-model"], "not a posed frame"),
    (["--reference-frame", "0", "--query-frames", "3:4", "--frontend", "classical", "--oracle-model"],
     "for --frontend mast3r"),
    (["--reference-frame", "0"], "needs --reference-frame I and --query-frames SPEC"),
])
def test_bad_options_are_one_line_errors(kitchen_dir, tmp_path, capsys, args, message):
    out = tmp_path / "r.json"
    assert cli_main(["relocalize", "--dataset", str(kitchen_dir), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_file_form_oracle_needs_its_dataset(kitchen_dir, tmp_path, capsys):
    data = kitchen_dir / "data"
    rc = cli_main(["relocalize", "--reference", str(data / "frame-000000.color.jpg"),
                   "--reference-pose", str(data / "frame-000000.pose.txt"),
                   "--intrinsics", str(data / "camera-intrinsics.txt"), "--oracle-model",
                   str(data / "frame-000012.color.jpg"), "--out", str(tmp_path / "p.tum")])
    assert rc == 2 and "needs --dataset" in capsys.readouterr().err
