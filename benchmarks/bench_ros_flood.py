"""Flood benchmark: a live localization node fed 30 Hz camera frames over DDS for a long time.

Prints a table: what was published/processed/dropped, latency, and the node's RSS sampled over
the run (start = after a warm-up flood, end = after the run). Baseline measured in the same run:
the ROS-free core on the same frames (no DDS, no executor), i.e. the processing rate the node
can at best reach.

    .venv/bin/python benchmarks/bench_ros_flood.py --minutes 10
"""
from __future__ import annotations

import argparse
import json
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
from std_srvs.srv import Trigger

from mast3r_ros.datasets.calibration import RgbdCalibration
from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.localization.frontends import make_frontend
from mast3r_ros.map.build import build_map
from mast3r_ros.paths import shared_dir
from mast3r_ros.ros.core.frames import Frame
from mast3r_ros.ros.core.localization_core import LocalizationCore
from mast3r_ros.ros.core.params import LocalizationParams
from mast3r_ros.ros.testing.flood import flood
from mast3r_ros.ros.testing.live_client import (
    LiveClient,
    child_pids,
    start_launch,
    stop_process_tree,
    unique_domain_id,
)

CAM = "camera_optical"


def baseline_core_s(map_dir: Path, images, K) -> float:
    """Median seconds per frame of the ROS-free core on the same frames."""
    core = LocalizationCore(LocalizationParams(map_path=str(map_dir), base_frame=CAM))
    times = []
    for i, img in enumerate(images * 2):
        t = time.perf_counter()
        core.process(Frame(i + 1, CAM, img, K, None, (img.shape[1], img.shape[0])), np.eye(4), np.eye(4))
        times.append(time.perf_counter() - t)
    core.close()
    return float(np.median(times[len(images):]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=30.0, help="input rate (Hz)")
    ap.add_argument("--qos", default="reliable", choices=["reliable", "best_effort"])
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args()
    ds = open_dataset(shared_dir() / "data" / "7scenes_redkitchen")
    cal = RgbdCalibration.load("7scenes")
    K = cal.colour_K(ds.K)
    images = [ds.load_rgb(f) for f in ds.frames("3:60:6")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_map(ds, "0:60:6", make_frontend("classical"), tmp / "map", calib=cal)
        base_s = baseline_core_s(tmp / "map", images, K)
        domain = unique_domain_id()
        proc = start_launch("localization", domain, [
            "--map", str(tmp / "map"), "-p", f"qos_image:={args.qos}", "-p", f"base_frame:={CAM}",
            "-p", "publish_odom_tf:=true"], tmp / "launch.log")
        client = LiveClient(domain, reliable_images=args.qos == "reliable")
        try:
            if not client.wait_for_service(Trigger, "reset", 120):
                print((tmp / "launch.log").read_text()[-3000:])
                return 1
            (pid,) = child_pids(proc.pid)
            flood(client, images, K, CAM, 10.0, args.rate, pid)  # warm-up: DDS matching, caches
            res = flood(client, images, K, CAM, 60.0 * args.minutes, args.rate, pid, rss_every_s=30.0)
        finally:
            client.close()
            took, left = stop_process_tree(proc, signal.SIGTERM, 10.0)
    s = res.summary()
    s.update({"minutes": args.minutes, "qos": args.qos, "baseline_core_s_per_frame": base_s,
              "sigterm_exit_s": took, "left_running": left})
    print(f"| {'metric':<28} | value |\n|{'-' * 30}|-------|")
    for k, v in s.items():
        print(f"| {k:<28} | {v:.3f} |" if isinstance(v, float) else f"| {k:<28} | {v} |")
    print("RSS over the run (s, MiB): " + ", ".join(f"({t:.0f}, {m:.0f})" for t, m in res.rss_mib))
    if args.json:
        Path(args.json).write_text(json.dumps({**s, "rss_mib": res.rss_mib}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
