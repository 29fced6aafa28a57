"""`mast3r-ros map build`, `localize` and `evaluate` end to end on a small 7-Scenes slice."""
from __future__ import annotations

import json

import numpy as np

from mast3r_ros.cli import main
from mast3r_ros.geometry.transforms import pose_errors
from mast3r_ros.localization.datasets import open_dataset
from mast3r_ros.localization.map_store import KeyframeMap
from mast3r_ros.localization.tum import read_tum


def test_map_build_then_localize(data_dir, tmp_path, capsys):
    ds_dir = data_dir / "7scenes_redkitchen"
    mp = tmp_path / "map"
    assert main(["map", "build", "--dataset", str(ds_dir), "--frames", "0:90:6", "--frontend",
                 "classical", "--out", str(mp)]) == 0
    with KeyframeMap.open(mp) as kmap:
        assert len(kmap) == 15 and kmap.meta.frontend == "classical"
    out = tmp_path / "poses.tum"
    assert main(["localize", "--map", str(mp), "--dataset", str(ds_dir), "--frames", "3:90:12",
                 "--out", str(out)]) == 0
    assert "localized" in capsys.readouterr().out
    stamps, T = read_tum(out)
    gt = {f.timestamp: f.T_world_cam for f in open_dataset(ds_dir).frames("3:90:12")}
    assert len(stamps) >= 0.9 * len(gt)
    errs = [pose_errors(P, gt[s]) for s, P in zip(stamps, T)]
    assert np.median([e[0] for e in errs]) < 0.05 and np.median([e[1] for e in errs]) < 2.0


def test_cli_errors_are_clean(data_dir, tmp_path, capsys):
    ds_dir = str(data_dir / "7scenes_redkitchen")
    assert main(["map", "build", "--dataset", ds_dir, "--frames", "0:90:6", "--frontend", "mast3r",
                 "--out", str(tmp_path / "m")]) == 2
    assert main(["map", "build", "--dataset", ds_dir, "--frames", "nope", "--out", str(tmp_path / "m")]) == 2
    assert main(["localize", "--map", str(tmp_path / "missing"), "--dataset", ds_dir, "--frames", "0:3",
                 "--out", str(tmp_path / "p.tum")]) == 2
    assert main(["evaluate", "--dataset", ds_dir, "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "needs a checkpoint" in err and "frame spec" in err and "--map-frames" in err


def test_evaluate_writes_report_and_plot(data_dir, tmp_path, capsys):
    ds_dir = str(data_dir / "7scenes_redkitchen")
    report, plot = tmp_path / "report.json", tmp_path / "traj.png"
    assert main(["evaluate", "--dataset", ds_dir, "--map-frames", "0:90:6", "--query-frames", "3:90:12",
                 "--frontend", "classical", "--out", str(report), "--plot", str(plot)]) == 0
    doc = json.loads(report.read_text())
    for key in ("n_queries", "n_localized", "median_translation_m", "median_rotation_deg",
                "recall_5cm_5deg", "recall_25cm_2deg", "median_latency_s", "queries"):
        assert key in doc
    assert doc["n_queries"] == len(doc["queries"]) == 8
    errs = [q["translation_error_m"] for q in doc["queries"] if q["localized"]]
    assert doc["median_translation_m"] == np.median(errs)
    assert 0.0 <= doc["recall_5cm_5deg"] <= doc["n_localized"] / doc["n_queries"]
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    assert "| recall 5 cm / 5 deg" in capsys.readouterr().out
