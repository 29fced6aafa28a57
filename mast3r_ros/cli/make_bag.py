"""`mast3r-ros make-bag`: write frames of a posed RGB-D dataset as a rosbag2 (no ROS install needed
beyond the rclpy wheels; see mast3r_ros.ros.bag.bag_io for the topics)."""
from __future__ import annotations

import argparse
import shutil
import sys
import time

NAME = "make-bag"
HELP = "write dataset frames as a rosbag2: image, camera_info, depth, ground-truth pose, /tf_static"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="dataset folder (7-Scenes layout or TUM RGB-D)")
    parser.add_argument("--frames", required=True, help="frames as START:STOP[:STEP] frame indices")
    parser.add_argument("--out", required=True, help="bag folder to create")
    parser.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"], help="rosbag2 storage")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bag folder")
    parser.add_argument("--fps", type=float, default=30.0,
                        help="stamps for datasets without timestamps (7-Scenes): frame index / FPS s")
    parser.add_argument("--time-offset", type=float, default=0.0, help="seconds added to every stamp")
    parser.add_argument("--camera-frame", default="camera_optical_frame", help="image frame_id")
    parser.add_argument("--base-frame", default="base_link",
                        help="parent of the camera in /tf_static ('' = no /tf_static)")
    parser.add_argument("--map-frame", default="map", help="frame_id of the ground-truth poses")
    parser.add_argument("--no-depth", action="store_true", help="leave depth out")
    parser.add_argument("--rgbd-calib", default=None,
                        help="RGB-D calibration preset ('7scenes') or YAML: camera_info carries its colour "
                             "intrinsics and the ground truth the colour camera's pose (use the same value "
                             "as for `map build`)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mast3r_ros.cli.common import calibration_from_arg
    from mast3r_ros.datasets.readers import DatasetError, open_dataset
    from mast3r_ros.ros.bag.bag_io import DatasetBagConfig, dataset_messages, write_bag

    if not args.fps > 0:
        print(f"make-bag: error: --fps must be > 0, got {args.fps}", file=sys.stderr)
        return 2
    try:
        calibration = calibration_from_arg(args.rgbd_calib)
    except ValueError as exc:
        print(f"make-bag: error: {exc}", file=sys.stderr)
        return 2
    cfg = DatasetBagConfig(depth_topic="" if args.no_depth else DatasetBagConfig.depth_topic,
                           camera_frame=args.camera_frame, base_frame=args.base_frame,
                           map_frame=args.map_frame, fps=args.fps, time_offset_s=args.time_offset,
                           calibration=calibration)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        print(f"make-bag: error: {out} exists (use --overwrite)", file=sys.stderr)
        return 2
    # Write in a scratch folder beside the target and move into place, so a failure never leaves
    # a half bag at --out. The bag keeps its final name inside (rosbag2 names the data file after it).
    scratch = out.with_name(f".{out.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    start = time.perf_counter()
    try:
        dataset = open_dataset(args.dataset)
        scratch.mkdir(parents=True)
        counts = write_bag(scratch / out.name, dataset_messages(dataset, args.frames, cfg), args.storage)
        if out.exists():
            shutil.rmtree(out)
        (scratch / out.name).rename(out)
    except (DatasetError, ValueError, OSError) as exc:
        print(f"make-bag: error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary = ", ".join(f"{topic} {n}" for topic, n in counts.items())
    print(f"make-bag: wrote {out} ({args.storage}) in {time.perf_counter() - start:.1f} s: {summary}")
    return 0
