"""`mast3r-ros launch MODE`: start the node process(es) of ``mast3r.launch.py`` from this venv.

Why: ``ros2 launch`` is not installable as a wheel. The node list comes from the same tested
function as the launch file (:func:`mast3r_ros.ros.nodes.launch_description.describe`). Children run
in their own sessions, so Ctrl-C / SIGTERM reach this process only; it forwards SIGINT (rclpy's
clean shutdown), waits, then escalates to SIGTERM and SIGKILL so nothing is left running.
The nodes get the Fast DDS large-data profile, as `mast3r-ros play` does (their latched cloud_map
is a large sample too), unless the user chose a profile or another RMW.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

NAME = "launch"
HELP = "start the localization or mapping node (like `ros2 launch mast3r_ros mast3r.launch.py`)"
STOP_GRACE_S = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mode", choices=["localization", "mapping"])
    parser.add_argument("--map", default="", help="map folder (localization: load; mapping: save to)")
    parser.add_argument("--params", default="", help="ROS 2 parameter YAML (default config/<mode>.yaml)")
    parser.add_argument("--checkpoint", default="", help="local MASt3R checkpoint (.pth)")
    parser.add_argument("--frontend", default="", choices=["", "mast3r", "classical"])
    parser.add_argument("--namespace", default="mast3r")
    parser.add_argument("--image-topic", default="/camera/image_raw")
    parser.add_argument("--camera-info-topic", default="/camera/camera_info")
    parser.add_argument("--depth-topic", default="/camera/depth/image_raw")
    parser.add_argument("--base-frame", default="", help="override base_frame")
    parser.add_argument("--publish-odom-tf", default="", choices=["", "auto", "true", "false"],
                        help="override publish_odom_tf (default from the params file: auto)")
    parser.add_argument("--qos-image", default="", choices=["", "best_effort", "reliable"],
                        help="override qos_image (image/camera_info/depth reliability)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warn", "error", "fatal"])
    parser.add_argument("--use-sim-time", action="store_true")
    parser.add_argument("--rviz", action="store_true", help="also start rviz2 (needs a ROS install)")
    parser.add_argument("--lifecycle", action="store_true",
                        help="managed (lifecycle) node: starts unconfigured; configure/activate it over "
                             "<node>/change_state (nav2 lifecycle_manager)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra node parameter (repeatable), passed as --ros-args -p")


def check_parameter_names(mode: str, params_file: str, items: list[str]) -> None:
    """ValueError (one line) for a parameter name the node does not have, in the params file or a
    ``-p NAME:=VALUE``: an old flat name says its new name, an unknown one the closest known name.
    Values are the node's to check (it stops with the reason)."""
    from mast3r_ros.config_fields import unknown_name
    from mast3r_ros.ros.core.params import RENAMED, LocalizationParams, MappingParams, load_params_file, renamed_reason
    from mast3r_ros.ros.nodes.launch_description import EXECUTABLES, default_params_file

    specs = {"localization": LocalizationParams, "mapping": MappingParams}[mode].specs()
    names = list(load_params_file(params_file or default_params_file(mode), EXECUTABLES[mode]))
    for item in items:
        name, sep, _ = item.partition(":=")
        if not sep:
            raise ValueError(f"-p {item!r} must look like NAME:=VALUE")
        names.append(name.strip())
    for name in names:
        if name in RENAMED and name not in specs:
            raise ValueError(renamed_reason(name))
        if name not in specs and name != "use_sim_time":
            raise ValueError(unknown_name(name, sorted(specs), f"{EXECUTABLES[mode]} parameter"))


def _command(spec) -> list[str] | None:
    """Executable from this venv's bin (console script), or None when not installed here."""
    exe = Path(sys.executable).parent / spec.executable
    if exe.exists():
        return [str(exe)]
    found = shutil.which(spec.executable)
    if found:
        return [found]
    if spec.package == "mast3r_ros":  # editable checkout without console scripts
        return [sys.executable, "-m", f"mast3r_ros.ros.nodes.{spec.executable}"]
    return None


def _stop(procs: list[subprocess.Popen], grace_s: float = STOP_GRACE_S) -> None:
    """SIGINT, then SIGTERM, then SIGKILL, each with a grace period; reaps every child."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in procs if p.poll() is None]
        if not alive:
            return
        for p in alive:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(p.poll() is None for p in alive):
            time.sleep(0.05)


def run(args: argparse.Namespace) -> int:
    from mast3r_ros.ros.bag.bag_play import use_large_data_profile
    from mast3r_ros.ros.nodes.launch_description import describe

    try:
        check_parameter_names(args.mode, args.params, args.param)
        specs = describe({"mode": args.mode, "map": args.map, "params_file": args.params,
                          "checkpoint": args.checkpoint, "frontend": args.frontend,
                          "namespace": args.namespace, "image_topic": args.image_topic,
                          "camera_info_topic": args.camera_info_topic, "depth_topic": args.depth_topic,
                          "base_frame": args.base_frame, "publish_odom_tf": args.publish_odom_tf,
                          "qos_image": args.qos_image, "log_level": args.log_level,
                          "use_sim_time": "true" if args.use_sim_time else "false",
                          "rviz": "true" if args.rviz else "false",
                          "lifecycle": "true" if args.lifecycle else "false"})
    except ValueError as exc:
        print(f"launch: error: {exc}", file=sys.stderr)
        return 2
    stop_requested = []

    def on_signal(signum, _frame):
        stop_requested.append(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs: list[subprocess.Popen] = []
    env = os.environ.copy()
    print(f"launch: {use_large_data_profile(env)}", file=sys.stderr, flush=True)
    try:
        for spec in specs:
            cmd = _command(spec)
            if cmd is None:
                print(f"launch: {spec.executable} is not installed here; skipped", file=sys.stderr)
                continue
            extra = [a for p in args.param for a in ("-p", p)] if spec.package == "mast3r_ros" else []
            full = cmd + spec.arguments + spec.ros_args() + extra
            print("launch: " + " ".join(full), file=sys.stderr, flush=True)
            procs.append(subprocess.Popen(full, start_new_session=True, env=env))
        while procs and not stop_requested and all(p.poll() is None for p in procs):
            time.sleep(0.1)
    finally:
        _stop(procs)
        for s, h in old.items():
            signal.signal(s, h)
    codes = [p.returncode for p in procs]
    failed = [c for c in codes if c not in (0, -signal.SIGINT, -signal.SIGTERM)]
    if not stop_requested and failed:
        print(f"launch: a node exited with code {failed[0]}", file=sys.stderr)
        return 1
    return 0
