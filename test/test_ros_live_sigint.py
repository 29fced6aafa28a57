"""Ctrl-C exits cleanly: 20 SIGINTs at random moments from the node's first log line on (map load
and warm-up, waiting, processing frames), each process exits with code 0 and no traceback or
RCLError. Shipped defaults. (Ctrl-C during the Python imports, before the first line:
`test_ros_sigint_imports.py`.)"""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mast3r_ros.msg")

from mast3r_ros.datasets.readers import open_dataset  # noqa: E402
from mast3r_ros.localization.frontends import make_frontend  # noqa: E402
from mast3r_ros.map.build import build_map  # noqa: E402
from mast3r_ros.paths import REPO_ROOT  # noqa: E402
from mast3r_ros.ros.compat.conversions_geometry import T_BODY_OPTICAL  # noqa: E402

from .live_client import LiveClient, ros_env, unique_domain_id  # noqa: E402

TRIES, PARALLEL = 20, 10


def _node_cmd(map_dir: Path, namespace: str) -> list[str]:
    exe = Path(sys.executable).parent / "localization_node"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mast3r_ros.ros.nodes.localization_node"]
    return cmd + ["--ros-args", "--params-file", str(REPO_ROOT / "config" / "localization.yaml"),
                  "-r", f"__ns:=/{namespace}", "-r", "image:=/camera/image_raw",
                  "-r", "camera_info:=/camera/camera_info",
                  "-p", f"map_path:={map_dir}"]


def test_sigint_at_random_moments_exits_cleanly(data_dir, tmp_path):
    ds = open_dataset(data_dir / "7scenes_redkitchen")
    build_map(ds, "0:30:6", make_frontend("classical"), tmp_path / "map")
    domain = unique_domain_id()
    client = LiveClient(domain)
    client.publish_static_tf("base_link", "camera_optical_frame", T_BODY_OPTICAL)
    rng = random.Random(13)
    frames = ds.frames("3:30:3")
    results = []
    try:
        for round_ in range(TRIES // PARALLEL):
            delays = [rng.uniform(0.0, 5.0) for _ in range(PARALLEL)]
            procs, start = [], [None] * PARALLEL
            for i in range(PARALLEL):
                log = open(tmp_path / f"node{round_}_{i}.log", "wb")
                # one namespace each: a second node of one name in one domain refuses to start
                cmd = _node_cmd(tmp_path / "map", f"mast3r{i}")
                procs.append((subprocess.Popen(cmd, env=ros_env(domain), stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True),
                              delays[i], tmp_path / f"node{round_}_{i}.log"))
            k = 0
            deadline = time.monotonic() + 120
            while any(p.poll() is None for p, _, _ in procs) and time.monotonic() < deadline:
                f = frames[k % len(frames)]
                k += 1
                client.publish_frame(time.time_ns(), ds.load_rgb(f), ds.K, "camera_optical_frame")
                for i, (p, delay, log) in enumerate(procs):
                    if start[i] is None and "[INFO]" in log.read_text(errors="replace"):
                        start[i] = time.monotonic()
                    if p.poll() is None and start[i] is not None and time.monotonic() >= start[i] + delay:
                        p.send_signal(signal.SIGINT)
                        when_sent = time.monotonic()
                        try:
                            p.wait(15)
                        except subprocess.TimeoutExpired:
                            p.kill()
                            p.wait(5)
                        results.append((p.returncode, time.monotonic() - when_sent))
                time.sleep(0.1)
            for p, _, log in procs:
                text = log.read_text(errors="replace")
                assert p.returncode == 0, f"exit code {p.returncode}:\n{text[-3000:]}"
                for bad in ("Traceback", "RCLError", "context is not valid", "failed:"):
                    assert bad not in text, text[-3000:]
    finally:
        client.close()
    assert len(results) == TRIES
    print(f"\nsigint: {TRIES} of {TRIES} clean exits, slowest {max(t for _, t in results):.2f} s")
