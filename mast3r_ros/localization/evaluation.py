"""Evaluation: build a map, localize every query frame, compare with ground truth, report.

Per-query pose errors are the camera-centre distance (m) and the geodesic rotation angle
(deg) between ``T_map_cam`` and the dataset's ``T_world_cam`` (the map frame is the dataset's
world frame). Trajectory-level APE statistics come from ``evo`` over the localized queries.
A query that returns no pose counts as not localized and as a failure in the recalls.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mast3r_ros.datasets.calibration import RgbdCalibration
from mast3r_ros.datasets.readers import RgbdDataset
from mast3r_ros.files.atomic_io import atomic_write_bytes
from mast3r_ros.geometry.transforms import pose_errors
from mast3r_ros.localization.frontends import FrontEnd
from mast3r_ros.localization.localizer import Localizer, LocalizerConfig
from mast3r_ros.map import KeyframeMap
from mast3r_ros.map.build import build_map

RECALL_THRESHOLDS = ((0.05, 5.0), (0.25, 2.0))


@dataclass
class QueryRecord:
    """One query's outcome. Poses [4,4] camera-to-map as nested lists (JSON friendly)."""
    index: int
    timestamp: float
    state: str
    localized: bool
    translation_error_m: float | None
    rotation_error_deg: float | None
    n_matches: int
    n_inliers: int
    kf_ids: list[int]
    timings: dict[str, float]
    error: str
    T_est: list | None = None
    T_gt: list | None = None
    covariance_diag: list | None = field(default=None)
    selection: str = ""  # how its keyframes were chosen: 'prior' (tracking) or 'retrieval'


def localize_frames(localizer: Localizer, dataset: RgbdDataset, spec, progress: bool = False,
                    calib: RgbdCalibration | None = None, use_depth: bool = False) -> list[QueryRecord]:
    """Localize the frames of ``dataset`` selected by ``spec`` in order (as a stream).

    ``use_depth`` passes each frame's depth (registered to colour with ``calib``) for RGB-D
    localization. Estimated poses (``T_est``) are expressed like the dataset's poses (for the
    7-Scenes calibration: the depth camera), so they compare directly with ``T_gt``.
    """
    calib = calib or RgbdCalibration()
    K = calib.colour_K(dataset.K)
    frames = dataset.frames(spec)
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, desc="localize", unit="query")
    records = []
    for f in frames:
        try:
            image = dataset.load_rgb(f)
            depth = (calib.depth_in_colour(dataset.load_depth(f), dataset.K, dataset.image_size)
                     if use_depth else None)
        except ValueError as exc:
            records.append(QueryRecord(f.index, f.timestamp, "LOST", False, None, None, 0, 0, [], {},
                                       str(exc)))
            continue
        r = localizer.localize(image, K, depth=depth, stamp=f.timestamp)
        T_est = None if r.T_map_cam is None else calib.dataset_pose(r.T_map_cam)
        te = re = None
        if T_est is not None and f.T_world_cam is not None:
            te, re = pose_errors(T_est, f.T_world_cam)
        records.append(QueryRecord(
            f.index, f.timestamp, r.state.value, r.ok, te, re, r.n_matches, r.n_inliers, r.kf_ids,
            dict(r.timings), r.error, None if T_est is None else T_est.tolist(),
            None if f.T_world_cam is None else f.T_world_cam.tolist(),
            None if r.covariance is None else np.diag(r.covariance).tolist(), r.selection))
    return records


def summarize(records: list[QueryRecord]) -> dict:
    """Aggregate metrics (medians over localized queries; recalls over all queries)."""
    n = len(records)
    loc = [r for r in records if r.localized and r.translation_error_m is not None]
    te = np.array([r.translation_error_m for r in loc])
    re = np.array([r.rotation_error_deg for r in loc])
    lat = np.array([r.timings.get("total", np.nan) for r in records if r.timings])
    out = {
        "n_queries": n,
        "n_localized": len([r for r in records if r.localized]),
        "fraction_localized": (len([r for r in records if r.localized]) / n) if n else 0.0,
        "median_translation_m": float(np.median(te)) if len(te) else None,
        "median_rotation_deg": float(np.median(re)) if len(re) else None,
        "median_latency_s": float(np.nanmedian(lat)) if len(lat) else None,
    }
    for tmax, rmax in RECALL_THRESHOLDS:
        hit = int(np.sum((te <= tmax) & (re <= rmax))) if len(te) else 0
        out[f"recall_{int(round(tmax * 100))}cm_{int(rmax)}deg"] = hit / n if n else 0.0
    stages = sorted({k for r in records for k in r.timings})
    out["median_stage_latency_s"] = {
        k: float(np.median([r.timings[k] for r in records if k in r.timings])) for k in stages}
    out["ape_translation_m"] = _evo_ape(loc)
    return out


