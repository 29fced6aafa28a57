"""Flood a running localization node with camera frames at a fixed rate and measure it.

Used by the short live test and by ``benchmarks/bench_ros_flood.py`` (the 10-minute run). The
node is slower than the input, so it must drop frames, always take the newest one (latency stays
bounded instead of growing) and keep its memory flat.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from mast3r_ros.ros.compat.conversions import stamp_to_ns
from mast3r_ros.ros.testing.live_client import LiveClient, rss_mib


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
