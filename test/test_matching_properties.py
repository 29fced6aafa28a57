"""Property tests of the matching API on small synthetic maps, against brute-force oracles."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from mast3r_ros.matching import MatchingConfig, build_index, fast_reciprocal_nn, match_symmetric
from mast3r_ros.matching.index import TorchBlockedIndex
from mast3r_ros.matching.symmetric import uniform_thinning

BACKENDS = ["torch", "torch-pruned", "faiss"]


def smooth_field(shape, sigma, rng):
    """Unit-norm smooth random descriptor map, float32 [H, W, D]."""
    f = gaussian_filter(rng.standard_normal(shape), sigma=(sigma, sigma, 0))
    return (f / np.linalg.norm(f, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def pair():
    """map2 (40x56) = map1 (48x64) shifted by (dx, dy) = (5, 3) plus noise: map2(x, y) ~ map1(x+5, y+3)."""
    rng = np.random.default_rng(0)
    m1 = smooth_field((48, 64, 8), 1.5, rng)
    m2 = m1[3:43, 5:61] + 0.05 * rng.standard_normal((40, 56, 8)).astype(np.float32)
    m2 /= np.linalg.norm(m2, axis=-1, keepdims=True)
    return m1, m2.astype(np.float32)


def brute_nn(a, b):
    """Official small-size path: full similarity A @ B.T in float32, first index of the row maximum."""
    A = torch.from_numpy(a.reshape(-1, a.shape[-1]))
    B = torch.from_numpy(b.reshape(-1, b.shape[-1]))
    return (A @ B.T).argmax(dim=1).numpy(), (B @ A.T).argmax(dim=1).numpy()


def oracle_frm(nn12, nn21, starts, W1, max_iter, pixel_tol):
    """Point-by-point FRM written from the paper/official description (independent of our vectorised code)."""
    out = set()
    for s in sorted(set(starts)):
        p1, prev2 = s, -1
        for it in range(max_iter):
            p2 = nn12[p1]
            if pixel_tol == 0 and p2 == prev2:
                out.add((p1, p2))
                break
            q1 = nn21[p2]
            if pixel_tol > 0 and it == max_iter - 1:
                if np.hypot(q1 // W1 - p1 // W1, q1 % W1 - p1 % W1) < pixel_tol:
                    out.add((s, p2))
                break
            if pixel_tol == 0 and q1 == p1:
                out.add((p1, p2))
                break
            p1, prev2 = q1, p2
    return out


def as_set(xy1, xy2, W1, W2):
    return {(int(a), int(b)) for a, b in zip(xy1[:, 1] * W1 + xy1[:, 0], xy2[:, 1] * W2 + xy2[:, 0])}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("subsample", [4, 8])
def test_frm_matches_oracle_and_is_reciprocal(pair, backend, subsample):
    pytest.importorskip("faiss") if backend == "faiss" else None
    m1, m2 = pair
    nn12, nn21 = brute_nn(m1, m2)
    xy1, xy2 = fast_reciprocal_nn(m1, m2, subsample=subsample, config=MatchingConfig(backend=backend))
    W1, W2 = m1.shape[1], m2.shape[1]
    f1, f2 = xy1[:, 1] * W1 + xy1[:, 0], xy2[:, 1] * W2 + xy2[:, 0]
    assert len(f1) > 20
    np.testing.assert_array_equal(nn12[f1], f2)          # every pair is reciprocal (brute force)
    np.testing.assert_array_equal(nn21[f2], f1)
    ys, xs = np.mgrid[subsample // 2:48:subsample, subsample // 2:64:subsample]
    assert as_set(xy1, xy2, W1, W2) == oracle_frm(nn12, nn21, (ys * W1 + xs).ravel(), W1, 10, 0)
    # the shift is recovered (x2 = x1 - 5, y2 = y1 - 3): measured for every backend, every match lies
    # where map1 has a counterpart in map2 and is within 1 px of the shift (188 / 188 at subsample 4,
    # 48 / 48 at 8), exactly on it for 184 / 188 and 48 / 48 (the noise moves 4 by one pixel)
    assert ((xy1 >= [5, 3]) & (xy1 < [61, 43])).all()
    assert (np.abs(xy1 - xy2 - [5, 3]) <= 1).all()
    assert (xy1 - xy2 == [5, 3]).all(axis=1).mean() >= 0.97


@pytest.mark.parametrize("backend", BACKENDS)
def test_explicit_init_pixel_tol_matches_oracle(pair, backend):
    pytest.importorskip("faiss") if backend == "faiss" else None
    m1, m2 = pair
    nn12, nn21 = brute_nn(m1, m2)
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 64, 300), rng.integers(0, 48, 300)
    for tol in (0, 3):
        xy1, xy2 = fast_reciprocal_nn(torch.from_numpy(m1), torch.from_numpy(m2), init_xy=(x, y), pixel_tol=tol,
                                      config=MatchingConfig(backend=backend))
        assert as_set(xy1, xy2, 64, 56) == oracle_frm(nn12, nn21, y * 64 + x, 64, 1, tol)
    # the [N, 2] (x, y) form of init_xy is equivalent
    xy1b, xy2b = fast_reciprocal_nn(m1, m2, init_xy=np.c_[x, y], pixel_tol=3, config=MatchingConfig(backend=backend))
    np.testing.assert_array_equal(xy1b, xy1)
    np.testing.assert_array_equal(xy2b, xy2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nn_backends_exact_and_tie_rule(backend):
    """Exact NN (vs brute force) and the documented tie rule: lowest flat index among equal maxima."""
    pytest.importorskip("faiss") if backend == "faiss" else None
    rng = np.random.default_rng(2)
    db = rng.standard_normal((1000, 24)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    dup = {7: 3, 300: 40, 900: 899, 700: 513}          # db[k] = db[j]: same-block and cross-block ties
    for k, j in dup.items():
        db[k] = db[j]
    q = np.concatenate([db[[3, 40, 899, 513]], rng.standard_normal((200, 24)).astype(np.float32)])
    index = build_index(torch.from_numpy(db), backend=backend, hw=(25, 40))   # hw: a 25x40 "map" for pruned
    idx, score = index.search(torch.from_numpy(q))
    ref = (torch.from_numpy(q) @ torch.from_numpy(db).T).argmax(dim=1).numpy()
    np.testing.assert_array_equal(idx[:4], [3, 40, 899, 513])
    np.testing.assert_array_equal(idx, ref)     # every backend is exact (measured: 204 / 204 equal)
    # the score is the float32 dot product: measured within 6.6e-7 of the float64 one (|q| up to ~7)
    np.testing.assert_allclose(score, (q.astype(np.float64) * db[idx]).sum(1), rtol=0, atol=1e-6)


def test_auto_backend_is_exact_pruned_on_cpu():
    from mast3r_ros.matching.index import resolve_backend
    assert resolve_backend("auto", torch.device("cpu")) == "torch-pruned"
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    with pytest.raises(ValueError, match="hw"):
        build_index(torch.zeros(10, 4), backend="torch-pruned")


def test_pruned_on_unstructured_maps_matches_brute_force():
    """Random (non-smooth) maps give the bounds nothing to prune: the fallback must keep it exact."""
    rng = np.random.default_rng(8)
    db = rng.standard_normal((37, 29, 12)).astype(np.float32)
    q = torch.from_numpy(rng.standard_normal((500, 12)).astype(np.float32))
    smooth = smooth_field((37, 29, 12), 2.0, rng)
    for m in (db, smooth):
        idx, _ = build_index(torch.from_numpy(m.reshape(-1, 12)), "torch-pruned", hw=(37, 29)).search(q)
        ref = (q @ torch.from_numpy(m.reshape(-1, 12)).T).argmax(dim=1).numpy()
        np.testing.assert_array_equal(idx, ref)


def test_torch_blocked_small_blocks_identical():
    """Block size / query chunking never changes the answer (ragged last block, several chunks)."""
    rng = np.random.default_rng(3)
    db = torch.from_numpy(rng.standard_normal((1234, 16)).astype(np.float32))
    q = torch.from_numpy(rng.standard_normal((700, 16)).astype(np.float32))
    a = TorchBlockedIndex(db, block_rows=100, max_queries=64, block_elems=1).search(q)[0]
    b = TorchBlockedIndex(db, block_rows=4096, max_queries=4096).search(q)[0]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, (q @ db.T).argmax(dim=1).numpy())


def test_symmetric_is_union_of_both_directions(pair):
    m1, m2 = pair
    c1 = np.random.default_rng(4).random(m1.shape[:2]).astype(np.float32) + 0.5
    c2 = np.random.default_rng(5).random(m2.shape[:2]).astype(np.float32) + 0.5
    xy1, xy2, conf = match_symmetric(m1, m2, c1, c2, subsample=4)
    a1, a2 = fast_reciprocal_nn(m1, m2, subsample=4)
    b2, b1 = fast_reciprocal_nn(m2, m1, subsample=4)
    assert as_set(xy1, xy2, 64, 56) == as_set(a1, a2, 64, 56) | as_set(b1, b2, 64, 56)
    np.testing.assert_array_equal(conf, np.minimum(c1[xy1[:, 1], xy1[:, 0]], c2[xy2[:, 1], xy2[:, 0]]))


def test_symmetric_filters(pair):
    m1, m2 = pair
    rng = np.random.default_rng(6)
    c1, c2 = rng.random(m1.shape[:2]) + 0.5, rng.random(m2.shape[:2]) + 0.5
    full = match_symmetric(m1, m2, c1, c2, subsample=2)
    rows = {tuple(r) for r in np.c_[full[0], full[1]]}
    xy1, xy2, conf = match_symmetric(m1, m2, c1, c2, subsample=2, config=MatchingConfig(border=4, conf_thr=0.9))
    assert 0 < len(conf) < len(full[2])
    assert (conf >= 0.9).all()
    assert (xy1 >= 4).all() and (xy1[:, 0] < 60).all() and (xy1[:, 1] < 44).all()
    assert (xy2 >= 4).all() and (xy2[:, 0] < 52).all() and (xy2[:, 1] < 36).all()
    assert {tuple(r) for r in np.c_[xy1, xy2]} <= rows
    k = 40
    t1, t2, tc = match_symmetric(m1, m2, c1, c2, subsample=2, config=MatchingConfig(max_matches=k))
    assert len(tc) == k and {tuple(r) for r in np.c_[t1, t2]} <= rows


def test_uniform_thinning_spreads_matches():
    """Thinning keeps k matches spread over the image, unlike top-k by confidence."""
    rng = np.random.default_rng(7)
    xy = np.c_[rng.integers(0, 200, 5000), rng.integers(0, 100, 5000)]
    conf = (xy[:, 0] < 50) * 10 + rng.random(5000)          # left quarter is much more confident
    sel = uniform_thinning(xy, conf, (100, 200), 100)
    assert len(sel) == 100 and len(np.unique(sel)) == 100
    hist = np.histogram(xy[sel, 0], bins=4, range=(0, 200))[0]
    assert hist.min() >= 15                                  # every quarter represented
    top = np.argsort(-conf)[:100]
    assert np.histogram(xy[top, 0], bins=4, range=(0, 200))[0][1:].sum() == 0


def test_bad_inputs(pair):
    m1, m2 = pair
    with pytest.raises(ValueError, match="shape \\[H, W, D\\]"):
        fast_reciprocal_nn(m1[0], m2)
    with pytest.raises(ValueError, match="descriptor dims differ"):
        fast_reciprocal_nn(m1, m2[..., :4])
    with pytest.raises(ValueError, match="empty"):
        fast_reciprocal_nn(m1[:0], m2)
    bad = m1.copy()
    bad[3, 4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fast_reciprocal_nn(bad, m2)
    with pytest.raises(ValueError, match="outside image 1"):
        fast_reciprocal_nn(m1, m2, init_xy=(np.array([64]), np.array([0])))
    with pytest.raises(ValueError, match="integer"):
        fast_reciprocal_nn(m1, m2, init_xy=(np.array([1.5]), np.array([0.0])))
    with pytest.raises(ValueError, match="conf1 must have shape"):
        match_symmetric(m1, m2, np.ones((3, 3)), np.ones(m2.shape[:2]))
    with pytest.raises(ValueError, match="backend"):
        MatchingConfig(backend="annoy")
    with pytest.raises(ValueError, match="fp16"):
        MatchingConfig(fp16=True)
    with pytest.raises(ValueError, match="subsample"):
        fast_reciprocal_nn(m1, m2, subsample=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA behaviour")
def test_cuda_unavailable_is_a_clear_error(pair):
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        fast_reciprocal_nn(*pair, config=MatchingConfig(device="cuda"))


@pytest.mark.parametrize("H,W", [(16, 24), (37, 29), (5, 3)])
def test_tile_permutation_covers_map_in_blocks(H, W):
    """Every pixel is in some tile; each fine tile is a clamped 4x4 block, each coarse tile its 2x2 fine tiles."""
    from mast3r_ros.matching.index.pruned import tile_permutation
    perm = tile_permutation(H, W).numpy()
    assert set(perm.ravel()) == set(range(H * W))
    ty, tx = -(-H // 8), -(-W // 8)
    for c, tile in enumerate(perm):
        y0, x0 = (c // tx) * 8, (c % tx) * 8
        for f, fine in enumerate(tile.reshape(4, 16)):
            fy, fx = y0 + (f // 2) * 4, x0 + (f % 2) * 4
            ys = np.minimum(fy + np.arange(4), H - 1)
            xs = np.minimum(fx + np.arange(4), W - 1)
            np.testing.assert_array_equal(fine, (ys[:, None] * W + xs[None, :]).ravel())
    assert perm.shape == (ty * tx, 64)
