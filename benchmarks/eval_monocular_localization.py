"""Errors of queries localized in a monocular map (``map build --frontend mast3r --optimize --no-depth``).

A monocular map's frame is its first keyframe's camera, not the dataset's world, so the query poses
written by ``mast3r-ros localize`` are compared with the ground truth after one SE(3) map -> world
transform fitted to the *keyframe* poses (``frame_alignment``; no scale: the map is metric). The queries
play no part in the fit. Prints the keyframe centre RMSE after that fit, the localized fraction and the
query errors.

Usage:
    .venv/bin/python benchmarks/eval_monocular_localization.py --map MAP --dataset DIR --frames SPEC \
        --est poses.tum
"""
from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from mast3r_ros.datasets.readers import open_dataset
    from mast3r_ros.datasets.tum import read_tum
    from mast3r_ros.geometry.transforms import pose_errors
    from mast3r_ros.map import KeyframeMap
    from mast3r_ros.mapping.monocular import frame_alignment

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--map", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--frames", required=True, help="the query frame spec given to `localize`")
    ap.add_argument("--est", required=True, help="TUM poses written by `localize`")
    args = ap.parse_args()
    ds = open_dataset(args.dataset)
    gt = {f.index: f for f in ds.frames()}
    with KeyframeMap.open(args.map) as kmap:
        kfs = [kmap.get_keyframe(i, load_image=False, load_depth=False) for i in kmap.keyframe_ids()]
    T_map = np.stack([k.T_map_cam for k in kfs])
    T_gt = np.stack([gt[k.frame_index].T_world_cam for k in kfs])
    G = frame_alignment(T_map, T_gt)
    kf_err = np.linalg.norm(T_map[:, :3, 3] @ G[:3, :3].T + G[:3, 3] - T_gt[:, :3, 3], axis=1)
    kf_rms = np.sqrt(np.mean(kf_err ** 2))
    queries = ds.frames(args.frames)
    stamps, T_est = read_tum(args.est)
    by_stamp = {round(float(t), 6): T for t, T in zip(stamps, T_est)}
    te, re = [], []
    for f in queries:
        T = by_stamp.get(round(float(f.timestamp), 6))
        if T is not None:
            t, r = pose_errors(G @ T, f.T_world_cam)
            te.append(t)
            re.append(r)
    te, re = np.array(te), np.array(re)
    print(f"keyframes: {len(kfs)}, SE(3) map->world fit on keyframe poses: centre RMSE {kf_rms * 100:.2f} cm")
    print(f"queries: {len(te)}/{len(queries)} localized ({len(te) / max(len(queries), 1) * 100:.1f} %)")
    if len(te):
        print(f"translation error: median {np.median(te) * 100:.2f} cm, 90th pct {np.percentile(te, 90) * 100:.2f} cm, "
              f"max {te.max() * 100:.2f} cm")
        print(f"rotation error: median {np.median(re):.2f} deg, 90th pct {np.percentile(re, 90):.2f} deg, "
              f"max {re.max():.2f} deg")
        print(f"within 5 cm / 2 deg: {np.mean((te <= 0.05) & (re <= 2.0)) * 100:.1f} % of localized")


if __name__ == "__main__":
    main()
