#!/usr/bin/env python3
"""MASt3R mapping pass time as the map grows: windowed passes (``mono.window_keyframes``) against passes over
every keyframe (the baseline: a window as large as the map), both measured in this run.

The mapping node's engine (``MonocularStream``) on the oracle stand-in (ground-truth geometry with the
default injected errors; not MASt3R's accuracy or speed with the released weights), 7-Scenes redkitchen
frames 15 apart (0.5 s) with camera_info's K, a pass every ``--every`` keyframes as the node's background
passes run. Per pass: keyframes in the map, keyframes the pass mapped, image pairs decoded, wall time; at
the end each run's keyframe errors against the ground truth (map frame = the first keyframe's camera).
A warm-up pass over the first 4 keyframes runs before both (one-time imports and allocations).

    .venv/bin/python -m benchmarks.bench_mono_window [--keyframes 32] [--window 12] [--every 4] [--size 256]
"""
from __future__ import annotations

import mast3r_ros  # noqa: F401  (its OMP_WAIT_POLICY default before torch loads)

# isort: split

import argparse
import time

import numpy as np
import torch

from benchmarks.bench_forward import cpu_description
from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.geometry.transforms import invert, pose_errors
from mast3r_ros.mapping.monocular_stream import MonocularStream
from mast3r_ros.mapping.monocular_stream_config import MonocularStreamConfig
from mast3r_ros.model.oracle import OracleModel
from mast3r_ros.paths import shared_dir


def run(model, frames: list, kitchen, window: int, every: int, size: int) -> tuple[list, np.ndarray]:
    """([(keyframes in the map, keyframes mapped, pairs decoded, pairs, seconds)] per pass, [N,4,4] poses)."""
    cfg = MonocularStreamConfig(max_keyframes=len(frames), window_keyframes=window, pass_every_n_keyframes=0)
    stream = MonocularStream(cfg, model, size)
    rows = []
    for n, f in enumerate(frames, start=1):
        assert stream.add_frame(kitchen.load_rgb(f), kitchen.K, stamp=f.index / 30).is_keyframe
        if n % every == 0 or n == len(frames):
            t = time.perf_counter()
            assert stream.optimize(), stream.last_error
            s = stream.pass_summary()
            rows.append((n, s["n_keyframes"], s["pairs_decoded"], s["n_pairs"], time.perf_counter() - t))
    return rows, stream.snapshot().T_map_cam


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keyframes", type=int, default=32)
    ap.add_argument("--window", type=int, default=12)
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    kitchen = open_dataset(shared_dir() / "data" / "7scenes_redkitchen")
    frames = [f for f in kitchen.frames(f"0:{15 * args.keyframes}:15")]
    model = OracleModel.from_dataset(kitchen, frames=[f.index for f in frames], image_size=args.size)
    print(cpu_description())
    print(f"oracle stand-in, {args.size} px, {len(frames)} keyframes 0.5 s apart, a pass every {args.every}\n")
    run(model, frames[:4], kitchen, args.window, 4, args.size)  # warm-up: one-time imports and allocations
    results = {}
    for name, window in (("windowed", args.window), ("all keyframes (baseline)", len(frames))):
        results[name] = run(model, frames, kitchen, window, args.every, args.size)
    (win, T_win), (full, T_full) = results.values()
    print(f"| keyframes | windowed ({args.window}): mapped, pairs decoded / total, s "
          "| all keyframes: mapped, pairs decoded / total, s | time ratio |")
    print("|---|---|---|---|")
    for w, b in zip(win, full):
        print(f"| {w[0]} | {w[1]}, {w[2]} / {w[3]}, {w[4]:.1f} | {b[1]}, {b[2]} / {b[3]}, {b[4]:.1f} "
              f"| {w[4] / b[4]:.2f} |")
    gt = [f.T_world_cam for f in frames]
    for name, T in (("windowed", T_win), ("all keyframes", T_full)):
        errs = np.array([pose_errors(t, invert(gt[0]) @ g) for t, g in zip(T, gt)])
        print(f"{name}: keyframe error median {100 * np.median(errs[:, 0]):.2f} cm, max {100 * errs[:, 0].max():.2f} "
              f"cm, max {errs[:, 1].max():.2f} deg")
    print(f"total pass time: windowed {sum(r[4] for r in win):.1f} s, all keyframes {sum(r[4] for r in full):.1f} s "
          f"(torch {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
