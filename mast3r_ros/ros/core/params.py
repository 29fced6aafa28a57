"""Node parameter schemas: one dataclass per node, filled from ROS parameters, YAML or the CLI.

One vocabulary (``mast3r_ros/config_fields.py``): a parameter that fills a core dataclass is that
dataclass's described field under its nested dotted name, ``<section>.<field path>``, with the
section named after the component: ``mast3r.*`` (``Mast3rFrontEndConfig``, the front-end),
``localizer.*`` (``LocalizerConfig``: ``localizer.retrieval.top_k``, ``localizer.pnp.max_reproj_px``,
``localizer.gates.min_inliers``) and ``mapper.*`` (``IncrementalConfig``: ``mapper.alignment.lr1``).
They are generated from the core fields (default: the same object; description, range, choices), never
written here; the node's params object holds the core dataclasses themselves (``params.localizer``),
so no hand mapping remains. Only what ROS adds is said here: which names may change at run time
(``dynamic``) and the ROS 0 of the mapper's pass periods (NEVER). What the core has no field for
(frames, TF, QoS, queues, rates, files) are flat ROS-only fields with their defaults here. The flat
names of earlier releases (``top_k_keyframes``, ...) are refused naming the new one (:data:`RENAMED`).
In YAML the dotted names nest under ``ros__parameters`` (``localizer: {pnp: {max_reproj_px: 8.0}}``),
as ROS 2 reads them. ``test/test_param_defaults.py`` checks both directions.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mast3r_ros.config_fields import Setting, SettingSet, flatten_nested, nested_yaml, section, setting
from mast3r_ros.localization.frontends.mast3r_config import Mast3rFrontEndConfig
from mast3r_ros.localization.localizer import LocalizerConfig
from mast3r_ros.mapping.incremental_config import IncrementalConfig
from mast3r_ros.mapping.monocular_stream_config import MonocularStreamConfig

NEVER = 10 ** 9  # a pass period no map reaches: a ROS 0 for the mapper's pass periods (service only)
ONLY_SERVICE = " (0 = only the optimize service)"
# flat names of earlier releases -> the nested name that replaced each
RENAMED = {**{n: f"mast3r.{n}" for n in ("checkpoint", "device", "amp_dtype", "image_size", "subsample",
                                         "pixel_tol")},
           "min_conf": "mast3r.min_desc_conf", "top_k_keyframes": "localizer.retrieval.top_k",
           "pnp_solver": "localizer.pnp.solver", "pnp_reprojection_px": "localizer.pnp.max_reproj_px",
           "rgbd_pose": "localizer.rgbd_pose",
           **{n: f"localizer.gates.{n}" for n in ("min_inliers", "min_inliers_global", "max_median_reproj_px",
                                                  "max_jump_m", "max_jump_deg")},
           **{n: f"mapper.{n}" for n in ("kf_min_translation", "kf_min_rotation_deg", "kf_max_overlap",
                                         "max_keyframes", "sequential_window", "retrieval_k", "window_size",
                                         "optimize_every_n_keyframes")},
           "global_every_n_keyframes": "mapper.global_every",
           **{n: f"mapper.alignment.{n}" for n in ("lr1", "niter1", "lr2", "niter2", "optimize_depth",
                                                   "shared_intrinsics")}}


class ParamError(ValueError):
    """One or more parameter values are refused (message lists every reason)."""


@dataclass(frozen=True)
class RosParam(Setting):
    """A ROS parameter: a :class:`Setting` (flat ROS-only field or a core field under its section),
    plus whether it may change at run time and whether a ROS 0 means NEVER."""
    dynamic: bool = False
    zero_is_never: bool = False

    def encode(self, value: Any) -> Any:
        return 0 if self.zero_is_never and value == NEVER else super().encode(value)

    def decode(self, value: Any) -> Any:
        return NEVER if self.zero_is_never and value == 0 else super().decode(value)


def param(default: Any, help: str, *, min: float | None = None, max: float | None = None,
          choices: tuple | None = None, dynamic: bool = False) -> Any:
    """A flat ROS-only parameter: default, description, range/choices, and whether it may change at run time."""
    return setting(default, help, min=min, max=max, choices=choices, dynamic=dynamic)


def _ros_param(s: Setting, meta: dict) -> RosParam:
    """``s`` with what ROS adds: ``meta["dynamic"]`` (flat: a bool; section: field paths, or path
    prefixes ending in '.', that may change at run time) and ``meta["zero_is_never"]`` (a section's pass
    periods whose ROS 0 means NEVER: range [0, 100000])."""
    dyn = meta.get("dynamic", False)
    if not s.section:
        return RosParam(**vars(s), dynamic=dyn)
    dyn = any(s.path == d or (d.endswith(".") and s.path.startswith(d)) for d in dyn or ())
    if s.path in meta.get("zero_is_never", ()):
        return RosParam(**{**vars(s), "min": 0, "max": 100000, "help": s.help + ONLY_SERVICE}, dynamic=dyn,
                        zero_is_never=True)
    return RosParam(**vars(s), dynamic=dyn)


@dataclass
class NodeParams(SettingSet):
    """Parameters shared by both nodes (front-end choice, frames, TF, QoS, input synchronisation)."""
    frontend: str = param("classical", "front-end: 'mast3r' (needs mast3r.checkpoint) or 'classical' (SIFT)",
                          choices=("classical", "mast3r"))
    map_frame: str = param("map", "global frame of the map and of published poses")
    odom_frame: str = param("odom", "odometry frame (map->odom is published)")
    base_frame: str = param("base_link", "robot base frame; base->camera optical comes from TF")
    publish_tf: bool = param(True, "publish map->odom on /tf", dynamic=True)
    publish_odom_tf: str = param("auto", "identity odom->base: 'auto' (when TF has no odom->base after "
                                 "a short grace period: camera-only rigs, bags without odometry), "
                                 "'true' (always) or 'false' (never)", choices=("auto", "true", "false"))
    tf_publish_rate: float = param(20.0, "map->odom re-publication rate (Hz)", min=0.1, max=1000.0)
    transform_tolerance: float = param(0.1, "future-date of the published map->odom (s)", min=0.0, max=10.0,
                                       dynamic=True)
    tf_timeout: float = param(0.2, "wait for base->camera / odom->base TF at the image stamp (s)",
                              min=0.0, max=5.0, dynamic=True)
    qos_image: str = param("best_effort", "image/camera_info/depth QoS reliability",
                           choices=("best_effort", "reliable"))
    subscribe_depth: bool = param(False, "also synchronise a depth image (16UC1 mm or 32FC1 m)")
    rgbd_calibration: str = param("", "depth-to-colour calibration: '' (registered), a preset "
                                  "('7scenes') or a YAML file")
    approx_sync_max_interval: float = param(0.02, "largest stamp difference within a synced set (s)",
                                            min=0.0, max=10.0)
    sync_queue_size: int = param(60, "messages kept per input topic (DDS history, min 10, and sync queue): "
                                 "frames survive an executor stall this long (2 s at 30 Hz)", min=1, max=1000)
    frame_queue_size: int = param(1, "synced frames waiting for the worker (1 = newest only)", min=1, max=100)
    no_input_warn_s: float = param(5.0, "warn after this long without synchronised input (s)", min=0.1,
                                   max=3600.0)
    oracle_dataset: str = param("", "mast3r front-end: instead of a checkpoint, the ground-truth stand-in "
                                "built from this RGB-D dataset (7-Scenes or TUM folder; its frames only, "
                                "e.g. a make-bag bag of it); '' = off")
    oracle_noise: str = param("", "oracle_dataset's injected errors as K=V,... (mast3r-ros --oracle-noise); "
                              "'' = the documented defaults")

    Error = ParamError

    @classmethod
    def _field_settings(cls, f: dataclasses.Field) -> list[Setting]:
        return [_ros_param(s, f.metadata) for s in super()._field_settings(f)]

    @classmethod
    def _refused_names(cls, names: list[str], specs: dict, strict: bool) -> list[str]:
        """Old flat names always (naming the new one), unknown ones when ``strict``."""
        old = [n for n in names if n in RENAMED and n not in specs]
        return [renamed_reason(n) for n in old] + super()._refused_names([n for n in names if n not in old],
                                                                          specs, strict)

    def _cross_checks(self) -> list[str]:
        out = []
        for name in ("map_frame", "odom_frame", "base_frame"):
            if not getattr(self, name).strip():
                out.append(f"{name} must not be empty")
        frames = [self.map_frame, self.odom_frame, self.base_frame]
        if len(set(frames)) != 3:
            out.append(f"map_frame, odom_frame and base_frame must differ, got {frames}")
        return out + _oracle_checks(self)


def _oracle_checks(p: NodeParams) -> list[str]:
    """Refusals of the oracle parameters (the dataset's layout is checked when the model is built)."""
    out = []
    if p.oracle_dataset and p.frontend != "mast3r":
        out.append("oracle_dataset stands in for the MASt3R network: set frontend 'mast3r'")
    if p.oracle_dataset and not Path(p.oracle_dataset).is_dir():
        out.append(f"oracle_dataset {p.oracle_dataset!r} is not a folder")
    if p.oracle_noise and not p.oracle_dataset:
        out.append("oracle_noise needs oracle_dataset")
    if p.oracle_noise:
        from mast3r_ros.model.oracle import OracleNoise  # torch: only when there is something to parse

        try:
            OracleNoise.parse(p.oracle_noise)
        except ValueError as exc:
            out.append(str(exc))
    return out


def _mast3r_checks(p: NodeParams, m: Mast3rFrontEndConfig) -> list[str]:
    """Refusals of the ``mast3r.*`` section (both nodes have it)."""
    out = []
    if p.frontend == "mast3r" and not (m.checkpoint or p.oracle_dataset):
        out.append("frontend 'mast3r' needs the mast3r.checkpoint parameter (a local .pth file) or "
                   "oracle_dataset")
    if m.checkpoint and p.oracle_dataset:
        out.append("give mast3r.checkpoint or oracle_dataset, not both")
    if m.checkpoint and not Path(m.checkpoint).is_file():
        out.append(f"mast3r.checkpoint {str(m.checkpoint)!r} is not a file")
    if m.image_size % 16:
        out.append(f"mast3r.image_size must be a multiple of 16, got {m.image_size}")
    dev = m.device
    if not (dev == "cpu" or dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit())):
        out.append(f"mast3r.device must be cpu, cuda or cuda:N, got {dev!r}")
    return out


