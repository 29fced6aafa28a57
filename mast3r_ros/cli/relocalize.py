"""`mast3r-ros relocalize`: map-free relocalization of query images against ONE posed reference image.

Dataset form (accuracy report)::

    mast3r-ros relocalize --dataset DIR --reference-frame I --query-frames SPEC --out report.json

File form (poses out, TUM; t = the query's position on the command line)::

    mast3r-ros relocalize --reference IMG --reference-pose T_map_cam.txt --intrinsics K.txt QUERY... --out poses.tum

Both go through ``solve_mapfree`` (PnP on the reference's metric pointmap, then essential matrix +
metric scale, then Procrustes). ``--frontend mast3r`` (default) needs ``--checkpoint`` or
``--oracle-model`` (whose source is ``--dataset``); ``classical`` (SIFT) needs the reference's depth.
"""
from __future__ import annotations

import argparse
import sys

from mast3r_ros.cli.common import (
    add_model_arguments,
    add_set_argument,
    calibration_from_arg,
    configs_from_args,
    model_label,
    oracle_from_args,
)

NAME = "relocalize"
HELP = "map-free relocalization: poses of query images from one reference image with a known pose"
BASELINE_BINS_M = (0.0, 0.3, 1.0, 2.0, float("inf"))
ACCURATE = (0.25, 5.0)  # metres, degrees


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default=None, help="dataset folder (dataset form; the oracle model's source)")
    parser.add_argument("--reference-frame", type=int, default=None, help="dataset form: reference frame index")
    parser.add_argument("--query-frames", default=None, help="dataset form: query frames START:STOP[:STEP]")
    parser.add_argument("--reference", default=None, help="file form: reference image")
    parser.add_argument("--reference-pose", default=None, help="file form: 4x4 T_map_cam text file of the reference")
    parser.add_argument("--intrinsics", default=None, help="file form: 3x3 K text file (reference and queries)")
    parser.add_argument("--reference-depth", default=None,
                        help="file form, classical: reference depth (16-bit PNG in mm, or .npy in metres)")
    parser.add_argument("queries", nargs="*", help="file form: query images")
    parser.add_argument("--frontend", default="mast3r", choices=["mast3r", "classical"])
    add_model_arguments(parser)
    parser.add_argument("--rgbd-calib", default=None, help="dataset form: RGB-D calibration preset or YAML")
    parser.add_argument("--out", required=True, help="report.json (dataset form) or poses.tum (file form)")
    add_set_argument(parser, "mapfree (MapFreeConfig: solver gates, e.g. mapfree.min_inliers), mast3r "
                             "(Mast3rFrontEndConfig: FRM, image size)")


def _read_rgb(path: str):
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)  # the dataset reader's decoder (same pixels)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _solver(args, dataset, frames, calib):
    """(function(ref_image, K_ref, ref_depth, T_map_ref, MapFreeQuery) -> MapFreeResult, model label)."""
    from mast3r_ros.localization.frontends.mast3r_config import Mast3rFrontEndConfig
    from mast3r_ros.localization.mapfree import MapFreeConfig, relocalize_classical, relocalize_mast3r

    cfg = configs_from_args(args, mapfree=MapFreeConfig(), mast3r=Mast3rFrontEndConfig())
    if args.frontend == "classical":
        if args.oracle_model or args.checkpoint:
            raise ValueError("--checkpoint / --oracle-model are for --frontend mast3r")
        return ((lambda img, K, depth, T, q: relocalize_classical(img, K, depth, T, q, config=cfg["mapfree"])),
                model_label("classical", None))
    oracle = None
    if args.oracle_model:
        if dataset is None:
            raise ValueError("--oracle-model needs --dataset (its images and ground truth are the stand-in's source)")
        oracle = oracle_from_args(args, dataset, frames, calib)
        model = oracle
    elif args.checkpoint:
        from mast3r_ros.model import InferenceConfig, Mast3rModel

        model = Mast3rModel.from_checkpoint(args.checkpoint, InferenceConfig())
    else:
        raise ValueError("--frontend mast3r needs --checkpoint PATH or --oracle-model")
    return ((lambda img, K, depth, T, q: relocalize_mast3r(model, img, K, T, q, cfg["mast3r"], cfg["mapfree"])),
            model_label("mast3r", args.checkpoint, oracle))


def run_dataset(args) -> dict:
    import numpy as np

    from mast3r_ros.datasets.calibration import RgbdCalibration
    from mast3r_ros.datasets.readers import open_dataset
    from mast3r_ros.geometry.transforms import pose_errors
    from mast3r_ros.localization.mapfree import MapFreeQuery

    if args.reference_frame is None or not args.query_frames:
        raise ValueError("the dataset form needs --reference-frame I and --query-frames SPEC")
    dataset = open_dataset(args.dataset)
    calib = calibration_from_arg(args.rgbd_calib) or RgbdCalibration()
    ref = next((f for f in dataset.frames() if f.index == args.reference_frame), None)
    if ref is None or ref.T_world_cam is None:
        raise ValueError(f"reference frame {args.reference_frame} is not a posed frame of {args.dataset}")
    queries = [f for f in dataset.frames(args.query_frames) if f.index != ref.index]
    if not queries:
        raise ValueError(f"no query frames in {args.dataset} for {args.query_frames}")
    solve, label = _solver(args, dataset, [ref.index] + [f.index for f in queries],
                           calibration_from_arg(args.rgbd_calib))
    K = calib.colour_K(dataset.K)
    T_ref = calib.colour_pose(ref.T_world_cam)
    ref_img = dataset.load_rgb(ref)
    ref_depth = calib.depth_in_colour(dataset.load_depth(ref), dataset.K, dataset.image_size)
    records = []
    for f in queries:
        try:
            res = solve(ref_img, K, ref_depth, T_ref, MapFreeQuery(dataset.load_rgb(f), K))
        except ValueError as exc:  # e.g. an image the model cannot take: this query fails, the rest go on
            from mast3r_ros.localization.mapfree import MapFreeResult

            res = MapFreeResult(None, "", 0, str(exc))
        te = re = None
        if res.T_map_cam is not None and f.T_world_cam is not None:
            te, re = pose_errors(calib.dataset_pose(res.T_map_cam), f.T_world_cam)
        baseline = float(np.linalg.norm(f.T_world_cam[:3, 3] - ref.T_world_cam[:3, 3]))
        records.append({"index": f.index, "localized": res.T_map_cam is not None, "method": res.method,
                        "n_inliers": res.n_inliers, "translation_error_m": te, "rotation_error_deg": re,
                        "baseline_m": baseline, "message": res.message,
                        "T_est": None if res.T_map_cam is None else calib.dataset_pose(res.T_map_cam).tolist()})
    return _report(args, label, records)


