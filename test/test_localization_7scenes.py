"""Acceptance on real data: 7-Scenes redkitchen, temporal split (map 0-597, queries 600-999).

7-Scenes depth is not registered to colour and its poses are the depth camera's, so the map is
built with the rig calibration (preset ``7scenes`` in ``rgbd.py``). Queries are
subsampled to stay within the test-time budget; full-split numbers are in the project report.
"""
from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.datasets.calibration import RgbdCalibration
from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.localization.evaluation import localize_frames, summarize
from mast3r_ros.localization.frontends import make_frontend
from mast3r_ros.localization.localizer import Localizer, LocalizerConfig
from mast3r_ros.localization.retrieval import RetrievalConfig
from mast3r_ros.map import KeyframeMap


@pytest.mark.slow
def test_temporal_split_classical_meets_acceptance(data_dir, kitchen_map):
    ds = open_dataset(data_dir / "7scenes_redkitchen")
    cal = RgbdCalibration.load("7scenes")
    with KeyframeMap.open(kitchen_map) as kmap:
        assert len(kmap) == 200
        rgbd = localize_frames(Localizer(kmap, make_frontend("classical")), ds, "600:1000:9",
                               calib=cal, use_depth=True)
        rgb = localize_frames(Localizer(kmap, make_frontend("classical")), ds, "600:1000:18", calib=cal)
    s = summarize(rgbd)
    assert s["n_queries"] == 45
    # RGB-D queries, measured: 45 / 45 localized, median 3.43 cm / 1.54 deg (the ground truth's own
    # drift between the two halves of the sequence dominates; the acceptance was 5 cm / 2 deg)
    assert s["n_localized"] == 45
    assert s["median_translation_m"] <= 0.04
    assert s["median_rotation_deg"] <= 1.8
    te = [r.translation_error_m for r in rgbd if r.localized]
    assert s["median_translation_m"] == pytest.approx(float(np.median(te)))
    # colour-only queries (PnP), measured: 23 / 23 localized, median 4.78 cm / 2.38 deg
    s_rgb = summarize(rgb)
    assert s_rgb["n_queries"] == s_rgb["n_localized"] == 23
    assert s_rgb["median_translation_m"] <= 0.055 and s_rgb["median_rotation_deg"] <= 2.7


@pytest.mark.slow
def test_tracking_on_one_keyframe_keeps_every_fix_and_picks_the_keyframe_by_view(data_dir, kitchen_map):
    """``tracking_k=1`` (the MASt3R front-end's default) on the classical front-end: each query tracked
    is matched against the one keyframe nearest its prior's view, and a query that fails there is
    retried by retrieval at once, so every query the default localizes is still localized. Weighting
    the optical-axis angle (2 m/rad, the default) picks keyframes that answer more queries than the
    camera-centre distance alone."""
    ds = open_dataset(data_dir / "7scenes_redkitchen")
    cal = RgbdCalibration.load("7scenes")
    by_prior = {}
    with KeyframeMap.open(kitchen_map) as kmap:
        for weight in (2.0, 0.0):
            config = LocalizerConfig(retrieval=RetrievalConfig(tracking_k=1, tracking_angle_weight_m=weight))
            rgb = localize_frames(Localizer(kmap, make_frontend("classical"), config), ds, "600:1000:18", calib=cal)
            assert summarize(rgb)["n_localized"] == 23, weight
            assert rgb[0].selection == "retrieval"  # no prior yet
            by_prior[weight] = sum(r.selection == "prior" for r in rgb)
            if weight == 2.0:  # measured 3.88 cm / 2.04 deg (retrieval every query: 4.78 cm / 2.38 deg)
                s = summarize(rgb)
                assert s["median_translation_m"] <= 0.045 and s["median_rotation_deg"] <= 2.3
    # measured: 20 of 23 answered from the keyframe chosen by view, 14 by centre distance alone
    assert by_prior[2.0] >= 19 and by_prior[0.0] <= 16, by_prior
