"""The MASt3R front-end's ``coarse_to_fine`` option on real 7-Scenes images (640x480, larger than the
512x384 network image) with the oracle stand-in at its default noise: a query matched at full
resolution from crops localizes at least as well as with plain downscaling, from several times more
matches, in the same run. (The stand-in's errors, not the released weights'; benchmark:
``benchmarks/bench_coarse_to_fine.py``.) FRM start points every 16 network pixels keep it short."""
from __future__ import annotations

import pytest

from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.localization.evaluation import localize_frames
from mast3r_ros.localization.frontends.base import FrontEndError
from mast3r_ros.localization.frontends.mast3r import Mast3rFrontEnd, Mast3rFrontEndConfig
from mast3r_ros.localization.localizer import Localizer, LocalizerConfig
from mast3r_ros.localization.retrieval import RetrievalConfig
from mast3r_ros.map import KeyframeMap
from mast3r_ros.map.build import build_map
from mast3r_ros.model.oracle import OracleModel

KEYFRAME, QUERY = "570:571", "600:601"   # one keyframe with depth, an RGB query 1.5 s later


@pytest.fixture(scope="module")
def kitchen(data_dir):
    return open_dataset(data_dir / "7scenes_redkitchen")


def _localize(kitchen, model, path, coarse_to_fine):
    fe = Mast3rFrontEnd(Mast3rFrontEndConfig(subsample=16, coarse_to_fine=coarse_to_fine), model=model)
    with KeyframeMap.open(path) as kmap:
        loc = Localizer(kmap, fe, LocalizerConfig(retrieval=RetrievalConfig(top_k=1)))
        (r,) = localize_frames(loc, kitchen, QUERY)
    return r


def test_coarse_to_fine_localizes_rgb_queries_at_least_as_well(kitchen, tmp_path):
    model = OracleModel.from_dataset(kitchen, frames=[570, 600])
    build_map(kitchen, KEYFRAME, Mast3rFrontEnd(Mast3rFrontEndConfig(), model=model), tmp_path / "m",
              store_depth=True)
    plain = _localize(kitchen, model, tmp_path / "m", False)
    fine = _localize(kitchen, model, tmp_path / "m", True)
    assert plain.localized and fine.localized, (plain.error, fine.error)
    # measured: downscaled 432 matches / 335 inliers, 0.051 cm / 0.017 deg; coarse-to-fine 2771 / 2300,
    # 0.057 cm / 0.021 deg (both at the stand-in's noise floor; the ratio is the full-resolution gain)
    assert fine.n_matches > 5 * plain.n_matches and fine.n_inliers > 5 * plain.n_inliers
    assert fine.translation_error_m <= plain.translation_error_m + 0.001
    assert fine.rotation_error_deg <= plain.rotation_error_deg + 0.01
    assert fine.translation_error_m < 0.002 and fine.rotation_error_deg < 0.05


def test_coarse_to_fine_needs_the_512_crop_table():
    with pytest.raises(FrontEndError, match="coarse_to_fine needs image_size 512"):
        Mast3rFrontEnd(Mast3rFrontEndConfig(image_size=448, coarse_to_fine=True), model=object())
