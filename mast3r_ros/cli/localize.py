"""`mast3r-ros localize`: localize a dataset's frames against a map, write poses (TUM format).

Only localized frames are written (a frame with no confident pose has no line); the summary
says how many were localized. Poses are ``T_map_cam`` (camera-to-map, OpenCV optical frame) of
the camera the dataset's poses describe (the colour camera unless ``--rgbd-calib`` says
``poses_frame: depth``), so the file compares directly with the dataset's ground truth.
"""
from __future__ import annotations

import argparse
import sys

from mast3r_ros.cli.common import (
    add_model_arguments,
    add_set_argument,
    calibration_from_arg,
    configs_from_args,
    frontend_from_args,
    model_label,
    oracle_from_args,
    output_file,
)

NAME = "localize"
HELP = "localize dataset frames against a keyframe map and write T_map_cam poses (TUM format)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--map", required=True, help="map folder from `mast3r-ros map build`")
    parser.add_argument("--dataset", required=True, help="dataset folder with the query images")
    parser.add_argument("--frames", required=True, help="query frames as START:STOP[:STEP]")
    parser.add_argument("--out", required=True, help="output trajectory (TUM: t tx ty tz qx qy qz qw)")
    add_model_arguments(parser)
    parser.add_argument("--pnp", default=None, choices=["poselib", "opencv"],
                        help="PnP back-end (localizer.pnp.solver; default poselib)")
    parser.add_argument("--rgbd-calib", default=None,
                        help="RGB-D calibration: a preset ('7scenes') or a YAML file (K_rgb, K_depth, "
                             "T_rgb_depth, "
                             "poses_frame) for sensors "
                             "whose depth is not registered to colour, e.g. 7-Scenes (default: the "
                             "calibration the map was built with)")
    parser.add_argument("--query-depth", action="store_true",
                        help="also use the query depth images (RGB-D localization, 3D-3D pose)")
    add_set_argument(parser, "localizer (LocalizerConfig), mast3r (Mast3rFrontEndConfig)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mast3r_ros.datasets.calibration import RgbdCalibration
    from mast3r_ros.datasets.readers import open_dataset, parse_frame_spec
    from mast3r_ros.datasets.tum import write_tum
    from mast3r_ros.localization.evaluation import localize_frames
    from mast3r_ros.localization.localizer import Localizer
    from mast3r_ros.map import KeyframeMap

    cfg = localizer_configs(args)
    out = output_file(args.out, "--out")
    spec = parse_frame_spec(args.frames)
    dataset = open_dataset(args.dataset)
    with KeyframeMap.open(args.map) as kmap:
        refuse_damaged(kmap)
        calib = (calibration_from_arg(args.rgbd_calib)
                 or RgbdCalibration.from_dict(kmap.meta.extra.get("rgbd_calibration")))
        oracle = oracle_from_args(args, dataset, spec, calib)
        if oracle is not None and cfg["mast3r"].coarse_to_fine:
            # coarse-to-fine sends keyframe images (not only their cached encodings) to the network
            oracle.source.register([kmap.get_keyframe(i, load_image=False, load_depth=False).frame_index
                                    for i in kmap.keyframe_ids()])
        localizer = Localizer(kmap, frontend_from_args(kmap.meta.frontend, args.checkpoint, oracle, cfg["mast3r"]),
                              cfg["localizer"])
        records = localize_frames(localizer, dataset, spec, progress=sys.stderr.isatty(),
                                  calib=calib, use_depth=args.query_depth)
        label = model_label(kmap.meta.frontend, args.checkpoint, oracle)
    ok = [r for r in records if r.localized]
    T = np.array([r.T_est for r in ok], dtype=np.float64).reshape(-1, 4, 4)
    write_tum(out, np.array([r.timestamp for r in ok]), T)
    totals = [r.timings["total"] for r in records if "total" in r.timings]
    lat = np.median(totals) if totals else float("nan")
    print(f"localize: {len(ok)}/{len(records)} frames localized (median {lat * 1000:.0f} ms/frame) "
          f"-> {args.out}  model: {label}")
    reasons = failure_reasons(records)
    if reasons:
        print(f"localize: not localized: {reasons}")
    return 0


def localizer_configs(args) -> dict:
    """{'localizer': LocalizerConfig, 'mast3r': Mast3rFrontEndConfig} from ``--pnp`` then ``--set``."""
    from mast3r_ros.localization.frontends.mast3r_config import Mast3rFrontEndConfig
    from mast3r_ros.localization.localizer import LocalizerConfig
    from mast3r_ros.localization.pose import PnPConfig

    base = LocalizerConfig(pnp=PnPConfig(solver=args.pnp)) if args.pnp else LocalizerConfig()
    return configs_from_args(args, localizer=base, mast3r=Mast3rFrontEndConfig())


def refuse_damaged(kmap) -> None:
    """ValueError listing the damage of a map (missing/corrupt files, NaN poses or descriptors): a
    damaged map is reported, never localized against."""
    from mast3r_ros.map.check import check_map, damage_line

    problems = check_map(kmap)
    if problems:
        raise ValueError(damage_line(kmap.path, problems))


def failure_reasons(records, top: int = 3) -> str:
    """The most frequent reasons frames were not localized, e.g. '3x LOST: too few matches'."""
    from collections import Counter

    counts = Counter(" ".join((r.error or "no pose").split())[:160] for r in records if not r.localized)
    return "; ".join(f"{n}x {why}" for why, n in counts.most_common(top))