def renamed_reason(name: str) -> str:
    """The one-line refusal of a flat name of an earlier release."""
    return f"parameter {name!r} was renamed to {RENAMED[name]!r}"


@dataclass
class LocalizationParams(NodeParams):
    """``localization_node`` parameters: ``mast3r.*`` fill the MASt3R front-end's config,
    ``localizer.*`` the localizer's (retrieval, PnP, acceptance gates: those change at run time); the
    rest is the node's own."""
    warmup: bool = param(True, "run one dummy frame through the front-end before reporting ready")
    max_rate_hz: float = param(0.0, "process at most this many frames per second (0 = no limit)",
                               min=0.0, max=1000.0, dynamic=True)
    map_path: str = param("", "map folder to load at start ('' = wait for the load_map service)")
    use_camera_info_intrinsics: bool = param(True, "K from camera_info (else the map keyframes' K)")
    publish_initialpose: bool = param(False, "also publish each accepted pose on /initialpose (seeds AMCL / "
                                      "robot_localization)", dynamic=True)
    mast3r: Mast3rFrontEndConfig = section(Mast3rFrontEndConfig)
    localizer: LocalizerConfig = section(LocalizerConfig, dynamic=("gates.",))

    def _cross_checks(self) -> list[str]:
        out = super()._cross_checks()
        out += _mast3r_checks(self, self.mast3r)
        gates = self.localizer.gates
        if self.map_path and not Path(self.map_path).is_dir():
            out.append(f"map_path {self.map_path!r} is not a folder")
        if gates.min_inliers_global < gates.min_inliers:
            out.append(f"localizer.gates.min_inliers_global ({gates.min_inliers_global}) must be >= "
                       f"localizer.gates.min_inliers ({gates.min_inliers})")
        return out


