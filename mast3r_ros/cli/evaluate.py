"""`mast3r-ros evaluate`: build a map, localize queries, report accuracy/recall/latency.

With no ``--dataset`` it runs on the bundled synthetic room (rendered once into the cache),
using the map/query frame specs recommended in its ``synthetic.json``.
"""
from __future__ import annotations

import argparse
import sys
import time

from mast3r_ros.cli.common import (
    add_model_arguments,
    add_set_argument,
    calibration_from_arg,
    frontend_from_args,
    model_label,
    oracle_from_args,
    output_file,
)
from mast3r_ros.cli.localize import localizer_configs

NAME = "evaluate"
HELP = "build a map from some frames, localize others, write a JSON report (+ trajectory plot)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default=None,
                        help="dataset folder (default: the synthetic demo room, rendered on first use)")
    parser.add_argument("--map-frames", default=None, help="map frames START:STOP[:STEP]")
    parser.add_argument("--query-frames", default=None, help="query frames START:STOP[:STEP]")
    parser.add_argument("--frontend", default="classical", choices=["classical", "mast3r"])
    add_model_arguments(parser)
    parser.add_argument("--pnp", default=None, choices=["poselib", "opencv"],
                        help="PnP back-end (localizer.pnp.solver; default poselib)")
    parser.add_argument("--map-out", default=None, help="keep the built map in this folder")
    parser.add_argument("--out", default="report.json", help="JSON report path (default report.json)")
    parser.add_argument("--plot", default=None, help="trajectory plot (PNG); default <out>.png")
    parser.add_argument("--rgbd-calib", default=None,
                        help="RGB-D calibration: a preset ('7scenes') or a YAML file (K_rgb, K_depth, "
                             "T_rgb_depth, "
                             "poses_frame) for sensors "
                             "whose depth is not registered to colour, e.g. 7-Scenes")
    parser.add_argument("--query-depth", action="store_true",
                        help="also use the query depth images (RGB-D localization, 3D-3D pose)")
    add_set_argument(parser, "localizer (LocalizerConfig), mast3r (Mast3rFrontEndConfig)")


def _resolve_dataset(args) -> tuple[str, str, str]:
    """(dataset folder, map spec, query spec), defaults from the synthetic demo."""
    if args.dataset is not None:
        if not (args.map_frames and args.query_frames):
            raise ValueError("--map-frames and --query-frames are required with --dataset")
        return args.dataset, args.map_frames, args.query_frames
    from mast3r_ros.datasets.synthetic_room import default_demo_dataset, load_sequence_info

    root = default_demo_dataset()
    info = load_sequence_info(root)
    return str(root), args.map_frames or info.map_spec, args.query_frames or info.query_spec


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mast3r_ros.datasets.readers import open_dataset, parse_frame_spec
    from mast3r_ros.localization.evaluation import evaluate, plot_trajectories, summary_table, write_report

    start = time.perf_counter()
    output_file(args.out, "--out")
    if args.plot:
        output_file(args.plot, "--plot")
    try:
        cfg = localizer_configs(args)
        root, map_spec, query_spec = _resolve_dataset(args)
        mspec, qspec = parse_frame_spec(map_spec), parse_frame_spec(query_spec)
        dataset = open_dataset(root)
        calib = calibration_from_arg(args.rgbd_calib)
        frames = sorted({f.index for spec in (mspec, qspec) for f in dataset.frames(spec)})
        oracle = oracle_from_args(args, dataset, frames, calib)
        frontend = frontend_from_args(args.frontend, args.checkpoint, oracle, cfg["mast3r"])
        report = evaluate(dataset, mspec, qspec, frontend, cfg["localizer"],
                          map_dir=args.map_out, progress=sys.stderr.isatty(),
                          calib=calib, use_depth=args.query_depth)
    except (ValueError, NotImplementedError, OSError) as exc:
        print(f"evaluate: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    report["model"] = model_label(args.frontend, args.checkpoint, oracle)
    if oracle is not None:
        report["oracle_noise"] = oracle.noise.describe()
    report["wall_time_s"] = time.perf_counter() - start
    out = write_report(report, args.out)
    plot = plot_trajectories(report, args.plot or Path(args.out).with_suffix(".png"))
    print(f"evaluate: {root}  map {map_spec} ({report['n_keyframes']} keyframes)  queries {query_spec}  "
          f"model: {report['model']}")
    print(summary_table(report))
    print(f"report -> {out}\nplot   -> {plot}\n({report['wall_time_s']:.1f} s)")
    return 0