def _report(args, label: str, records: list[dict]) -> dict:
    import numpy as np

    loc = [r for r in records if r["localized"] and r["translation_error_m"] is not None]
    te = np.array([r["translation_error_m"] for r in loc])
    re = np.array([r["rotation_error_deg"] for r in loc])
    by_baseline = []
    for lo, hi in zip(BASELINE_BINS_M[:-1], BASELINE_BINS_M[1:]):
        inbin = [r for r in records if lo <= r["baseline_m"] < hi]
        ok = [r for r in inbin if r["localized"] and r["translation_error_m"] is not None
              and r["translation_error_m"] <= ACCURATE[0] and r["rotation_error_deg"] <= ACCURATE[1]]
        by_baseline.append({"baseline_m": [lo, hi if np.isfinite(hi) else None], "n_queries": len(inbin),
                            "within_25cm_5deg": len(ok) / len(inbin) if inbin else None})
    n = len(records)
    return {"dataset": str(args.dataset), "reference_frame": args.reference_frame, "query_frames": args.query_frames,
            "frontend": args.frontend, "model": label,
            **({"oracle_noise": args.oracle_noise or "defaults"} if args.oracle_model else {}),
            "n_queries": n, "n_localized": sum(r["localized"] for r in records),
            "fraction_localized": sum(r["localized"] for r in records) / n,
            "median_translation_m": float(np.median(te)) if len(te) else None,
            "median_rotation_deg": float(np.median(re)) if len(re) else None,
            "by_baseline": by_baseline, "queries": records}


def run_files(args) -> tuple[list, str]:
    import numpy as np

    from mast3r_ros.datasets.readers import read_intrinsics, read_pose_matrix
    from mast3r_ros.localization.mapfree import MapFreeQuery

    if not (args.reference and args.reference_pose and args.intrinsics and args.queries):
        raise ValueError("the file form needs --reference IMG --reference-pose FILE --intrinsics FILE and QUERY images")
    from pathlib import Path

    K = read_intrinsics(Path(args.intrinsics))
    T_ref = read_pose_matrix(Path(args.reference_pose))
    if T_ref is None:
        raise ValueError(f"reference pose {args.reference_pose} holds non-finite values")
    depth = None
    if args.reference_depth:
        depth = (np.load(args.reference_depth).astype(np.float32) if args.reference_depth.endswith(".npy")
                 else _read_depth_png(args.reference_depth))
    dataset = None
    if args.dataset:
        from mast3r_ros.datasets.readers import open_dataset

        dataset = open_dataset(args.dataset)
    solve, label = _solver(args, dataset, None, None)
    ref = _read_rgb(args.reference)
    results = []
    for q in args.queries:
        try:
            results.append(solve(ref, K, depth, T_ref, MapFreeQuery(_read_rgb(q), K)))
        except ValueError as exc:
            print(f"relocalize: {q}: {exc}", file=sys.stderr)
            results.append(None)
    return results, label


def _read_depth_png(path: str):
    import cv2
    import numpy as np

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2 or raw.dtype != np.uint16:
        raise ValueError(f"reference depth {path} must be a single-channel 16-bit PNG in millimetres")
    return raw.astype(np.float32) / 1000.0


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from mast3r_ros.datasets.tum import write_tum
    from mast3r_ros.files.atomic_io import atomic_write_bytes

    dataset_form = args.reference_frame is not None or args.query_frames is not None
    try:
        if dataset_form:
            if not args.dataset:
                raise ValueError("--reference-frame / --query-frames need --dataset")
            report = run_dataset(args)
            atomic_write_bytes(args.out, json.dumps(report, indent=1).encode("utf-8"))
            print(f"relocalize: {report['n_localized']}/{report['n_queries']} localized, median "
                  f"{report['median_translation_m']} m / {report['median_rotation_deg']} deg  "
                  f"model: {report['model']} -> {args.out}")
            for b in report["by_baseline"]:
                print(f"  baseline {b['baseline_m']}: {b['n_queries']} queries, within 25 cm / 5 deg: "
                      f"{b['within_25cm_5deg']}")
            return 0
        results, label = run_files(args)
    except (ValueError, OSError) as exc:
        print(f"relocalize: error: {exc}", file=sys.stderr)
        return 2
    ok = [(i, r) for i, r in enumerate(results) if r is not None and r.T_map_cam is not None]
    write_tum(args.out, np.array([float(i) for i, _ in ok]),
              np.array([r.T_map_cam for _, r in ok], dtype=np.float64).reshape(-1, 4, 4))
    print(f"relocalize: {len(ok)}/{len(results)} queries localized ({', '.join(r.method for _, r in ok)})  "
          f"model: {label} -> {args.out}")
    return 0