def _evo_ape(loc: list[QueryRecord]) -> dict | None:
    """evo APE (translation part, no alignment: the map frame is the GT frame)."""
    if len(loc) < 2:
        return None
    from evo.core import metrics
    from evo.core.trajectory import PoseTrajectory3D

    stamps = np.array([r.timestamp for r in loc], dtype=np.float64)
    ref = PoseTrajectory3D(poses_se3=[np.array(r.T_gt) for r in loc], timestamps=stamps)
    est = PoseTrajectory3D(poses_se3=[np.array(r.T_est) for r in loc], timestamps=stamps)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))
    return {k: float(v) for k, v in ape.get_all_statistics().items()}


def evaluate(dataset: RgbdDataset, map_spec, query_spec, frontend: FrontEnd,
             config: LocalizerConfig | None = None, map_dir: str | Path | None = None,
             progress: bool = False, calib: RgbdCalibration | None = None,
             use_depth: bool = False) -> dict:
    """Build a map from ``map_spec`` frames, localize ``query_spec`` frames, return the report.

    The map goes to ``map_dir`` (overwritten) or a temporary folder that is deleted afterwards.
    ``calib`` / ``use_depth``: see :func:`build_map` and :func:`localize_frames`.
    """
    with tempfile.TemporaryDirectory(prefix="mast3r_eval_") as tmp:
        path = Path(map_dir) if map_dir else Path(tmp) / "map"
        build_map(dataset, map_spec, frontend, path, overwrite=True, progress=progress, calib=calib)
        with KeyframeMap.open(path) as kmap:
            map_poses = kmap.poses()
            localizer = Localizer(kmap, frontend, config)
            records = localize_frames(localizer, dataset, query_spec, progress, calib, use_depth)
    report = {"dataset": str(dataset.root), "map_frames": str(map_spec), "query_frames": str(query_spec),
              "frontend": frontend.name, "query_mode": "rgbd" if use_depth else "rgb",
              "rgbd_calibration": (calib or RgbdCalibration()).to_dict(),
              "n_keyframes": len(map_poses), **summarize(records),
              "queries": [asdict(r) for r in records]}
    cal = calib or RgbdCalibration()
    report["_map_positions"] = [cal.dataset_pose(T)[:3, 3].tolist() for T in map_poses.values()]
    return report


def write_report(report: dict, path: str | Path) -> Path:
    """Write the JSON report atomically (map positions kept only for plotting)."""
    doc = {k: v for k, v in report.items() if not k.startswith("_")}
    atomic_write_bytes(Path(path), json.dumps(doc, indent=1).encode("utf-8"))
    return Path(path)


def summary_table(report: dict) -> str:
    """Markdown summary table of the headline metrics."""
    def fmt(v, scale=1.0, unit=""):
        return "n/a" if v is None else f"{v * scale:.2f}{unit}"
    rows = [("queries localized", f"{report['n_localized']} / {report['n_queries']} "
                                  f"({100 * report['fraction_localized']:.1f} %)"),
            ("median translation error", fmt(report["median_translation_m"], 100, " cm")),
            ("median rotation error", fmt(report["median_rotation_deg"], 1, " deg")),
            ("recall 5 cm / 5 deg", f"{100 * report['recall_5cm_5deg']:.1f} %"),
            ("recall 25 cm / 2 deg", f"{100 * report['recall_25cm_2deg']:.1f} %"),
            ("median latency", fmt(report["median_latency_s"], 1000, " ms"))]
    for stage, v in report.get("median_stage_latency_s", {}).items():
        rows.append((f"  median {stage}", fmt(v, 1000, " ms")))
    ape = report.get("ape_translation_m")
    if ape:
        rows.append(("APE translation RMSE (evo)", fmt(ape["rmse"], 100, " cm")))
    width = max(len(r[0]) for r in rows)
    lines = [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines)


def plot_trajectories(report: dict, path: str | Path) -> Path:
    """Top-view (x-y of the map frame) plot: map keyframes, GT and estimated query positions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q = report["queries"]
    gt = np.array([r["T_gt"] for r in q if r["T_gt"] is not None]).reshape(-1, 4, 4)
    est = np.array([r["T_est"] for r in q if r["T_est"] is not None]).reshape(-1, 4, 4)
    kf = np.array(report.get("_map_positions", [])).reshape(-1, 3)
    fig, ax = plt.subplots(figsize=(7, 6))
    if len(kf):
        ax.scatter(kf[:, 0], kf[:, 1], s=8, c="0.6", label="map keyframes")
    if len(gt):
        ax.plot(gt[:, 0, 3], gt[:, 1, 3], "g-", lw=1.5, label="query ground truth")
    if len(est):
        ax.plot(est[:, 0, 3], est[:, 1, 3], "r.", ms=4, label="query estimates")
    ax.set_xlabel("map x [m]")
    ax.set_ylabel("map y [m]")
    ax.set_aspect("equal", adjustable="datalim")
    model = f" (model: {report['model']})" if report.get("model") else ""
    ax.set_title(f"{report['frontend']} front-end{model}: {report['n_localized']}/{report['n_queries']} localized")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