@dataclass
class MappingParams(NodeParams):
    """``mapping_node`` parameters: ``mapper.*`` fill ``IncrementalConfig`` (the classical RGB-D engine;
    its alignment: the ``rgbd_incremental`` preset), ``mast3r.*`` the MASt3R model and ``mono.*`` the
    keyframes of the MASt3R engine (``frontend: mast3r``, images with or without depth: ``MonocularStreamConfig``);
    the rest is the node's own (depth input, output folder, cloud)."""
    subscribe_depth: bool = param(True, "synchronise a depth image (16UC1 mm or 32FC1 m); required by "
                                  "frontend 'classical'; with 'mast3r' the keyframes' metric depth prior "
                                  "(false: images alone, monocular)")
    map_dir: str = param("", "folder the map is saved to (save_map without a path)")
    cloud_max_points: int = param(200000, "points in the published cloud_map", min=1000, max=10_000_000)
    mapper: IncrementalConfig = section(IncrementalConfig,
                                        zero_is_never=("optimize_every_n_keyframes", "global_every"))
    # the monocular engine pairs and matches with map_monocular's own settings: only the model's fields apply here
    mast3r: Mast3rFrontEndConfig = section(Mast3rFrontEndConfig, only=("checkpoint", "device", "amp_dtype",
                                                                      "bf16_weights", "image_size"))
    mono: MonocularStreamConfig = section(MonocularStreamConfig)

    def _cross_checks(self) -> list[str]:
        out = super()._cross_checks() + _mast3r_checks(self, self.mast3r)
        if self.frontend == "mast3r":
            if self.subscribe_depth and self.mono.estimate_focal:
                out.append("mono.estimate_focal needs subscribe_depth false: the depth prior uses camera_info's K")
        elif not self.subscribe_depth:
            out.append("frontend 'classical' maps with depth: subscribe_depth must be true (frontend 'mast3r' "
                       "maps from images alone)")
        if self.mapper.kf_min_translation == 0 and self.mapper.kf_min_rotation_deg == 0:
            out.append("mapper.kf_min_translation and mapper.kf_min_rotation_deg are both 0: every frame would "
                       "be a keyframe")
        if self.map_dir and not Path(self.map_dir).parent.is_dir():
            out.append(f"map_dir {self.map_dir!r}: parent folder does not exist")
        return out


