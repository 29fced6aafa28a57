"""`mast3r-ros map build`: keyframe map from a posed RGB-D dataset (poses = the dataset's poses)."""
from __future__ import annotations

import argparse
import json
import sys
import time

from mast3r_ros.cli.common import (
    add_model_arguments,
    calibration_from_arg,
    frontend_from_args,
    model_label,
    oracle_from_args,
    output_file,
)

NAME = "map build"
HELP = "build a keyframe map (features + retrieval index) from a posed RGB-D dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="dataset folder (7-Scenes layout or TUM RGB-D)")
    parser.add_argument("--frames", required=True, help="keyframes as START:STOP[:STEP] frame indices")
    parser.add_argument("--frontend", default="classical", choices=["classical", "mast3r"])
    add_model_arguments(parser)
    parser.add_argument("--out", required=True, help="map folder to create")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing map folder")
    parser.add_argument("--store-depth", action="store_true", help="also store keyframe depth images")
    parser.add_argument("--no-depth", action="store_true",
                        help="images only: read no depth (mast3r front-end; with --optimize, monocular mapping: "
                             "poses, focal length and metric 3D points from the network's pointmaps)")
    parser.add_argument("--intrinsics", default="estimate", choices=["estimate", "known"],
                        help="--optimize of a mast3r map without depth: estimate the focal length (default) or "
                             "keep the dataset's intrinsics (maps with depth always keep them)")
    parser.add_argument("--rgbd-calib", default=None,
                        help="RGB-D calibration: a preset ('7scenes') or a YAML file (K_rgb, K_depth, "
                             "T_rgb_depth, "
                             "poses_frame) for sensors "
                             "whose depth is not registered to colour, e.g. 7-Scenes")
    parser.add_argument("--optimize", action="store_true",
                        help="estimate keyframe poses by sparse global alignment (dataset poses are "
                             "ignored; implies --store-depth unless --no-depth); writes trajectory_tum.txt and "
                             "cloud.ply and, when the dataset has poses, prints the trajectory error against them")
    parser.add_argument("--stage1-iters", type=int, default=None,
                        help="--optimize: iterations of the 3D matching stage (default 300)")
    parser.add_argument("--stage2-iters", type=int, default=None,
                        help="--optimize: iterations of the 2D reprojection stage (default 0 for classical "
                             "RGB-D maps: it needs calibrated colour intrinsics; 300 for mast3r maps)")
    parser.add_argument("--gamma1", type=float, default=None,
                        help="--optimize: exponent of the 3D matching loss (default 2 for classical RGB-D maps; "
                             "the paper's 1.5, for network pointmaps, for mast3r maps)")
    parser.add_argument("--json", default=None, help="--optimize: write the optimisation summary as JSON")


