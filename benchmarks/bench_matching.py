"""Benchmark: FRM and symmetric extraction on the fixture's 384x512x24 maps, per NN backend.

Prints a markdown table whose baseline is run in the same process: the reciprocal search as the official
code runs it on CPU without a ``dist`` argument (scipy KD-tree over each image's descriptors, Euclidean,
the active points re-queried every iteration; fixture cases b / d are its outputs), then our backends.
Times are best and spread over --repeat runs (baseline and ours interleaved per repetition); also the
number of exact NN searches, the time those searches' FLOPs alone would take at the matmul throughput
measured in the same run, and whether the matches are identical to the official outputs.

Usage: python benchmarks/bench_matching.py [--repeat 3] [--backends torch-pruned torch faiss] [--fixtures DIR]
('auto' = 'torch-pruned' on CPU.) The FLOP-only bound is that of brute force; the pruned backend does
far fewer FLOPs, so it can beat it.
"""
from __future__ import annotations

# first, so that its OMP_WAIT_POLICY default (mast3r_ros/__init__.py) is in place before torch loads
# libgomp, as in the `mast3r-ros` command and the nodes
import mast3r_ros  # noqa: F401

# isort: split

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import KDTree

from mast3r_ros.matching import MatchingConfig, build_index, fast_reciprocal_nn, match_symmetric
from mast3r_ros.matching.frm import frm_flat, grid_points, merge_pairs, to_xy
from mast3r_ros.matching.index import CachedNN
from mast3r_ros.model.precision import cpu_flags
from mast3r_ros.paths import shared_dir


