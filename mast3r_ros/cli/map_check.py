"""`mast3r-ros map check MAP`: list a map's damage (missing or corrupt files, missing rows, NaN or
non-rigid poses, NaN descriptors, a build that stopped half-way). Exit code 0 when intact, 1 when damaged."""
from __future__ import annotations

import argparse

NAME = "map check"
HELP = "verify every file and row of a keyframe map and list the damage (exit code 1 when damaged)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("map", help="map folder")


def run(args: argparse.Namespace) -> int:
    from mast3r_ros.map import KeyframeMap
    from mast3r_ros.map.check import check_map

    with KeyframeMap.open(args.map, check=False) as kmap:  # errors: one line from the CLI front-end
        problems = check_map(kmap)
        n = len(kmap)
    if not problems:
        print(f"map check: {args.map}: intact ({n} keyframes, every file verified)")
        return 0
    print(f"map check: {args.map}: {len(problems)} problem{'s' * (len(problems) != 1)} ({n} keyframes)")
    for p in problems:
        print(f"  {p}")
    return 1
