"""Keyframe arrays (MASt3R encoder tokens, points) are read from the map on demand and kept within a byte
budget (``LocalizerConfig.keyframe_cache_mb``): localization results do not depend on the budget, the
resident keyframes never exceed it, and a token file damaged or removed while the map is in use is a
one-line error naming the file."""
from __future__ import annotations

import gc
import math
import shutil
import weakref

import numpy as np
import pytest

from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.localization.frontends.mast3r import Mast3rFrontEnd, Mast3rFrontEndConfig
from mast3r_ros.localization.keyframe_cache import KeyframeCache, keyframe_nbytes
from mast3r_ros.localization.localizer import Localizer, LocalizerConfig
from mast3r_ros.localization.retrieval import RetrievalConfig
from mast3r_ros.map import Keyframe, KeyframeMap
from mast3r_ros.map.build import build_map
from mast3r_ros.map.keys import RETRIEVAL_DESC, RETRIEVAL_IDS
from mast3r_ros.model.oracle import OracleModel

MAP = "0:60:12"  # 5 keyframes (encoder tokens + depth points), ids 1-5 = frames 0, 12, ..., 48
QUERIES = (54, 6, 30, 57)  # retrieve (top 2) keyframes [5, 4], [2, 1], [3, 4], [5, 4]: 5 and 4 come back
SIZE = 128  # network long side: real poses from the oracle stand-in at a fraction of the 512 px matching time


def _kf(kf_id: int, nbytes: int) -> Keyframe:
    return Keyframe(kf_id, kf_id, 0.0, None, np.eye(3), np.eye(4), None, {"a": np.zeros(nbytes, np.uint8)})


def test_cache_keeps_at_most_its_budget_least_recently_used_first():
    reads = []
    cache = KeyframeCache(lambda i: reads.append(i) or _kf(i, 100), budget_bytes=250)  # room for 2
    for i in [1, 2, 1, 3, 1, 2, 4, 4]:
        kf = cache.get(i)
        assert kf.id == i and len(cache) <= 2 and cache.resident_bytes <= 250
    # 1 stays (used again before 3 came), 2 is dropped for 3 and read again, 4 read once
    assert reads == [1, 2, 3, 2, 4] and cache.loads == 5
    assert cache.resident_ids() == [2, 4]
    big = KeyframeCache(lambda i: _kf(i, 300), budget_bytes=250)
    assert big.get(7).id == 7 and len(big) == 0 and big.resident_bytes == 0  # larger than the budget: not kept
    assert keyframe_nbytes(_kf(1, 100)) == 100


@pytest.mark.parametrize("budget", [-1.0, math.nan])
def test_a_negative_or_nan_budget_is_refused(budget):
    with pytest.raises(ValueError, match="budget must be >= 0"):
        KeyframeCache(lambda i: _kf(i, 1), budget)


@pytest.fixture(scope="module")
def kitchen(data_dir):
    return open_dataset(data_dir / "7scenes_redkitchen")


@pytest.fixture(scope="module")
def mapped(kitchen, tmp_path_factory):
    frames = sorted({f.index for f in kitchen.frames(MAP)} | set(QUERIES))
    frontend = Mast3rFrontEnd(Mast3rFrontEndConfig(image_size=SIZE),
                              model=OracleModel.from_dataset(kitchen, frames=frames, image_size=SIZE))
    path = build_map(kitchen, MAP, frontend, tmp_path_factory.mktemp("cache") / "map")
    return path, frontend


def _queries(kitchen) -> list:
    return [kitchen.frames(f"{i}:{i + 1}")[0] for i in QUERIES]


def _run(kitchen, path, frontend, budget_mb: float):
    """Localize the queries, each by retrieval of the top 2 -> (results, resident (count, bytes) per query, reads)."""
    config = LocalizerConfig(retrieval=RetrievalConfig(top_k=2), keyframe_cache_mb=budget_mb)
    results, resident = [], []
    with KeyframeMap.open(path) as kmap:
        loc = Localizer(kmap, frontend, config)
        for frame in _queries(kitchen):
            results.append(loc.localize(kitchen.load_rgb(frame), kitchen.K, stamp=frame.timestamp))
            loc.request_retrieval()  # every query by retrieval: keyframes change from query to query
            resident.append((len(loc.keyframe_cache), loc.keyframe_cache.resident_bytes))
        return results, resident, loc.keyframe_cache.loads