def kdtree_frm_flat(f1: np.ndarray, f2: np.ndarray, start: np.ndarray, W1: int, max_iter: int = 10,
                    pixel_tol: float = 0, trees: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Baseline FRM iteration with scipy KD-trees (no memoisation, no pruning): flat indices kept.

    f1 [N1, D], f2 [N2, D] float32 descriptors; start: unique int64 flat start indices in image 1.
    Same stopping rules as ``mast3r_ros.matching.frm`` (module docstring); Euclidean NN.
    """
    tree1, tree2 = trees or (KDTree(f1), KDTree(f2))
    workers = torch.get_num_threads()
    xy1, xy2 = start.copy(), np.full_like(start, -1)
    prev1, prev2 = xy1.copy(), xy2.copy()
    active = np.ones(len(xy1), dtype=bool)
    for it in range(max_iter):
        a = np.flatnonzero(active)
        xy2[a] = tree2.query(f1[xy1[a]], workers=workers)[1]
        active[a] &= xy2[a] != prev2[a]
        a = np.flatnonzero(active)
        xy1[a] = tree1.query(f2[xy2[a]], workers=workers)[1]
        active[a] &= xy1[a] != prev1[a]
        if it + 1 == max_iter or not active.any():
            break
        prev1[:], prev2[:] = xy1, xy2
    if pixel_tol > 0:
        d = np.hypot(prev1 // W1 - xy1 // W1, prev1 % W1 - xy1 % W1)
        return prev1[d < pixel_tol], xy2[d < pixel_tol]
    return xy1[~active], xy2[~active]


def kdtree_frm(desc1: np.ndarray, desc2: np.ndarray, subsample: int = 8, init_flat: np.ndarray | None = None,
               pixel_tol: float = 0) -> tuple[np.ndarray, np.ndarray]:
    """Baseline reciprocal matches of two [H, W, D] maps: (xy1, xy2) int64 [N, 2] (x, y), KD-trees built here.
    ``init_flat`` / ``pixel_tol`` > 0: explicit start points, one round trip (the localization mode)."""
    (H1, W1, D), (_, W2, _) = desc1.shape, desc2.shape
    f1 = np.ascontiguousarray(desc1.reshape(-1, D), np.float32)
    f2 = np.ascontiguousarray(desc2.reshape(-1, D), np.float32)
    explicit = init_flat is not None or pixel_tol > 0
    start = init_flat if init_flat is not None else grid_points(H1, W1, subsample)
    k1, k2 = kdtree_frm_flat(f1, f2, start, W1, 1 if explicit else 10, pixel_tol)
    k1, k2, _ = merge_pairs(k1, k2)
    return to_xy(k1, W1), to_xy(k2, W2)


class BlockedDotSearch:
    """Exact NN by the largest dot product, brute force over blocks of ``block`` x ``block`` descriptor pairs:
    what the official localization script (visloc.py) asks its reciprocal search for on any device
    (``dist='dot', block_size=2**13``; the KD-tree is used only when neither is given on CPU). As there,
    every block is reduced along both axes (the database-to-query maxima are computed, then unused).
    ``query`` has the KD-tree's signature so :func:`kdtree_frm_flat` can run on it."""

    def __init__(self, db: np.ndarray, block: int = 2 ** 13):
        self.db, self.block = torch.from_numpy(np.ascontiguousarray(db, np.float32)), block

    def query(self, q: np.ndarray, workers: int | None = None) -> tuple[None, np.ndarray]:
        q = torch.from_numpy(np.ascontiguousarray(q, np.float32))
        best = torch.full((len(q),), -torch.inf)
        nn = torch.full((len(q),), -1, dtype=torch.int64)
        best_db = torch.full((len(self.db),), -torch.inf)
        b = self.block
        for i in range(0, len(q), b):
            for j in range(0, len(self.db), b):
                s = q[i:i + b] @ self.db[j:j + b].T
                v, a = s.max(dim=1)
                better = v > best[i:i + b]
                best[i:i + b][better], nn[i:i + b][better] = v[better], a[better] + j
                v_db, _ = s.max(dim=0)
                best_db[j:j + b] = torch.maximum(best_db[j:j + b], v_db)
        return None, nn.numpy()


def dot_frm(desc1: np.ndarray, desc2: np.ndarray, init_flat: np.ndarray, pixel_tol: float) -> tuple:
    """:func:`kdtree_frm` (explicit start points, one round trip) on :class:`BlockedDotSearch` instead of
    KD-trees: the reciprocal search of the official localization script on CPU."""
    (_, W1, D), (_, W2, _) = desc1.shape, desc2.shape
    f1, f2 = desc1.reshape(-1, D), desc2.reshape(-1, D)
    k1, k2 = kdtree_frm_flat(f1, f2, init_flat, W1, 1, pixel_tol, (BlockedDotSearch(f1), BlockedDotSearch(f2)))
    k1, k2, _ = merge_pairs(k1, k2)
    return to_xy(k1, W1), to_xy(k2, W2)


def kdtree_symmetric(desc1: np.ndarray, desc2: np.ndarray, subsample: int = 8):
    """Baseline both-direction matches (grid starts in each image, one pair of trees): xy1, xy2 [N, 2]."""
    (H1, W1, D), (H2, W2, _) = desc1.shape, desc2.shape
    f1, f2 = desc1.reshape(-1, D), desc2.reshape(-1, D)
    trees = (KDTree(f1), KDTree(f2))
    a1, a2 = kdtree_frm_flat(f1, f2, grid_points(H1, W1, subsample), W1, trees=trees)
    b2, b1 = kdtree_frm_flat(f2, f1, grid_points(H2, W2, subsample), W2, trees=trees[::-1])
    k1, k2, _ = merge_pairs(np.r_[a1, b1], np.r_[a2, b2])
    return to_xy(k1, W1), to_xy(k2, W2)


def cpu_line() -> str:
    flags = cpu_flags()
    return (f"CPU features: AMX {'yes' if 'amx_bf16' in flags else 'no'}, avx512_bf16 "
            f"{'yes' if 'avx512_bf16' in flags else 'no'}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def matmul_gflops(n: int, m: int, d: int, seconds: float = 1.0) -> float:
    """Sustained float32 GFLOP/s of [n, d] x [d, m] products written into a preallocated output."""
    a = torch.randn(n, d)
    b = torch.randn(d, m)
    out = torch.empty(n, m)
    torch.mm(a, b, out=out)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b, out=out)
        reps += 1
    return 2.0 * n * m * d * reps / (time.perf_counter() - t0) / 1e9


def count_searches(A: np.ndarray, B: np.ndarray, symmetric: bool) -> int:
    """Number of exact NN searches (query pixels) one FRM / symmetric run performs."""
    H1, W1, D = A.shape
    H2, W2, _ = B.shape
    f1, f2 = torch.from_numpy(A).reshape(-1, D), torch.from_numpy(B).reshape(-1, D)
    nn12 = CachedNN(f1, build_index(f2, "torch"))
    nn21 = CachedNN(f2, build_index(f1, "torch"))
    frm_flat(nn12, nn21, grid_points(H1, W1, 8), W1, 10, 0, False)
    if symmetric:
        frm_flat(nn21, nn12, grid_points(H2, W2, 8), W2, 10, 0, False)
    return nn12.n_searched + nn21.n_searched


def timed(fn, times: list) -> object:
    """Run fn() once, append its wall time to ``times``, return its result."""
    t0 = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - t0)
    return out


