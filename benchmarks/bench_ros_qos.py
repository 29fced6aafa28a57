"""Delivery benchmark: how many 30 Hz 640x480 frames played by `mast3r-ros play` reach the sync stage
of a localization node started with the shipped defaults (best-effort image subscription).

One node (``mast3r-ros launch localization --map M``, nothing else set), the same bag played twice:
baseline = Fast DDS's stock transports (512 KiB shared-memory segment), then the player's default,
config/fastdds_large_data.xml. Counts come from the node's /diagnostics (image_received,
camera_info_received, image_missing by stamp gaps), as a user would read them.

    .venv/bin/python benchmarks/bench_ros_qos.py --seconds 60
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
import time
from pathlib import Path

from std_srvs.srv import Trigger

from mast3r_ros.datasets.calibration import RgbdCalibration
from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.localization.frontends import make_frontend
from mast3r_ros.map.build import build_map
from mast3r_ros.paths import shared_dir
from mast3r_ros.ros.bag.bag_io import DatasetBagConfig, dataset_messages, write_bag
from mast3r_ros.ros.testing.live_client import LiveClient, ros_env, start_launch, stop_process_tree, unique_domain_id

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the played bag")
    args = ap.parse_args()
    ds_dir = shared_dir() / "data" / "7scenes_redkitchen"
    ds = open_dataset(ds_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_map(ds, "0:30:6", make_frontend("classical"), tmp / "map", calib=RgbdCalibration.load("7scenes"))
        write_bag(tmp / "bag", looped_messages(ds, args.seconds))
        (tmp / "stock.xml").write_text(STOCK_PROFILE)
        domain = unique_domain_id()
        proc = start_launch("localization", domain, ["--map", str(tmp / "map")], tmp / "launch.log")
        client = LiveClient(domain)
        rows = []
        try:
            if not client.wait_for_service(Trigger, "reset", 120):
                print((tmp / "launch.log").read_text()[-3000:])
                return 1
            for name, env in (("stock Fast DDS transports (baseline)", {"FASTRTPS_DEFAULT_PROFILES_FILE":
                                                                        str(tmp / "stock.xml")}),
                              ("play default: fastdds_large_data.xml", {})):
                client.call(Trigger, "reset", Trigger.Request())  # the bag's stamps start over
                before = node_counts(client)
                t0 = time.monotonic()
                played, how = play(tmp / "bag", domain, env)
                took = time.monotonic() - t0
                time.sleep(2.5)  # two diagnostics periods, so the counters include the last frames
                after = node_counts(client)
                rows.append((name, played, took, {k: after[k] - before[k] for k in KEYS}, how))
        finally:
            client.close()
            stop_process_tree(proc, signal.SIGTERM, 10.0)
    amx = "amx" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False
    import torch

    cpu = platform.processor() or platform.machine()
    print(f"\nCPU: {cpu}, {os.cpu_count()} cores, AMX {'yes' if amx else 'no'}, torch default threads "
          f"{torch.get_num_threads()} (the node's); node: shipped defaults (qos_image best_effort)")
    print(f"| transport | images played | play s | images at sync | % | camera_info at sync | "
          f"images missing (stamp gaps) | synced |\n|{'---|' * 8}")
    for name, played, took, d, _ in rows:
        print(f"| {name} | {played} | {took:.1f} | {d['image_received']} | "
              f"{100.0 * d['image_received'] / max(played, 1):.1f} | {d['camera_info_received']} | "
              f"{d['image_missing']} | {d['synced']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
