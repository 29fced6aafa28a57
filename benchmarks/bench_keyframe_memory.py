"""Memory of keyframe arrays while localizing: everything resident (eager) vs the byte-bounded cache.

Usage::

    python benchmarks/bench_keyframe_memory.py [--keyframes N] [--budgets-mb 64 512] [--depth]

Writes a map of N keyframes holding MASt3R arrays of the released model's shapes (random values:
encoder tokens [768, 1024] float32 of a 512x384 image, 3.1 MB; with ``--depth`` also the network-pixel
points [384, 512, 3] float32, 2.4 MB) into a temporary folder, then replays the keyframe accesses of a
robot driving the trajectory twice with the top-5 keyframes around it per query, through
:class:`~mast3r_ros.localization.keyframe_cache.KeyframeCache` reading from the map exactly like the
localizer (sha256-verified). Per budget, in the same run (the unbounded budget is the eager baseline,
what keeping every keyframe read costs): keyframes and MB resident after the run, the tracemalloc peak
of Python + numpy allocations, reads from disk, and ms per read.
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from mast3r_ros.localization.keyframe_cache import KeyframeCache
from mast3r_ros.map import Keyframe, KeyframeMap, MapMeta
from mast3r_ros.map.keys import MAST3R_ARRAYS
from mast3r_ros.model.precision import cpu_flags


def write_map(path: Path, n: int, depth: bool) -> None:
    """N keyframes along a line (1 m apart) with released-size MASt3R arrays (random values)."""
    rng = np.random.default_rng(0)
    K = np.array([[400.0, 0, 256], [0, 400.0, 192], [0, 0, 1]])
    with KeyframeMap.create(path, MapMeta(frontend="mast3r")) as kmap:
        for i in range(n):
            T = np.eye(4)
            T[0, 3] = float(i)
            arrays = {"mast3r_tokens": rng.standard_normal((768, 1024), dtype=np.float32),
                      "mast3r_tf": np.array([512, 384, 512, 384, 0, 0, 512, 384], np.int64),
                      "mast3r_global": rng.standard_normal(1024, dtype=np.float32),
                      "mast3r_X": (rng.standard_normal((384, 512, 3), dtype=np.float32) if depth
                                   else np.zeros((0, 0, 3), np.float32))}
            kmap.add_keyframe(Keyframe(None, i, float(i), np.zeros((8, 8, 3), np.uint8), K, T, None, arrays))


def accesses(ids: list[int], k: int = 5) -> list[list[int]]:
    """Keyframes matched per query: the k around the robot's position, two laps of the trajectory."""
    lap = [ids[max(0, min(p - k // 2, len(ids) - k)):][:k] for p in range(len(ids))]
    return lap + lap


def replay(kmap: KeyframeMap, queries: list[list[int]], budget_mb: float) -> dict:
    load = lambda i: kmap.get_keyframe(i, load_image=False, arrays=list(MAST3R_ARRAYS), load_depth=False)  # noqa: E731
    cache = KeyframeCache(load, budget_mb * 2**20)
    tracemalloc.start()
    t0 = time.perf_counter()
    for ids in queries:
        held = [cache.get(i) for i in ids]  # what one query holds while it is matched
        del held
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"resident": len(cache), "resident_mb": cache.resident_bytes / 2**20, "peak_mb": peak / 2**20,
            "reads": cache.loads, "ms_per_read": 1e3 * seconds / max(cache.loads, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keyframes", type=int, default=100)
    p.add_argument("--budgets-mb", type=float, nargs="+", default=[64.0, 512.0],
                   help="cache budgets to compare with the unbounded (eager) one; 512 = the default")
    p.add_argument("--depth", action="store_true", help="keyframes also hold depth points (5.5 MB each)")
    args = p.parse_args()
    flags = cpu_flags()
    print(f"CPU: AMX {'yes' if 'amx_tile' in flags else 'no'}, avx512_bf16 "
          f"{'yes' if 'avx512_bf16' in flags else 'no'}; {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        write_map(Path(tmp) / "map", args.keyframes, args.depth)
        with KeyframeMap.open(Path(tmp) / "map") as kmap:
            queries = accesses(kmap.keyframe_ids())
            rows = [(b, replay(kmap, queries, b)) for b in [math.inf, *args.budgets_mb]]
    print(f"\n{args.keyframes} keyframes ({'tokens + depth points' if args.depth else 'tokens'}), "
          f"{len(queries)} queries of 5 keyframes (two laps)\n")
    print("| cache budget | keyframes resident | MB resident | tracemalloc peak [MB] | reads | ms per read |")
    print("|---|---|---|---|---|---|")
    for budget, r in rows:
        name = "unbounded (eager)" if math.isinf(budget) else f"{budget:g} MiB"
        print(f"| {name} | {r['resident']} | {r['resident_mb']:.0f} | {r['peak_mb']:.0f} | {r['reads']} | "
              f"{r['ms_per_read']:.1f} |")


if __name__ == "__main__":
    main()