def _yaml_value(v: Any) -> str:
    return f'"{v}"' if isinstance(v, str) else ("true" if v else "false") if isinstance(v, bool) else repr(v)


def params_yaml(cls: type[NodeParams], node_name: str) -> str:
    """The text of ``config/<mode>.yaml``: every parameter with its default and its description, the
    dotted names nested (``test_param_defaults.py`` checks that the shipped files are exactly this)."""
    defaults = cls()
    entries = [(n, _yaml_value(defaults.value(s)), s.help) for n, s in cls.specs().items()]
    return "\n".join([f"# {node_name} parameters (mast3r_ros)",
                      "# Every parameter with its default; `ros2 param describe` shows ranges.", "/**:",
                      "  ros__parameters:", *nested_yaml(entries, 4)]) + "\n"


def load_params_file(path: str | Path, node_name: str) -> dict[str, Any]:
    """The ``ros__parameters`` that apply to ``node_name`` in a ROS 2 params YAML file, by dotted name.

    Sections ``/**`` (wildcard) then ``node_name`` / ``/<ns>/node_name`` are merged in file order.
    """
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ParamError(f"cannot read parameter file {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ParamError(f"parameter file {path} must map node names to ros__parameters")
    out: dict[str, Any] = {}
    for key, sect in doc.items():
        name = str(key).rstrip("/").split("/")[-1]
        if key in ("/**", "**") or name == node_name:
            if not isinstance(sect, dict) or "ros__parameters" not in sect:
                raise ParamError(f"{path}: section {key!r} has no ros__parameters")
            out.update(flatten_nested(sect["ros__parameters"] or {}))
    return out
