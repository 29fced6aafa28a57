"""Mapping building blocks against independent oracles: kinematic trees, pose composition,
canonical fusion, focal estimation on real 7-Scenes depth, pair selection, schedules, PLY and
the map store's additive pose + intrinsics update."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.geometry.camera import depth_to_pointmap
from mast3r_ros.map import Keyframe, KeyframeMap, MapError, MapMeta
from mast3r_ros.mapping.canonical import estimate_focal, fuse_view
from mast3r_ros.mapping.kinematic import (
    TREE_MODES,
    chain_poses,
    compose_tree,
    root_tree,
    spanning_tree,
)
from mast3r_ros.mapping.outputs import read_ply, write_ply
from mast3r_ros.mapping.pairs import PairSelectionConfig, select_pairs
from mast3r_ros.mapping.sparse_ga import learning_rate
from mast3r_ros.mapping.types import MappingError


def _random_T(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=seed).as_matrix()
    T[:3, 3] = rng.normal(size=3)
    return T


@pytest.mark.parametrize("mode", TREE_MODES)
def test_spanning_tree_keeps_strong_edges_and_composes_like_sequential_chain(mode):
    n = 40
    # strong sequential edges, weak long-range ones: the maximum-score tree is the sequence
    scores = {(i, i + 1): 10.0 + i % 3 for i in range(n - 1)}
    scores.update({(i, i + 7): 1.0 for i in range(n - 7)})
    edges = spanning_tree(n, scores, mode)
    assert len(edges) == n - 1
    if mode == "mst":
        assert sorted(tuple(sorted(e)) for e in edges) == [(i, i + 1) for i in range(n - 1)]
    parent, order, root = root_tree(n, edges)
    assert parent[root] == root and len(set(order)) == n
    rel = {v: _random_T(v) for v in range(n) if parent[v] != v}
    T_seq = chain_poses(parent, order, rel)           # level-by-level oracle
    local = np.stack([rel.get(v, np.eye(4)) for v in range(n)])
    T_dbl = compose_tree(torch.tensor(parent), torch.tensor(local)).numpy()  # pointer doubling
    np.testing.assert_allclose(T_dbl, T_seq, atol=1e-9)
    if mode == "mst":  # the centre of a 40-long path has height 20, not 39
        assert np.max([_depth(parent, v) for v in range(n)]) <= n // 2


def _depth(parent, v):
    d = 0
    while parent[v] != v:
        v, d = parent[v], d + 1
    return d


def test_spanning_tree_reports_disconnected_graph():
    with pytest.raises(MappingError, match="not connected"):
        spanning_tree(5, {(0, 1): 1.0, (1, 2): 1.0, (3, 4): 1.0})


def test_canonical_fusion_avg_angle_is_scale_invariant_and_offsets_are_depth_ratios(data_dir):
    ds = open_dataset(data_dir / "7scenes_redkitchen")
    f = ds.frames("0:1")[0]
    depth = ds.load_depth(f)[::4, ::4]
    K = ds.K.copy()
    K[:2] /= 4
    X = depth_to_pointmap(K, depth).astype(np.float32)
    X[depth <= 0] = np.nan
    conf = np.where(depth > 0, 5.0, 0.0).astype(np.float32)
    single = fuse_view([X], [conf], 8, "avg-angle")
    # single prediction: offsets are exactly depth / anchor depth, and depth is reproduced
    ok = depth > 0
    np.testing.assert_allclose(single.depth[ok], depth[ok], rtol=1e-5)
    # two predictions that differ by a global scale: the avg-angle local shape (offsets) is the
    # same as from one prediction (angles of a scaled copy are unchanged)
    both = fuse_view([X, 1.3 * X], [conf, conf], 8, "avg-angle")
    good = ok & (single.offsets > 0) & (both.offsets > 0)
    np.testing.assert_allclose(both.offsets[good], single.offsets[good], rtol=2e-3)
    np.testing.assert_allclose(both.anchor_depth[single.anchor_depth > 0],
                               1.15 * single.anchor_depth[single.anchor_depth > 0], rtol=1e-4)


def test_focal_estimate_from_real_depth_pointmap(data_dir):
    ds = open_dataset(data_dir / "7scenes_redkitchen")
    depth = ds.load_depth(ds.frames("30:31")[0])
    X = depth_to_pointmap(ds.K, depth)
    X[depth <= 0] = np.nan
    rng = np.random.default_rng(0)
    X_noisy = X + rng.normal(0, 0.005, X.shape) * depth[..., None]
    assert estimate_focal(X, pp=(320.0, 240.0)) == pytest.approx(585.0, rel=1e-6)
    assert estimate_focal(X_noisy, pp=(320.0, 240.0)) == pytest.approx(585.0, rel=5e-3)
    # default principal point = image centre (319.5, 239.5): half a pixel off, still < 0.1 %
    assert estimate_focal(X) == pytest.approx(585.0, rel=1e-3)


def test_pair_selection_complete_sequential_and_retrieval():
    assert select_pairs(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    cfg = PairSelectionConfig(complete_below=0, sequential_window=2, retrieval_k=1)
    n = 20
    desc = np.eye(n)
    desc[15] = desc[2]  # view 15 revisits view 2
    pairs = select_pairs(n, cfg, desc / np.linalg.norm(desc, axis=1, keepdims=True))
    assert (2, 15) in pairs
    assert all((i, i + 1) in pairs and (i, i + 2) in pairs for i in range(n - 2))
    assert all(i < j for i, j in pairs) and len(set(pairs)) == len(pairs)


def test_learning_rate_schedules():
    for sched in ("cosine", "linear"):
        lrs = [learning_rate(i, 300, 0.07, sched, 0.01) for i in range(300)]
        assert lrs[0] == pytest.approx(0.07) and lrs[-1] == pytest.approx(7e-4)
        assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert learning_rate(150, 301, 0.07, "linear", 0.0) == pytest.approx(0.035)
    with pytest.raises(MappingError):
        learning_rate(0, 10, 0.1, "step", 0.0)


def test_ply_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(100, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (100, 3), dtype=np.uint8)
    p = write_ply(tmp_path / "c.ply", xyz, rgb)
    assert p.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    x2, c2 = read_ply(p)
    np.testing.assert_array_equal(x2, xyz)
    np.testing.assert_array_equal(c2, rgb)


def test_map_store_updates_poses_and_intrinsics_atomically(tmp_path):
    img = np.zeros((8, 10, 3), np.uint8)
    K = np.array([[50.0, 0, 4.5], [0, 50.0, 3.5], [0, 0, 1]])
    with KeyframeMap.create(tmp_path / "m", MapMeta("classical", None, (10, 8))) as kmap:
        a, b = kmap.add_keyframes([Keyframe(None, 0, 0.0, img, K, np.eye(4)),
                                   Keyframe(None, 1, 1.0, img, K, np.eye(4))])
        K2 = K.copy()
        K2[0, 0] = 51.0
        kmap.update_poses({a: _random_T(3)}, intrinsics={b: K2})
        np.testing.assert_allclose(kmap.get_keyframe(b, load_image=False).K, K2)
        np.testing.assert_allclose(kmap.poses()[a], _random_T(3))
        with pytest.raises(MapError):  # unknown id: nothing of the batch is written
            kmap.update_poses({a: np.eye(4)}, intrinsics={99: K})
        np.testing.assert_allclose(kmap.poses()[a], _random_T(3))
