"""Sparse global alignment cost vs. number of keyframes (20 / 50 / 100 / 200 by default).

Inputs are oracle MASt3R-style pairs from 7-Scenes redkitchen (depth + GT poses, noise, 10 %
outliers; ``mast3r_ros.mapping.oracle``), so only the optimiser is timed, not a front-end.
Pairs: a sequential window (``--window``) in both directions, no loop-closure pairs: the
hardest case for the optimiser (errors accumulate along a chain as deep as the sequence).
For each size the script reports wall time by step, peak RSS of a fresh child
process, pairs / matches / anchors, pose error, and fits time ~ pairs^k (log-log slope).
The 20-keyframe run with ``--niter 0`` style baselines is not needed: the table itself is the
comparison across sizes, all measured in the same run.

Usage:
    .venv/bin/python benchmarks/bench_alignment.py [--sizes 20 50 100 200] [--niter 300] [--threads 1]

On a CPU shared with other work use ``--threads 1``: torch's intra-op threads wait for the
slowest one, so two threads on two busy cores ran 2-4x slower than one (measured: 100 keyframes
91 s with 2 threads next to another job, 49 s with 1).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def run_one(dataset: str, n: int, niter: int, stride: int, window: int, threads: int, lr1: float) -> dict:
    """Align n keyframes (every frame of the 334-frame copy, from 0) and measure it."""
    import torch

    from mast3r_ros.datasets.readers import open_dataset
    from mast3r_ros.geometry.alignment import umeyama
    from mast3r_ros.geometry.transforms import invert, pose_errors
    from mast3r_ros.mapping.oracle import OracleConfig, oracle_scene
    from mast3r_ros.mapping.sparse_ga import AlignmentConfig, sparse_global_alignment

    torch.set_num_threads(threads)
    ds = open_dataset(dataset)
    idx = [f.index for f in ds.frames()][:n]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, min(n, i + 1 + window))]
    pairs += [(j, i) for i, j in pairs]  # MASt3R predicts both directions
    t0 = time.perf_counter()
    scene = oracle_scene(ds, idx, pairs, OracleConfig(stride=stride, n_matches=300), seed=0)
    t_oracle = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = sparse_global_alignment(scene.views, scene.pairs, AlignmentConfig(niter1=niter, niter2=niter, lr1=lr1))
    wall = time.perf_counter() - t0
    G = scene.T_world_cam[0] @ invert(res.T_world_cam[0])
    err = np.array([pose_errors(G @ a, b) for a, b in zip(res.T_world_cam, scene.T_world_cam)])
    # drift metric as for real trajectories: positions after a rigid (SE(3)) alignment
    R_t, _ = umeyama(res.T_world_cam[:, :3, 3], scene.T_world_cam[:, :3, 3])
    ate = np.linalg.norm(res.T_world_cam[:, :3, 3] @ R_t[:3, :3].T + R_t[:3, 3] - scene.T_world_cam[:, :3, 3], axis=1)
    return {"keyframes": n, "pairs": len(scene.pairs),
            "matches": int(sum(len(p.conf) for p in scene.pairs)), "oracle_s": t_oracle,
            "align_s": wall, **{f"{k}_s": v for k, v in res.timings.items()},
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "max_t_err_cm": 100 * float(err[:, 0].max()), "max_r_err_deg": float(err[:, 1].max()),
            "ate_cm": 100 * float(np.sqrt(np.mean(ate ** 2)))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"
                                             / "7scenes_redkitchen"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100, 200])
    ap.add_argument("--niter", type=int, default=300, help="iterations per stage")
    ap.add_argument("--stride", type=int, default=2, help="image stride (2 -> 320x240 pointmaps)")
    ap.add_argument("--window", type=int, default=3, help="sequential pairing window")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr1", type=float, default=0.07, help="stage-1 learning rate (0.07: the paper's)")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child process mode
    ap.add_argument("--json", default=None, help="also write the rows as JSON")
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.dataset, args.one, args.niter, args.stride, args.window, args.threads,
                                 args.lr1)))
        return 0
    rows = []
    for n in args.sizes:  # one child per size: peak RSS is per run, not cumulative
        cmd = [sys.executable, __file__, "--one", str(n), "--dataset", args.dataset, "--niter", str(args.niter),
               "--stride", str(args.stride), "--window", str(args.window), "--threads", str(args.threads),
               "--lr1", str(args.lr1)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return out.returncode
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{r['keyframes']:>4} kf  {r['pairs']:>4} pairs  align {r['align_s']:7.1f} s", file=sys.stderr)
    hdr = ("| keyframes | pairs | matches | prepare s | stage1 s | stage2 s | align total s | peak RSS MB "
           "| max err cm / deg (first view aligned) | ATE RMSE cm (SE(3)-aligned) |")
    print(hdr + "\n|" + "---|" * 10)
    for r in rows:
        print(f"| {r['keyframes']} | {r['pairs']} | {r['matches']} | {r['prepare_s']:.1f} | {r['stage1_s']:.1f} "
              f"| {r['stage2_s']:.1f} | {r['align_s']:.1f} | {r['peak_rss_mb']:.0f} "
              f"| {r['max_t_err_cm']:.2f} / {r['max_r_err_deg']:.2f} | {r['ate_cm']:.2f} |")
    if len(rows) >= 2:
        p = np.log([r["pairs"] for r in rows])
        k = np.polyfit(p, np.log([r["align_s"] for r in rows]), 1)[0]
        km = np.polyfit(p, np.log([r["peak_rss_mb"] for r in rows]), 1)[0]
        print(f"\ngrowth: align time ~ pairs^{k:.2f}, peak RSS ~ pairs^{km:.2f} (log-log fit over the sizes)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
