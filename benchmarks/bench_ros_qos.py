"""Delivery benchmark: how many 30 Hz 640x480 frames played by `mast3r-ros play` reach the sync stage
of a localization node started with the shipped defaults (best-effort image subscription).

Rows, the same bag played into a node in each (``mast3r-ros launch localization --map M``, nothing
else set unless the row says so):
- Fast DDS's stock transports (512 KiB shared-memory segment) for the player (baseline);
- the player's default, config/fastdds_large_data.xml;
- with ``--stall S``: the node is frozen for S seconds every ``--stall-every`` seconds (SIGSTOP /
  SIGCONT of its process: a node starved on a loaded machine, or whose executor waits for the GIL),
  once with ``sync_queue_size:=10`` (the DDS history depth images had before: 10 frames, 0.33 s at
  30 Hz) and once with the shipped defaults.
Counts come from the node's /diagnostics (image_received, camera_info_received, image_missing by
stamp gaps), as a user would read them.

    .venv/bin/python -m benchmarks.bench_ros_qos --seconds 60 --stall 0.7   # from the repository root
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from std_srvs.srv import Trigger

from mast3r_ros.datasets.calibration import RgbdCalibration
from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.localization.frontends import make_frontend
from mast3r_ros.map.build import build_map
from mast3r_ros.paths import shared_dir
from mast3r_ros.ros.bag.bag_io import DatasetBagConfig, dataset_messages, write_bag
from test.live_client import (
    LiveClient,
    child_pids,
    ros_env,
    rss_mib,
    start_launch,
    stop_process_tree,
    unique_domain_id,
)

STOCK_PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<dds xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"><profiles>
<participant profile_name="stock" is_default_profile="true"><rtps/></participant>
</profiles></dds>
"""
KEYS = ("image_received", "camera_info_received", "image_missing", "synced")


def looped_messages(ds, seconds: float):
    """All stored 7-Scenes frames (every 3rd of 1000) at 30 Hz, looped with continuing stamps."""
    n = len(ds.frames("0:1000"))
    for k in range(math.ceil(seconds * 30.0 / n)):
        cfg = DatasetBagConfig(fps=90.0, time_offset_s=k * n / 30.0, ground_truth_topic="",
                               base_frame=DatasetBagConfig.base_frame if k == 0 else "")
        yield from dataset_messages(ds, "0:1000", cfg)


def node_counts(client: LiveClient) -> dict[str, int]:
    for arr in reversed(client.messages("diagnostics")):
        for st in arr.status:
            if st.name.endswith(": localization"):
                vals = {kv.key: kv.value for kv in st.values}
                return {k: int(vals.get(k, 0)) for k in KEYS}
    return dict.fromkeys(KEYS, 0)


def play(bag: Path, domain: int, env_extra: dict[str, str]) -> tuple[int, str]:
    exe = Path(sys.executable).parent / "mast3r-ros"
    env = {k: v for k, v in ros_env(domain).items() if k != "FASTRTPS_DEFAULT_PROFILES_FILE"}
    out = subprocess.run([str(exe), "play", str(bag), "--wait-for", "/camera/image_raw"],
                         env={**env, **env_extra}, capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if "done:" in x)
    return int(line.split("/camera/image_raw ")[1].split(",")[0]), out.stdout.splitlines()[0]


def node_pid(launch_pid: int) -> int:
    """The localization_node process under ``mast3r-ros launch``."""
    todo = [launch_pid]
    while todo:
        pid = todo.pop()
        try:
            if "localization_node" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                return pid
        except OSError:
            continue
        todo += child_pids(pid)
    raise RuntimeError("no localization_node process under the launch")


class Freezer:
    """SIGSTOP a process for ``stall_s`` every ``every_s`` seconds until stopped (always SIGCONT at the end)."""

    def __init__(self, pid: int, stall_s: float, every_s: float):
        self.pid, self.stall_s, self.every_s = pid, stall_s, every_s
        self.done = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        if self.stall_s > 0:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self) -> None:
        while not self.done.wait(self.every_s):
            os.kill(self.pid, signal.SIGSTOP)
            try:
                time.sleep(self.stall_s)
            finally:
                os.kill(self.pid, signal.SIGCONT)
            self.count += 1


def run_row(tmp: Path, node_args: list[str], player_env: dict[str, str], stall_s: float, every_s: float):
    """Start a node, play the bag once; (images played, play s, counter deltas, stalls, node RSS MiB after)
    or None."""
    domain = unique_domain_id()
    proc = start_launch("localization", domain, ["--map", str(tmp / "map"), *node_args], tmp / "launch.log")
    client = LiveClient(domain)
    try:
        if not client.wait_for_service(Trigger, "reset", 120):
            print((tmp / "launch.log").read_text()[-3000:])
            return None
        before = node_counts(client)
        t0 = time.monotonic()
        pid = node_pid(proc.pid)
        with Freezer(pid, stall_s, every_s) as freezer:
            played, _ = play(tmp / "bag", domain, player_env)
        took = time.monotonic() - t0
        time.sleep(2.5)  # two diagnostics periods, so the counters include the last frames
        after = node_counts(client)
        return played, took, {k: after[k] - before[k] for k in KEYS}, freezer.count, rss_mib(pid)
    finally:
        client.close()
        stop_process_tree(proc, signal.SIGTERM, 10.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the played bag")
    ap.add_argument("--stall", type=float, default=0.0, help="also freeze the node this long (s), see above")
    ap.add_argument("--stall-every", type=float, default=3.0, help="period of the freezes (s)")
    args = ap.parse_args()
    ds_dir = shared_dir() / "data" / "7scenes_redkitchen"
    ds = open_dataset(ds_dir)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_map(ds, "0:30:6", make_frontend("classical"), tmp / "map", calib=RgbdCalibration.load("7scenes"))
        write_bag(tmp / "bag", looped_messages(ds, args.seconds))
        (tmp / "stock.xml").write_text(STOCK_PROFILE)
        stock = {"FASTRTPS_DEFAULT_PROFILES_FILE": str(tmp / "stock.xml")}
        cases = [("stock Fast DDS transports (baseline)", [], stock, 0.0),
                 ("play default: fastdds_large_data.xml", [], {}, 0.0)]
        if args.stall > 0:
            cases += [(f"node frozen {args.stall:g} s every {args.stall_every:g} s, sync_queue_size:=10 "
                       "(image history before)", ["-p", "sync_queue_size:=10"], {}, args.stall),
                      (f"node frozen {args.stall:g} s every {args.stall_every:g} s, shipped defaults",
                       [], {}, args.stall)]
        for name, node_args, env, stall in cases:
            res = run_row(tmp, node_args, env, stall, args.stall_every)
            if res is None:
                return 1
            rows.append((name, *res))
    amx = "amx" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False
    import torch

    cpu = platform.processor() or platform.machine()
    print(f"\nCPU: {cpu}, {os.cpu_count()} cores, AMX {'yes' if amx else 'no'}, torch default threads "
          f"{torch.get_num_threads()} (the node's); node: shipped defaults (qos_image best_effort) unless said")
    print(f"| case | images played | play s | freezes | images at sync | % | camera_info at sync | "
          f"images missing (stamp gaps) | synced | node RSS MiB after |\n|{'---|' * 10}")
    for name, played, took, d, stalls, rss in rows:
        print(f"| {name} | {played} | {took:.1f} | {stalls} | {d['image_received']} | "
              f"{100.0 * d['image_received'] / max(played, 1):.1f} | {d['camera_info_received']} | "
              f"{d['image_missing']} | {d['synced']} | {rss:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
