"""`mast3r-ros evaluate-trajectory`: ATE / RPE of an estimated trajectory against ground truth (evo).

The estimate (TUM file, e.g. a map's ``trajectory_tum.txt``) is associated with the ground truth
by timestamp, aligned with SE(3) Umeyama (no scale: our maps are metric), then evo computes the
absolute trajectory error (translation RMSE etc.) and the relative pose error between
consecutive associated poses. ``--gt`` may be a TUM file or a dataset folder (7-Scenes / TUM
RGB-D), whose frame timestamps (the frame index when it has none) and poses are used.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

NAME = "evaluate-trajectory"
HELP = "ATE/RPE (evo) of an estimated TUM trajectory vs ground truth, after SE(3) alignment"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, help="ground truth: TUM file or dataset folder")
    parser.add_argument("--est", required=True, help="estimated trajectory (TUM file)")
    parser.add_argument("--rgbd-calib", default=None,
                        help="the estimate holds colour-camera poses of this RGB-D rig (preset or YAML); "
                             "convert them to the camera the ground truth describes (e.g. 7scenes)")
    parser.add_argument("--max-diff", type=float, default=0.01, help="timestamp association tolerance (s)")
    parser.add_argument("--plot", default=None, help="write a top-view plot of the aligned trajectories (PNG)")
    parser.add_argument("--json", default=None, help="write the metrics as JSON")


def _ground_truth(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps [N], T_world_cam [N,4,4]) from a TUM file or a dataset folder."""
    from pathlib import Path

    from mast3r_ros.datasets.tum import read_tum

    if Path(path).is_dir():
        from mast3r_ros.datasets.readers import open_dataset

        frames = [f for f in open_dataset(path).frames() if f.T_world_cam is not None]
        return np.array([f.timestamp for f in frames]), np.stack([f.T_world_cam for f in frames])
    return read_tum(path)


def evaluate_trajectory(gt: tuple[np.ndarray, np.ndarray], est: tuple[np.ndarray, np.ndarray],
                        max_diff: float = 0.01) -> tuple[dict, np.ndarray, np.ndarray]:
    """Metrics dict plus aligned positions (gt [K,3], est [K,3]) of the associated poses.

    Args:
        gt, est: (timestamps [N] seconds, camera-to-world poses [N,4,4] metres).
    """
    from evo.core import metrics, sync
    from evo.core.trajectory import PoseTrajectory3D

    from mast3r_ros.geometry.transforms import with_nearest_rotation

    # evo's SO(3) check rejects rotations orthonormal to ~4e-4 only (7-Scenes ground truth)
    ref, traj = (PoseTrajectory3D(poses_se3=list(with_nearest_rotation(T)), timestamps=np.asarray(t, np.float64))
                 for t, T in (gt, est))
    ref, traj = sync.associate_trajectories(ref, traj, max_diff=max_diff)
    if traj.num_poses < 3:
        raise ValueError(f"only {traj.num_poses} poses could be associated with the ground truth")
    traj.align(ref, correct_scale=False)
    out = {"n_poses": int(traj.num_poses)}
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, traj))
    out["ate_m"] = {k: float(v) for k, v in ape.get_all_statistics().items()}
    ape_r = metrics.APE(metrics.PoseRelation.rotation_angle_deg)
    ape_r.process_data((ref, traj))
    out["ape_rot_deg"] = {k: float(v) for k, v in ape_r.get_all_statistics().items()}
    for rel, key in ((metrics.PoseRelation.translation_part, "rpe_m"),
                     (metrics.PoseRelation.rotation_angle_deg, "rpe_deg")):
        rpe = metrics.RPE(rel, delta=1, delta_unit=metrics.Unit.frames, all_pairs=False)
        rpe.process_data((ref, traj))
        out[key] = {k: float(v) for k, v in rpe.get_all_statistics().items()}
    return out, ref.positions_xyz, traj.positions_xyz


def plot_aligned(gt_xyz: np.ndarray, est_xyz: np.ndarray, path: str, title: str) -> None:
    """Top view (x-y) of the ground truth and the aligned estimate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    ax.plot(gt_xyz[:, 0], gt_xyz[:, 1], "g-", lw=1.5, label="ground truth")
    ax.plot(est_xyz[:, 0], est_xyz[:, 1], "r.-", lw=0.8, ms=3, label="estimate (SE(3)-aligned)")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from mast3r_ros.cli.common import output_file
    from mast3r_ros.datasets.tum import read_tum
    from mast3r_ros.files.atomic_io import atomic_write_bytes

    for flag in ("json", "plot"):
        if getattr(args, flag):
            output_file(getattr(args, flag), f"--{flag}")
    try:
        gt = _ground_truth(args.gt)
        stamps, T = read_tum(args.est)
        if args.rgbd_calib:
            from mast3r_ros.datasets.calibration import RgbdCalibration

            cal = RgbdCalibration.load(args.rgbd_calib)
            T = np.stack([cal.dataset_pose(P) for P in T]) if len(T) else T
        m, gxyz, exyz = evaluate_trajectory(gt, (stamps, T), args.max_diff)
    except (ValueError, OSError) as exc:
        print(f"evaluate-trajectory: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    rows = [("poses associated", f"{m['n_poses']}"),
            ("ATE RMSE (SE(3)-aligned)", f"{100 * m['ate_m']['rmse']:.2f} cm"),
            ("ATE median / max", f"{100 * m['ate_m']['median']:.2f} / {100 * m['ate_m']['max']:.2f} cm"),
            ("rotation error RMSE", f"{m['ape_rot_deg']['rmse']:.2f} deg"),
            ("RPE translation RMSE", f"{100 * m['rpe_m']['rmse']:.2f} cm"),
            ("RPE rotation RMSE", f"{m['rpe_deg']['rmse']:.2f} deg")]
    w = max(len(r[0]) for r in rows)
    print(f"| {'metric'.ljust(w)} | value |\n|{'-' * (w + 2)}|-------|")
    print("\n".join(f"| {k.ljust(w)} | {v} |" for k, v in rows))
    if args.json:
        atomic_write_bytes(args.json, json.dumps(m, indent=1).encode("utf-8"))
    if args.plot:
        plot_aligned(gxyz, exyz, args.plot, f"ATE RMSE {100 * m['ate_m']['rmse']:.2f} cm ({m['n_poses']} poses)")
        print(f"plot -> {args.plot}")
    return 0
