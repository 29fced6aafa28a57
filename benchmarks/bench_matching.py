"""Benchmark: FRM and symmetric extraction on the fixture's 384x512x24 maps, per NN backend.

Prints a markdown table: the official reference numbers (measured by the issue reporter on this 2-core
CPU) as baseline rows, then our times (best and spread over --repeat runs), the number of exact NN
searches each run needed, the time those searches' FLOPs alone would take at the matmul throughput
measured in the same run, and whether the matches are identical to the official outputs.

Usage: python benchmarks/bench_matching.py [--repeat 3] [--backends torch-pruned torch faiss] [--fixtures DIR]
('auto' = 'torch-pruned' on CPU.) The FLOP-only bound is that of brute force; the pruned backend does
far fewer FLOPs, so it can beat it.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from mast3r_ros.matching import MatchingConfig, build_index, fast_reciprocal_nn, match_symmetric
from mast3r_ros.matching.frm import frm_flat, grid_points
from mast3r_ros.matching.nn_backends import CachedNN
from mast3r_ros.paths import shared_dir

OFFICIAL = {"frm": 9.07, "symmetric": 18.2}   # s, official MASt3R code on this CPU (issue 3)


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


def timed(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


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
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, maps {A.shape} / {B.shape}")
    print(f"matmul throughput: {gflops:.1f} GFLOP/s ([4096,{D}]x[{D},8192] float32, preallocated output)")
    print(f"exact NN searches: FRM {n_frm}, symmetric {n_sym} (each against {M} candidates)\n")

    rows = [("official fast_reciprocal_NNs (dot, block 2^13)", "frm", [OFFICIAL["frm"]], None, "reference"),
            ("official extract_correspondences_nonsym", "symmetric", [OFFICIAL["symmetric"]], None, "reference")]
    for be in args.backends:
        cfg = MatchingConfig(backend=be)
        try:
            t_frm, (x1, x2) = timed(lambda: fast_reciprocal_nn(A, B, subsample=8, config=cfg), args.repeat)
        except RuntimeError as exc:       # e.g. faiss missing
            print(f"skipping backend {be}: {exc}")
            continue
        same = np.array_equal(x1, d["a_xy1"]) and np.array_equal(x2, d["a_xy2"])
        rows.append((f"ours fast_reciprocal_nn [{be}]", "frm", t_frm, same, "case a"))
        t_sym, (y1, y2, cf) = timed(lambda: match_symmetric(A, B, c1, c2, subsample=8, config=cfg), args.repeat)
        same = (np.array_equal(y1, d["d_xy1"]) and np.array_equal(y2, d["d_xy2"])
                and np.array_equal(cf, d["d_conf"]))
        rows.append((f"ours match_symmetric [{be}]", "symmetric", t_sym, same, "case d"))

    print("| method | task | best (s) | spread (s) | speed-up vs official | FLOP-only bound (s) | identical |")
    print("| --- | --- | ---: | --- | ---: | ---: | --- |")
    for name, task, times, same, what in rows:
        best = min(times)
        spread = f"{min(times):.3f}-{max(times):.3f}" if len(times) > 1 else "-"
        ident = what if same is None else (f"yes ({what})" if same else f"NO ({what})")
        print(f"| {name} | {task} | {best:.3f} | {spread} | {OFFICIAL[task] / best:.1f}x | {bound[task]:.3f} "
              f"| {ident} |")


if __name__ == "__main__":
    main()
