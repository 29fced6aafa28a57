"""Flood benchmark: a live localization node fed 30 Hz camera frames over DDS for a long time.

Prints a table: what was published/processed/dropped, latency, and the node's RSS sampled over
the run (start = after a warm-up flood, end = after the run). Baseline measured in the same run:
the ROS-free core on the same frames (no DDS, no executor), i.e. the processing rate the node
can at best reach.

    .venv/bin/python -m benchmarks.bench_ros_flood --minutes 10   # from the repository root

The node is slower than the input, so it must drop frames, always take the newest one (latency stays
bounded instead of growing) and keep its memory flat.
"""
from __future__ import annotations

import argparse
import json
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from std_srvs.srv import Trigger

from mast3r_ros.datasets.calibration import RgbdCalibration
from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.localization.frontends import make_frontend
from mast3r_ros.map.build import build_map
from mast3r_ros.paths import shared_dir
from mast3r_ros.ros.compat.conversions import stamp_to_ns
from mast3r_ros.ros.core.frames import Frame
from mast3r_ros.ros.core.localization_core import LocalizationCore
from mast3r_ros.ros.core.params import LocalizationParams
from test.live_client import (
    LiveClient,
    child_pids,
    rss_mib,
    start_launch,
    stop_process_tree,
    unique_domain_id,
)

CAM = "camera_optical"


@dataclass
class FloodResult:
    published: int = 0
    processed: int = 0                    # frames the node processed (a status that is not a rejection)
    rejected: int = 0                     # frames reported as unsynchronised (e.g. camera_info lost)
    localized: int = 0
    dropped_reported: int = 0             # sum of status.frames_dropped
    latencies_s: list[float] = field(default_factory=list)  # status.latency per processed frame
    rss_mib: list[tuple[float, float]] = field(default_factory=list)  # (elapsed s, node RSS MiB)
    publish_hz: float = 0.0
    last_frame_processed: bool = False    # the final status is for the last frame published (newest)
    processing_s: list[float] = field(default_factory=list)  # status.time_total per processed frame

    def summary(self) -> dict:
        lat = np.array(self.latencies_s) if self.latencies_s else np.array([np.nan])
        r = [m for _, m in self.rss_mib]
        return {"published": self.published, "publish_hz": round(self.publish_hz, 2),
                "processed": self.processed, "rejected": self.rejected, "localized": self.localized,
                "dropped_reported": self.dropped_reported,
                "latency_median_s": float(np.median(lat)), "latency_p95_s": float(np.percentile(lat, 95)),
                "latency_max_s": float(np.max(lat)),
                "rss_start_mib": r[0] if r else float("nan"), "rss_end_mib": r[-1] if r else float("nan"),
                "rss_max_mib": max(r) if r else float("nan"),
                "processing_median_s": _third(self.processing_s, None),
                "latency_first_third_s": _third(self.latencies_s, 0),
                "latency_last_third_s": _third(self.latencies_s, 2),
                "last_frame_processed": self.last_frame_processed}


def _third(values: list[float], k: int | None) -> float:
    """Median of the k-th third of ``values`` (all of them for k None or fewer than 3)."""
    n = len(values) // 3
    part = values[k * n:(k + 1) * n] if n and k is not None else values
    return float(np.median(part)) if part else float("nan")


def flood(client: LiveClient, images: list[np.ndarray], K: np.ndarray, frame_id: str, duration_s: float,
          rate_hz: float = 30.0, node_pid: int | None = None, rss_every_s: float = 5.0) -> FloodResult:
    """Publish ``images`` round-robin at ``rate_hz`` for ``duration_s``, stamped at publication.

    Args:
        images: [H,W,3] uint8 RGB frames; K: [3,3] their intrinsics.
    """
    res = FloodResult()
    before = {stamp_to_ns(m.header.stamp) for m in client.messages("status")}
    sent: list[tuple[float, int]] = []   # (monotonic publish time, stamp)
    t0 = time.monotonic()
    next_rss = 0.0
    period = 1.0 / rate_hz
    i = 0
    while (now := time.monotonic()) - t0 < duration_s:
        stamp = time.time_ns()
        client.publish_frame(stamp, images[i % len(images)], K, frame_id)
        sent.append((time.monotonic(), stamp))
        i += 1
        if node_pid is not None and now - t0 >= next_rss:
            res.rss_mib.append((now - t0, rss_mib(node_pid)))
            next_rss += rss_every_s
        time.sleep(max(0.0, t0 + i * period - time.monotonic()))
    res.published, res.publish_hz = i, i / max(time.monotonic() - t0, 1e-9)
    stamps = {s for _, s in sent}
    last = sent[-1][1] if sent else None
    client.wait_for(lambda: any(stamp_to_ns(m.header.stamp) == last for m in client.messages("status")), 15.0)
    if node_pid is not None:
        res.rss_mib.append((time.monotonic() - t0, rss_mib(node_pid)))
    status = [m for m in client.messages("status")
              if stamp_to_ns(m.header.stamp) in stamps and stamp_to_ns(m.header.stamp) not in before]
    rejected = [m for m in status if m.message.startswith("unsynchronised")]
    status = [m for m in status if not m.message.startswith("unsynchronised")]
    res.processed, res.rejected = len(status), len(rejected)
    res.localized = sum(m.pose_published for m in status)
    res.dropped_reported = sum(int(m.frames_dropped) for m in status)
    status.sort(key=lambda m: stamp_to_ns(m.header.stamp))
    res.latencies_s = [float(m.latency) for m in status]
    res.processing_s = [float(m.time_total) for m in status]
    res.last_frame_processed = bool(status) and stamp_to_ns(status[-1].header.stamp) == last
    return res


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