def _same_pairs(xy1, xy2, ref1, ref2) -> bool:
    """Same set of (xy1, xy2) pairs (the baseline's order may differ)."""
    def pairs(a, b):
        return {tuple(r) for r in np.concatenate([a, b], 1).tolist()}
    return pairs(xy1, xy2) == pairs(ref1, ref2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backends", nargs="+", default=["torch-pruned", "torch", "faiss"])
    ap.add_argument("--fixtures", type=Path, default=shared_dir() / "fixtures")
    args = ap.parse_args()
    torch.set_num_threads(2)

    d = np.load(args.fixtures / "frm_cases.npz", allow_pickle=False)
    A, B = d["map1"].astype(np.float32), d["map2"].astype(np.float32)
    c1, c2 = d["conf1"], d["conf2"]
    M, D = B.shape[0] * B.shape[1], B.shape[2]

    n_frm = count_searches(A, B, symmetric=False)
    n_sym = count_searches(A, B, symmetric=True)
    gflops = matmul_gflops(4096, 8192, D)
    bound = {k: 2.0 * n * M * D / (gflops * 1e9) for k, n in (("frm", n_frm), ("symmetric", n_sym))}
    print(cpu_line())
    print(f"maps {A.shape} / {B.shape}")
    print(f"matmul throughput: {gflops:.1f} GFLOP/s ([4096,{D}]x[{D},8192] float32, preallocated output)")
    print(f"exact NN searches: FRM {n_frm}, symmetric {n_sym} (each against {M} candidates)\n")

    # (name, task, fn, check): check(result) -> identical to the official outputs?
    def frm_check(r):
        return np.array_equal(r[0], d["a_xy1"]) and np.array_equal(r[1], d["a_xy2"])

    def sym_check(r):
        return _same_pairs(r[0], r[1], d["d_xy1"], d["d_xy2"])

    methods = [("baseline: scipy KD-tree FRM (official fast_reciprocal_NNs on CPU without dist)", "frm",
                lambda: kdtree_frm(A, B, subsample=8), frm_check, "case a"),
               ("baseline: scipy KD-tree both directions", "symmetric",
                lambda: kdtree_symmetric(A, B, subsample=8), sym_check, "case d pairs")]
    for be in args.backends:
        cfg = MatchingConfig(backend=be)
        try:
            fast_reciprocal_nn(A[:16, :16], B[:16, :16], subsample=8, config=cfg)
        except RuntimeError as exc:       # e.g. faiss missing
            print(f"skipping backend {be}: {exc}")
            continue
        methods.append((f"ours fast_reciprocal_nn [{be}]", "frm",
                        lambda cfg=cfg: fast_reciprocal_nn(A, B, subsample=8, config=cfg), frm_check, "case a"))
        methods.append((f"ours match_symmetric [{be}]", "symmetric",
                        lambda cfg=cfg: match_symmetric(A, B, c1, c2, subsample=8, config=cfg),
                        lambda r: (sym_check(r) and np.array_equal(r[0], d["d_xy1"])
                                   and np.array_equal(r[2], d["d_conf"])), "case d"))
    times = {m[0]: [] for m in methods}
    same = {}
    for _ in range(args.repeat):        # interleaved: every method once per repetition
        for name, _task, fn, check, _what in methods:
            same[name] = check(timed(fn, times[name]))

    base = {task: min(times[name]) for name, task, *_ in methods[:2]}
    print("| method | task | best (s) | spread (s) | speed-up vs KD-tree baseline (this run) | FLOP-only bound (s) "
          "| identical to official |")
    print("| --- | --- | ---: | --- | ---: | ---: | --- |")
    for name, task, _fn, _check, what in methods:
        t = times[name]
        spread = f"{min(t):.3f}-{max(t):.3f}" if len(t) > 1 else "-"
        print(f"| {name} | {task} | {min(t):.3f} | {spread} | {base[task] / min(t):.1f}x | {bound[task]:.3f} "
              f"| {'yes' if same[name] else 'NO'} ({what}) |")

if __name__ == "__main__":
    main()
