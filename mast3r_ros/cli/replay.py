"""`mast3r-ros replay`: run the localization node core offline over a bag (no DDS, deterministic).

Every synchronised frame is processed (nothing dropped, unlike live), in bag order, and the
poses, status and TF the node would have published are written to a new bag with the image
stamps as both header and record times.
"""
from __future__ import annotations

import argparse
import sys

NAME = "replay"
HELP = "localize the frames of a bag offline and write the poses/status/TF the node would publish"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bag", required=True, help="input rosbag2 folder (e.g. from `mast3r-ros make-bag`)")
    parser.add_argument("--map", required=True, help="map folder")
    parser.add_argument("--out", required=True, help="output rosbag2 folder (must not exist)")
    parser.add_argument("--params", default="",
                        help="ROS 2 parameter YAML (default config/localization.yaml)")
    parser.add_argument("--checkpoint", default="", help="local MASt3R checkpoint (mast3r maps)")
    parser.add_argument("--namespace", default="mast3r")
    parser.add_argument("--image-topic", default="/camera/image_raw")
    parser.add_argument("--camera-info-topic", default="/camera/camera_info")
    parser.add_argument("--depth-topic", default="/camera/depth/image_raw")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="parameter override (repeatable), YAML value")


def run(args: argparse.Namespace) -> int:
    from mast3r_ros.files.bag_check import check_bag_folder
    from mast3r_ros.ros.bag.replay import ReplayTopics, load_replay_params, replay_bag
    from mast3r_ros.ros.core.params import ParamError

    try:
        check_bag_folder(args.bag)
        params = load_replay_params(args.params, args.map, args.checkpoint, args.param)
        topics = ReplayTopics(args.image_topic, args.camera_info_topic, args.depth_topic,
                              args.namespace)
        summary = replay_bag(args.bag, args.out, params, topics)
    except (ParamError, ValueError, OSError) as exc:
        print(f"replay: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"replay: {summary.n_localized}/{summary.n_frames} frames localized, "
          f"{summary.n_rejected} rejected -> {args.out}")
    return 0
