"""`mast3r-ros map build`, `localize` and `evaluate` end to end on a small 7-Scenes slice."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from mast3r_ros.cli import main
from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.datasets.tum import read_tum
from mast3r_ros.geometry.transforms import pose_errors
from mast3r_ros.map import KeyframeMap


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
    assert len(stamps) == len(gt) == 8
    errs = np.array([pose_errors(P, gt[s]) for s, P in zip(stamps, T)])
    # measured: median 0.47 cm / 0.17 deg, worst 1.7 cm / 0.30 deg
    assert np.median(errs[:, 0]) < 0.006 and np.median(errs[:, 1]) < 0.25
    assert errs[:, 0].max() < 0.025 and errs[:, 1].max() < 0.4


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
    # same split as test_map_build_then_localize: measured 8 / 8 localized, median 0.47 cm / 0.17 deg
    assert doc["n_localized"] == 8 and doc["recall_5cm_5deg"] == 1.0
    assert doc["median_translation_m"] < 0.006 and doc["median_rotation_deg"] < 0.25
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    assert "| recall 5 cm / 5 deg" in capsys.readouterr().out


def readme_main_command() -> list[str]:
    """The main job's command line as README.md shows it (the part after the venv setup)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = [ln for ln in readme.splitlines() if "mast3r-ros evaluate --out" in ln and ln.startswith("bash ")]
    assert len(lines) == 1, "README.md must show the main job exactly once"
    argv = shlex.split(lines[0].split("&&", 1)[1])
    assert argv[0] == ".venv/bin/mast3r-ros"
    return argv[1:]


@pytest.mark.slow
def test_readme_main_command_localizes_the_synthetic_room(tmp_path, capsys):
    """README's main job, run as written (cwd = a fresh folder): report, plot and accuracy on exact data."""
    args = readme_main_command()
    assert args == ["evaluate", "--out", "out/report.json", "--plot", "out/trajectory.png"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        assert main(args) == 0
    assert "| queries localized          | 40 / 40 (100.0 %) |" in capsys.readouterr().out
    doc = json.loads((tmp_path / "out/report.json").read_text())
    assert (doc["map_frames"], doc["query_frames"], doc["frontend"]) == ("0:60:1", "100:140:1", "classical")
    assert doc["n_queries"] == doc["n_localized"] == 40
    # measured: median 0.42 mm / 0.0064 deg, worst 0.92 mm / 0.014 deg (exact depth, poses and K)
    assert doc["median_translation_m"] < 0.0006 and doc["median_rotation_deg"] < 0.01
    worst_t = max(q["translation_error_m"] for q in doc["queries"])
    worst_r = max(q["rotation_error_deg"] for q in doc["queries"])
    assert worst_t < 0.0015 and worst_r < 0.025
    png = (tmp_path / "out/trajectory.png").read_bytes()
    assert len(png) > 10_000 and png[:4] == b"\x89PNG"
