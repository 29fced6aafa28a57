"""Flood over DDS: a 30 Hz bag played by `mast3r-ros play` into a localization node started with the
shipped defaults. Whatever the machine's speed, the node accounts for every frame (processed,
dropped by the newest-frame queue, or rejected with a reason), processes the newest frame last,
keeps no backlog once the input stops (a FIFO would keep working through the old frames), and its
memory stays flat. Asserts behaviour, not speed: passes with the CPUs busy (two `yes` loops).
``benchmarks/bench_ros_flood.py`` runs the 10-minute version.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mast3r_ros.msg")

from std_srvs.srv import Trigger  # noqa: E402

from mast3r_ros.datasets.calibration import RgbdCalibration  # noqa: E402
from mast3r_ros.datasets.readers import open_dataset  # noqa: E402
from mast3r_ros.localization.frontends import make_frontend  # noqa: E402
from mast3r_ros.map.build import build_map  # noqa: E402
from mast3r_ros.ros.bag.bag_play import PROFILE_ENV, large_data_profile  # noqa: E402
from mast3r_ros.ros.compat.conversions import stamp_to_ns  # noqa: E402
from mast3r_ros.ros.core.params import LocalizationParams  # noqa: E402

from .live_client import (  # noqa: E402
    LiveClient,
    child_pids,
    ros_env,
    rss_mib,
    start_launch,
    stop_process_tree,
    unique_domain_id,
)

FPS = 90.0  # 7-Scenes keeps every 3rd frame: index / 90 s = 30 Hz


def _cli(*args: str) -> list[str]:
    exe = Path(sys.executable).parent / "mast3r-ros"
    return ([str(exe)] if exe.exists() else [sys.executable, "-m", "mast3r_ros.cli"]) + list(args)


def _make_bag(ds_dir: Path, frames: str, offset_s: float, out: Path) -> list[int]:
    """make-bag of every 3rd frame in START:STOP at 30 Hz from ``offset_s``; the image stamps (ns)."""
    offset_s = float(f"{offset_s:.3f}")  # as make-bag parses it, so the stamps match to the ns
    subprocess.run(_cli("make-bag", "--dataset", str(ds_dir), "--frames", frames, "--fps", str(FPS),
                        "--rgbd-calib", "7scenes", "--no-depth", "--time-offset", f"{offset_s:.3f}",
                        "--out", str(out)), check=True, capture_output=True)
    start, stop = (int(x) for x in frames.split(":"))
    return [round((i / FPS + offset_s) * 1e9) for i in range(start, stop, 3)]


def _play(bag: Path, domain: int, rss_pid: int, rss: list[float]) -> float:
    """Play the bag, sampling the node's RSS meanwhile; returns the monotonic time play exited."""
    proc = subprocess.Popen(_cli("play", str(bag), "--wait-for", "/camera/image_raw"), env=ros_env(domain),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        rss.append(rss_mib(rss_pid))
        time.sleep(0.5)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    return time.monotonic()


def test_flood_keeps_newest_no_backlog_memory_flat(data_dir, tmp_path):
    ds_dir = data_dir / "7scenes_redkitchen"
    build_map(open_dataset(ds_dir), "0:30:6", make_frontend("classical"), tmp_path / "map",
              calib=RgbdCalibration.load("7scenes"))
    # stamps near the wall clock, so status.latency (now - stamp) is a latency plus a constant; in the
    # past by the time they are played (the node refuses stamps more than 10 s ahead of its clock)
    t0 = time.time()
    _make_bag(ds_dir, "0:90", t0, tmp_path / "warm")
    stamps = _make_bag(ds_dir, "90:600", t0 + 1.0, tmp_path / "flood")  # 170 frames, 5.7 s at 30 Hz
    domain = unique_domain_id()
    # shipped defaults: the bag has no odometry, publish_odom_tf auto covers it
    proc = start_launch("localization", domain, ["--map", str(tmp_path / "map")], tmp_path / "launch.log")
    client = LiveClient(domain)
    try:
        assert client.wait_for_service(Trigger, "reset", 90), (tmp_path / "launch.log").read_text()[-3000:]
        (node_pid,) = child_pids(proc.pid)
        # `mast3r-ros launch` gives the node the same Fast DDS profile `mast3r-ros play` loads
        environ = Path(f"/proc/{node_pid}/environ").read_text().split("\0")
        node_env = dict(kv.split("=", 1) for kv in environ if "=" in kv)
        assert node_env.get(PROFILE_ENV) == str(large_data_profile())
        assert f"launch: Fast DDS profile {large_data_profile()}" in (tmp_path / "launch.log").read_text()
        warm_rss: list[float] = []
        _play(tmp_path / "warm", domain, node_pid, warm_rss)        # DDS matching, first-frame caches
        client.wait_for(lambda: len(client.messages("status")) > 0, 20.0)
        rss = [rss_mib(node_pid)]
        private = [rss_mib(node_pid, "RssAnon")]
        with client.lock:
            seen_before = len(client.received["status"])
        ended = _play(tmp_path / "flood", domain, node_pid, rss)
        newest = set(stamps[-3:])  # what the newest-first assertion below accepts as processed last
        client.wait_for(lambda: any(stamp_to_ns(m.header.stamp) in newest for m in client.messages("status")), 20.0)
        time.sleep(1.0)  # a status that would still come after the newest one would show now
        rss.append(rss_mib(node_pid))
        private.append(rss_mib(node_pid, "RssAnon"))
        with client.lock:
            recv = [(t, m) for t, m in client.received["status"][seen_before:]
                    if stamp_to_ns(m.header.stamp) in set(stamps)]
    finally:
        client.close()
        _, left = stop_process_tree(proc, signal.SIGTERM, 10.0)
    assert not left
    rejected = [m for _, m in recv if m.message.startswith("unsynchronised")]
    done = [(t, m) for t, m in recv if not m.message.startswith("unsynchronised")]
    order = [stamp_to_ns(m.header.stamp) for _, m in done]
    dropped = sum(int(m.frames_dropped) for _, m in done)
    processing = [float(m.time_total) for _, m in done]
    lat = np.array([float(m.latency) for _, m in done])
    print(f"\nflood: {len(stamps)} played, {len(done)} processed, {dropped} dropped, {len(rejected)} rejected; "
          f"processing median {np.median(processing):.3f} s; latency first/last third "
          f"{np.median(lat[:len(lat) // 3]):.2f}/{np.median(lat[-(len(lat) // 3):]):.2f} s (+ constant); "
          f"RSS {rss[0]:.0f} -> {rss[-1]:.0f} MiB (max {max(rss):.0f}), "
          f"private {private[0]:.0f} -> {private[1]:.0f} MiB")
    # every frame is accounted for: processed, dropped by the newest-frame queue, or rejected
    # (measured on the shared 2-core machine: 0 rejected, 170/170 and, with two `yes` loops, 169/170)
    assert len(done) + dropped + len(rejected) >= 0.95 * len(stamps)
    assert len(rejected) <= 0.05 * len(stamps)
    # newest first: stamps processed in order, and the last one processed is the newest that arrived: one of
    # the last three played (best effort may lose the final sample: measured once, 169/170 accounted for and
    # the frame before the last processed last)
    back = [(n, [m.message for _, m in done][n - 1:n + 1]) for n in range(1, len(order)) if order[n] < order[n - 1]]
    assert not back and order[-1] in stamps[-3:], (back, order[-1], stamps[-3:])
    # no backlog: once the input stopped, at most the frame in progress and the newest one remain
    assert sum(t > ended for t, _ in done) <= 2
    # latency does not grow (a FIFO behind a slower worker grows by the input rate x processing time)
    third = max(len(lat) // 3, 1)
    assert np.median(lat[-third:]) - np.median(lat[:third]) < 2 * max(processing) + 0.5
    # memory flat: private memory (RssAnon) grows by at most what the design holds -- the input's DDS
    # history of sync_queue_size frames (60 x 0.88 MiB 640x480 rgb8) -- plus 10 MiB; a FIFO backlog of
    # this flood would hold 170 x 0.88 = 150 MiB. Measured: +8 and +9 MiB (during a suite run under two
    # `yes` loops). VmRSS also counts the touched pages of the player's 32 MiB shared-memory segment
    # (bounded by its size, not by a backlog): it grew +40 MiB once under two `yes` loops (split not
    # recorded), so it is printed, not asserted.
    capacity_mib = LocalizationParams().sync_queue_size * 640 * 480 * 3 / 2**20
    assert private[1] - private[0] < capacity_mib + 10