def test_results_are_the_same_with_a_one_keyframe_budget_as_unbounded(kitchen, mapped):
    path, frontend = mapped
    with KeyframeMap.open(path) as kmap:
        kf = kmap.get_keyframe(1, load_image=False, arrays=list(frontend.array_names), load_depth=False)
    tokens, X = kf.arrays["mast3r_tokens"], kf.arrays["mast3r_X"]
    assert tokens.shape[0] == 6 * 8 and X.shape == (96, 128, 3)  # 128x96 network image: 6x8 patches
    one = keyframe_nbytes(kf)
    assert one >= tokens.nbytes + X.nbytes
    budget_mb = 1.5 * one / 2**20  # room for one keyframe, not two
    full, resident_full, loads_full = _run(kitchen, path, frontend, math.inf)
    small, resident_small, loads_small = _run(kitchen, path, frontend, budget_mb)
    touched = {k for r in full for k in r.kf_ids}
    assert touched == {1, 2, 3, 4, 5} and loads_full == len(touched)  # unbounded: each keyframe read once
    assert max(n for n, _ in resident_full) == len(touched)
    assert all(n <= 1 and b <= budget_mb * 2**20 for n, b in resident_small), resident_small
    assert loads_small > loads_full  # dropped keyframes were read again
    for a, b in zip(full, small):
        assert a.kf_ids == b.kf_ids and a.n_matches == b.n_matches and a.n_inliers == b.n_inliers
        assert a.error == b.error and a.state == b.state and a.ok and b.ok, (a.error, b.error)
        assert np.array_equal(a.T_map_cam, b.T_map_cam) and np.array_equal(a.covariance, b.covariance)


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_token_file_damaged_while_in_use_is_a_one_line_error_naming_it(kitchen, mapped, tmp_path, damage):
    src, frontend = mapped
    path = tmp_path / "map"
    shutil.copytree(src, path)  # the module's map stays intact for the other tests
    frame = _queries(kitchen)[0]
    config = LocalizerConfig(retrieval=RetrievalConfig(top_k=2, tracking_k=1), keyframe_cache_mb=0.0)
    with KeyframeMap.open(path) as kmap:
        loc = Localizer(kmap, frontend, config)
        poses = kmap.poses()
        loc.state.update(poses[4])  # tracking near keyframe 4: it is the one matched
        assert loc.localize(kitchen.load_rgb(frame), kitchen.K).kf_ids == [4]
        (token_file,) = (path / "keyframes" / "000004").glob("mast3r_tokens*.npy")
        if damage == "corrupt":
            data = bytearray(token_file.read_bytes())
            data[-1] ^= 0xFF
            token_file.write_bytes(bytes(data))
        else:
            token_file.unlink()
        loc.state.update(poses[4])
        r = loc.localize(kitchen.load_rgb(frame), kitchen.K)
        assert not r.ok and str(token_file) in r.error and "\n" not in r.error, r.error
        assert ("corrupt" if damage == "corrupt" else "missing") in r.error
        # the other keyframes still localize: nothing else was lost
        loc.state.update(poses[5])
        r = loc.localize(kitchen.load_rgb(frame), kitchen.K)
        assert r.kf_ids == [5] and r.ok, r.error


class _CountingFrontEnd(Mast3rFrontEnd):
    """Counts the keyframe token arrays still alive when the build fits the map-wide arrays."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.tokens: list[weakref.ref] = []
        self.alive_at_fit: int | None = None

    def prepare_keyframe(self, image, K, depth):
        arrays = super().prepare_keyframe(image, K, depth)
        self.tokens.append(weakref.ref(arrays["mast3r_tokens"]))
        return arrays

    def fit_global(self, keyframe_arrays):
        gc.collect()
        self.alive_at_fit = sum(r() is not None for r in self.tokens)
        return super().fit_global(keyframe_arrays)


def test_map_build_does_not_hold_every_keyframes_tokens(kitchen, mapped, tmp_path):
    _, frontend = mapped
    counting = _CountingFrontEnd(frontend.config, frontend.model)
    build_map(kitchen, MAP, counting, tmp_path / "map")
    # 5 keyframes encoded; only the last one's arrays are still referenced (the build loop's variable);
    # before, the build kept all 5 keyframes' arrays until the retrieval index was written
    assert len(counting.tokens) == 5 and counting.alive_at_fit <= 1
    with KeyframeMap.open(tmp_path / "map") as kmap:  # the index is the same as from the full arrays
        with KeyframeMap.open(mapped[0]) as ref:
            for name in (RETRIEVAL_IDS, RETRIEVAL_DESC):
                assert np.array_equal(kmap.get_global(name), ref.get_global(name))
