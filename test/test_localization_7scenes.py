"""Acceptance on real data: 7-Scenes redkitchen, temporal split (map 0-597, queries 600-999).

Queries are subsampled (every 3rd kept query frame) to stay within the test-time budget; the
full-split numbers come from `mast3r-ros evaluate` (see the project report).
"""
from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.localization.datasets import open_dataset
from mast3r_ros.localization.evaluation import evaluate
from mast3r_ros.localization.frontend import make_frontend


@pytest.mark.slow
def test_temporal_split_classical_meets_acceptance(data_dir):
    ds = open_dataset(data_dir / "7scenes_redkitchen")
    report = evaluate(ds, "0:598", "600:1000:9", make_frontend("classical"))
    assert report["n_keyframes"] == 200 and report["n_queries"] == 45
    assert report["fraction_localized"] >= 0.95
    assert report["median_translation_m"] <= 0.05
    assert report["median_rotation_deg"] <= 2.0
    # the reported medians are the medians of the per-query errors
    te = [q["translation_error_m"] for q in report["queries"] if q["localized"]]
    assert report["median_translation_m"] == pytest.approx(float(np.median(te)))
