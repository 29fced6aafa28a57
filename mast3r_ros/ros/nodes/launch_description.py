"""The node list of ``mast3r.launch.py`` and ``mast3r-ros launch``, as plain data (ROS-free).

Why here: ``launch``/``launch_ros`` are not installable as wheels, so the launch file stays a
thin adapter over :func:`describe`, which is tested here and also drives ``mast3r-ros launch``
(separate processes from ``.venv``). Launch argument names follow the interface doc.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mast3r_ros.paths import config_file

PACKAGE = "mast3r_ros"
LIFECYCLE_FLAG = "--lifecycle"  # the nodes' own argument (mast3r_ros.ros.nodes.spin.run_node reads it)
MODES = ("localization", "mapping")
EXECUTABLES = {"localization": "localization_node", "mapping": "mapping_node"}

# (name, default, description) of every launch argument; the launch file declares exactly these.
LAUNCH_ARGUMENTS: tuple[tuple[str, str, str], ...] = (
    ("mode", "localization", "localization | mapping"),
    ("map", "", "map folder (localization: loaded at start; mapping: where save_map writes)"),
    ("params_file", "", "ROS 2 parameter YAML (default: config/<mode>.yaml of this package)"),
    ("checkpoint", "", "local MASt3R checkpoint (.pth), the mast3r.checkpoint parameter; never downloaded "
                       "(mapping: with frontend mast3r)"),
    ("frontend", "", "override the front-end parameter: mast3r | classical"),
    ("namespace", "mast3r", "namespace of the node(s) and their relative topics"),
    ("image_topic", "/camera/image_raw", "sensor_msgs/Image input"),
    ("camera_info_topic", "/camera/camera_info", "sensor_msgs/CameraInfo input"),
    ("depth_topic", "/camera/depth/image_raw", "depth image input (when subscribe_depth)"),
    ("map_frame", "", "override map_frame"),
    ("odom_frame", "", "override odom_frame"),
    ("base_frame", "", "override base_frame"),
    ("publish_tf", "", "override publish_tf (true | false)"),
    ("publish_odom_tf", "", "override publish_odom_tf (auto | true | false)"),
    ("qos_image", "", "override qos_image (best_effort | reliable)"),
    ("log_level", "info", "node log level (debug | info | warn | error | fatal)"),
    ("use_sim_time", "false", "use /clock (bag playback)"),
    ("lifecycle", "false", "run the node as a managed (lifecycle) node: it starts unconfigured, "
                           "for nav2's lifecycle_manager"),
    ("rviz", "false", "also start rviz2 with config/mast3r.rviz"),
)
DEFAULTS = {name: default for name, default, _ in LAUNCH_ARGUMENTS}
_BOOL_ARGS = ("publish_tf", "use_sim_time", "rviz", "lifecycle")
_FRAME_ARGS = ("frontend", "map_frame", "odom_frame", "base_frame", "publish_odom_tf", "qos_image")
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


@dataclass
class NodeSpec:
    """One process to start: ``ros2 run <package> <executable>`` with these ROS arguments.

    parameters: parameter files (paths) first, then one dict of overrides (later wins).
    remappings: (from, to) topic remappings relative to the node's namespace.
    """
    executable: str
    name: str
    namespace: str = ""
    package: str = PACKAGE
    parameters: list = field(default_factory=list)
    remappings: list[tuple[str, str]] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)
    log_level: str = ""  # '' = rclpy's default

    def log_args(self) -> list[str]:
        """ROS arguments for the log level (``--log-level L``), as launch_ros' ros_arguments."""
        return ["--log-level", self.log_level] if self.log_level else []

    def ros_args(self) -> list[str]:
        """Command-line form: ``--ros-args -r __node:=.. -r __ns:=.. --params-file F -p k:=v -r a:=b``."""
        out = ["--ros-args", *self.log_args(), "-r", f"__node:={self.name}"]
        if self.namespace:
            out += ["-r", f"__ns:=/{self.namespace.strip('/')}"]
        for p in self.parameters:
            if isinstance(p, dict):
                for k, v in p.items():
                    out += ["-p", f"{k}:={_yaml_value(v)}"]
            else:
                out += ["--params-file", str(p)]
        for a, b in self.remappings:
            out += ["-r", f"{a}:={b}"]
        return out


def _yaml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str) and (v == "" or v.lower() in ("true", "false", "null", "~")
                               or _looks_numeric(v)):
        return f"'{v}'"  # keep strings strings
    return str(v)


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _as_bool(name: str, v: str | bool) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("true", "1", "yes"):
        return True
    if s in ("false", "0", "no"):
        return False
    raise ValueError(f"launch argument {name} must be true or false, got {v!r}")


def default_params_file(mode: str) -> Path:
    """``config/<mode>.yaml`` from the installed package share (workspace) or this checkout."""
    return config_file(f"{mode}.yaml")


def describe(args: dict[str, str]) -> list[NodeSpec]:
    """Processes for the launch arguments ``args`` (missing ones take :data:`DEFAULTS`).

    Raises:
        ValueError: unknown argument name, unknown mode, or a non-boolean boolean argument.
    """
    unknown = sorted(set(args) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown launch argument(s) {unknown}; known: {sorted(DEFAULTS)}")
    a = {**DEFAULTS, **{k: v for k, v in args.items() if v is not None}}
    mode = str(a["mode"]).strip()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    overrides: dict = {"use_sim_time": _as_bool("use_sim_time", a["use_sim_time"])}
    if a["map"]:
        overrides["map_path" if mode == "localization" else "map_dir"] = str(a["map"])
    if a["checkpoint"]:
        overrides["mast3r.checkpoint"] = str(a["checkpoint"])
    for name in _FRAME_ARGS:
        if a[name]:
            overrides[name] = str(a[name])
    if a["publish_tf"] != "":
        overrides["publish_tf"] = _as_bool("publish_tf", a["publish_tf"])
    level = str(a["log_level"]).strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"log_level must be one of {list(LOG_LEVELS)}, got {a['log_level']!r}")
    params_file = Path(a["params_file"]) if a["params_file"] else default_params_file(mode)
    node = NodeSpec(EXECUTABLES[mode], EXECUTABLES[mode], str(a["namespace"]).strip("/"),
                    arguments=[LIFECYCLE_FLAG] if _as_bool("lifecycle", a["lifecycle"]) else [],
                    parameters=[str(params_file), overrides],
                    remappings=[("image", a["image_topic"]), ("camera_info", a["camera_info_topic"]),
                                ("depth", a["depth_topic"])], log_level=level)
    specs = [node]
    if _as_bool("rviz", a["rviz"]):
        rviz_cfg = default_params_file(mode).parent / "mast3r.rviz"
        specs.append(NodeSpec("rviz2", "rviz2", package="rviz2", arguments=["-d", str(rviz_cfg)]))
    return specs
