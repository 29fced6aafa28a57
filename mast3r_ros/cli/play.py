"""`mast3r-ros play BAG`: publish a rosbag2 over DDS with its recorded stamps and timing, like
`ros2 bag play` (which is not installable as a wheel)."""
from __future__ import annotations

import argparse
import functools
import sys

NAME = "play"
HELP = "publish a rosbag2 over DDS with its recorded stamps (like ros2 bag play)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="rosbag2 folder (mcap or sqlite3)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    parser.add_argument("--topics", nargs="+", default=None, help="only these topics")
    parser.add_argument("--wait-for", nargs="+", default=[], metavar="TOPIC",
                        help="start only once each of these topics has a subscriber "
                             "(then 1 s for the DDS match to settle)")
    parser.add_argument("--wait-timeout", type=float, default=30.0, help="seconds to wait for subscribers")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to pause before the first message")
    parser.add_argument("--clock", nargs="?", type=float, const=40.0, default=None, metavar="HZ",
                        help="also publish /clock at bag time, at a steady HZ (default 40)")


def run(args: argparse.Namespace) -> int:
    from mast3r_ros.files.bag_check import check_bag_folder
    from mast3r_ros.ros.bag.bag_play import PlayConfig, play_bag, use_large_data_profile

    # Before rclpy creates the participant: 640x480 images need the larger shared-memory segment.
    print(f"play: {use_large_data_profile()}", flush=True)
    cfg = PlayConfig(rate=args.rate, topics=args.topics, wait_for=args.wait_for,
                     wait_timeout_s=args.wait_timeout, start_delay_s=args.delay,
                     clock=args.clock is not None, clock_hz=args.clock or 40.0)
    try:
        check_bag_folder(args.bag)
        # Flushed, so a supervising process (launch, tests) sees progress through a pipe.
        counts = play_bag(args.bag, cfg, log=functools.partial(print, flush=True))
    except (ValueError, TimeoutError, OSError, ImportError) as exc:
        print(f"play: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print("play: done: " + ", ".join(f"{topic} {n}" for topic, n in counts.items()))
    return 0