def run(args: argparse.Namespace) -> int:
    from mast3r_ros.datasets.readers import open_dataset, parse_frame_spec
    from mast3r_ros.map import KeyframeMap
    from mast3r_ros.map.build import build_map

    start = time.perf_counter()
    if args.json:
        output_file(args.json, "--json")
    try:
        spec = parse_frame_spec(args.frames)
        dataset = open_dataset(args.dataset)
        calib = calibration_from_arg(args.rgbd_calib)
        if args.no_depth and (args.frontend != "mast3r" or args.store_depth):
            raise ValueError("--no-depth builds from images alone: use it with --frontend mast3r and without "
                             "--store-depth")
        oracle = oracle_from_args(args, dataset, spec, calib)
        frontend = frontend_from_args(args.frontend, args.checkpoint, oracle)
        try:
            build_map(dataset, spec, frontend, args.out, overwrite=args.overwrite,
                      store_depth=(args.store_depth or args.optimize) and not args.no_depth,
                      progress=sys.stderr.isatty(), calib=calib, use_depth=not args.no_depth)
        except Exception as exc:
            if _is_partial(args.out):
                raise type(exc)(f"{' '.join(str(exc).split())} (the build stopped: {args.out} holds a partial "
                                "map, which opening refuses; fix the cause and rerun with --overwrite)") from exc
            raise
        if args.optimize:
            from mast3r_ros.mapping.pipeline import MapOptimizeConfig, optimize_map

            cfg = MapOptimizeConfig(intrinsics=args.intrinsics)
            align = cfg.mast3r.alignment if args.frontend == "mast3r" else cfg.alignment
            if args.stage1_iters is not None:
                align.niter1 = args.stage1_iters
            if args.stage2_iters is not None:
                align.niter2 = args.stage2_iters
            if args.gamma1 is not None:
                align.gamma1 = args.gamma1
            summary = optimize_map(args.out, cfg, progress=sys.stderr.isatty(), frontend=frontend)
            summary["accuracy"] = _accuracy(args.out, dataset, calib, summary.get("intrinsics") == "estimated")
            summary["model"] = model_label(args.frontend, args.checkpoint, oracle)
            if args.json:
                from mast3r_ros.files.atomic_io import atomic_write_bytes

                atomic_write_bytes(args.json, json.dumps(summary, indent=1).encode("utf-8"))
            print(f"map build: optimised {summary['n_keyframes']} keyframes, {summary['pairs_ok']}/"
                  f"{summary['n_pairs']} pairs used, {summary['n_cloud_points']} cloud points "
                  f"({summary['timings']['total']:.1f} s)")
            if summary["accuracy"]:
                print(f"map build: vs the dataset's poses: {_accuracy_line(summary['accuracy'])} "
                      f"(model: {summary['model']})")
        with KeyframeMap.open(args.out) as kmap:
            n = len(kmap)
    except (ValueError, NotImplementedError, OSError) as exc:
        print(f"map build: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"map build: {n} keyframes ({args.frontend}, model: {model_label(args.frontend, args.checkpoint, oracle)}) "
          f"-> {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def _accuracy(out: str, dataset, calib, focal: bool) -> dict | None:
    """Trajectory (and focal) error of the optimised map against the dataset's poses, or None when the
    dataset has none (evaluation only: nothing of it enters the map)."""
    import numpy as np

    from mast3r_ros.datasets.calibration import RgbdCalibration
    from mast3r_ros.map import KeyframeMap
    from mast3r_ros.mapping.monocular import trajectory_accuracy

    calib = calib or RgbdCalibration()
    gt = {f.index: f.T_world_cam for f in dataset.frames() if f.T_world_cam is not None}
    with KeyframeMap.open(out) as kmap:
        kfs = [kmap.get_keyframe(i, load_image=False, load_depth=False, arrays=[]) for i in kmap.keyframe_ids()]
    if len(kfs) < 3 or any(k.frame_index not in gt for k in kfs):
        return None
    T_gt = np.stack([calib.colour_pose(gt[k.frame_index]) for k in kfs])
    K_est = np.stack([k.K for k in kfs]) if focal else None
    acc = trajectory_accuracy(np.stack([k.T_map_cam for k in kfs]), T_gt, K_est, calib.colour_K(dataset.K))
    acc["n_keyframes"] = len(kfs)
    return acc


def _accuracy_line(acc: dict) -> str:
    line = (f"ATE {acc['ate_se3_m'] * 100:.2f} cm after SE(3) alignment (metric, no scale), "
            f"{acc['ate_sim3_m'] * 100:.2f} cm after Sim(3) (scale {acc['sim3_scale']:.4f})")
    if "focal_error_pct" in acc:
        line += f", focal error {acc['focal_error_pct']:.2f} %"
    return line


def _is_partial(out: str) -> bool:
    from pathlib import Path

    from mast3r_ros.map.format import MapError, read_meta
    from mast3r_ros.map.keys import PARTIAL_KEY

    try:
        return PARTIAL_KEY in read_meta(Path(out))[0].extra
    except (MapError, OSError):
        return False
