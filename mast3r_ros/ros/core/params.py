"""Node parameter schemas: one dataclass per node, filled from ROS parameters, YAML or the CLI.

Every field carries its description and constraints in ``metadata`` so the same schema gives
the ROS ``ParameterDescriptor`` (node), the validation with a reason for refusal (node on
``set_parameters``, ``mast3r-ros launch``, offline replay) and the YAML files in ``config/``.
Names follow the interface doc (``../shared/docs/ros_interface.md``).

One default and one description per parameter: a parameter that fills a core dataclass field
(``core_param``) takes that field's default, description and range/choices (its ``metadata``,
:func:`mast3r_ros.config_fields.setting`), so the core dataclass is the only place they are written
(only what ROS adds stays here: ``dynamic``, encodings of values ROS cannot hold, a help prefix or
suffix naming the front-end or the ROS-only 0), and :func:`core_config`
fills the core dataclass from the field paths the schema records; only what the core has no field
for (frames, TF, QoS, queues, rates, files) has its default here. ``test/test_param_defaults.py``
checks both directions.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mast3r_ros.config_fields import field_at
from mast3r_ros.localization.frontends.mast3r_config import Mast3rFrontEndConfig
from mast3r_ros.localization.localizer import LocalizerConfig
from mast3r_ros.mapping.incremental_config import IncrementalConfig

P = TypeVar("P", bound="NodeParams")
C = TypeVar("C")
NEVER = 10 ** 9  # a pass period no map reaches: a ROS 0 for the mapper's *_every_n_keyframes (service only)
ONLY_SERVICE = " (0 = only the optimize service)"


class ParamError(ValueError):
    """One or more parameter values are refused (message lists every reason)."""


def param(default: Any, help: str, *, min: float | None = None, max: float | None = None,
          choices: tuple | None = None, dynamic: bool = False, core: tuple[type, str] | None = None,
          from_ros: Callable[[Any], Any] | None = None) -> Any:
    """A schema field: default, description, range/choices, and whether it may change at run time;
    ``core``: the (core dataclass, dotted field path) the parameter fills, when there is one;
    ``from_ros``: the core value of a ROS value (None: the same)."""
    return field(default=default, metadata={"help": help, "min": min, "max": max, "choices": choices,
                                            "dynamic": dynamic, "core": core, "from_ros": from_ros})


def core_config(params: NodeParams, cls: type[C]) -> C:
    """``cls()`` with each parameter whose schema names a field of ``cls`` (``core_param``) written to
    that field (nested dataclasses replaced along the dotted path), its ``from_ros`` applied."""
    cfg = cls()
    for f in dataclasses.fields(params):
        core, from_ros = f.metadata["core"], f.metadata["from_ros"]
        if core is not None and core[0] is cls:
            value = getattr(params, f.name)
            cfg = _with_path(cfg, core[1].split("."), from_ros(value) if from_ros else value)
    return cfg


def _with_path(obj: Any, names: list[str], value: Any) -> Any:
    """A copy of the dataclass ``obj`` whose field at the path ``names`` is ``value``."""
    head, *rest = names
    return dataclasses.replace(obj, **{head: _with_path(getattr(obj, head), rest, value) if rest else value})


def _none_as_empty(value: Any) -> Any:
    return "" if value is None else value  # ROS parameters have no None: '' stands for it


def _empty_as_none(value: Any) -> Any:
    return value or None


def _zero_as_never(value: int) -> int:
    return value or NEVER


def core_param(cls: type, path: str, *, prefix: str = "", suffix: str = "",
               as_ros: Callable[[Any], Any] | None = None, **kw: Any) -> Any:
    """A schema field whose default, help (between ``prefix`` and ``suffix``) and min/max/choices are
    the core dataclass field's (``kw``: what ROS adds or changes, e.g. ``dynamic``, a ROS-only range);
    ``as_ros`` converts a value that ROS cannot hold (None -> ''), in the default and the choices."""
    f, default = field_at(cls, path)
    ros = as_ros or (lambda v: v)
    meta = {"min": f.metadata["min"], "max": f.metadata["max"], "choices": f.metadata["choices"]}
    if meta["choices"] is not None:
        meta["choices"] = tuple(dict.fromkeys(ros(c) for c in meta["choices"]))  # None and '' are one
    return param(ros(default), prefix + f.metadata["help"] + suffix, core=(cls, path), **{**meta, **kw})


@dataclass
class NodeParams:
    """Parameters shared by both nodes (front-end choice, frames, TF, QoS, input synchronisation)."""
    frontend: str = param("classical", "front-end: 'mast3r' (needs checkpoint) or 'classical' (SIFT)",
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

    # ---------------------------------------------------------------- schema helpers
    @classmethod
    def specs(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls: type[P], values: dict[str, Any], strict: bool = True) -> P:
        """Build and validate; unknown names are refused when ``strict``."""
        specs = cls.specs()
        unknown = sorted(set(values) - set(specs))
        reasons = [f"unknown parameter {n!r}" for n in unknown] if strict else []
        kwargs = {}
        for name, value in values.items():
            if name not in specs:
                continue
            coerced, reason = coerce_value(specs[name], value)
            if reason:
                reasons.append(reason)
            else:
                kwargs[name] = coerced
        if reasons:
            raise ParamError("; ".join(reasons))
        obj = cls(**kwargs)
        obj.validate()
        return obj

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self: P, **changes: Any) -> P:
        """A validated copy with some values changed (the node's set_parameters path)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    def validate(self) -> None:
        """Cross-field checks; raises :class:`ParamError` naming every problem."""
        reasons = self._cross_checks()
        if reasons:
            raise ParamError("; ".join(reasons))

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


def coerce_value(spec: dataclasses.Field, value: Any) -> tuple[Any, str]:
    """(value converted to the field's type, '') or (None, reason for refusal)."""
    name, meta = spec.name, spec.metadata
    kind = spec.type if isinstance(spec.type, str) else spec.type.__name__
    try:
        if kind == "bool":
            if not isinstance(value, bool):
                return None, f"{name} must be a bool, got {value!r}"
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                return None, f"{name} must be an integer, got {value!r}"
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return None, f"{name} must be a number, got {value!r}"
            value = float(value)
            if not math.isfinite(value):
                return None, f"{name} must be finite, got {value!r}"
        elif kind == "str":
            if isinstance(value, bool) and meta.get("choices") and "true" in meta["choices"]:
                value = "true" if value else "false"  # tri-state: YAML/ROS give true/false as bools
            if not isinstance(value, str):
                return None, f"{name} must be a string, got {value!r}"
    except TypeError:
        return None, f"{name} has an unsupported value {value!r}"
    if meta.get("min") is not None and value < meta["min"]:
        return None, f"{name} must be >= {meta['min']}, got {value}"
    if meta.get("max") is not None and value > meta["max"]:
        return None, f"{name} must be <= {meta['max']}, got {value}"
    if meta.get("choices") is not None and value not in meta["choices"]:
        return None, f"{name} must be one of {list(meta['choices'])}, got {value!r}"
    return value, ""


@dataclass
class LocalizationParams(NodeParams):
    """``localization_node`` parameters: the front-end's fill ``Mast3rFrontEndConfig``, the rest
    ``LocalizerConfig`` (retrieval, PnP, acceptance gates) or the node itself."""
    checkpoint: str = core_param(Mast3rFrontEndConfig, "checkpoint", suffix="; mast3r front-end")
    device: str = core_param(Mast3rFrontEndConfig, "device")
    amp_dtype: str = core_param(Mast3rFrontEndConfig, "amp_dtype", as_ros=_none_as_empty, from_ros=_empty_as_none)
    image_size: int = core_param(Mast3rFrontEndConfig, "image_size")
    warmup: bool = param(True, "run one dummy frame through the front-end before reporting ready")
    max_rate_hz: float = param(0.0, "process at most this many frames per second (0 = no limit)",
                               min=0.0, max=1000.0, dynamic=True)
    map_path: str = param("", "map folder to load at start ('' = wait for the load_map service)")
    use_camera_info_intrinsics: bool = param(True, "K from camera_info (else the map keyframes' K)")
    subsample: int = core_param(Mast3rFrontEndConfig, "subsample", prefix="mast3r: ")
    pixel_tol: float = core_param(Mast3rFrontEndConfig, "pixel_tol", prefix="mast3r: ")
    min_conf: float = core_param(Mast3rFrontEndConfig, "min_desc_conf", prefix="mast3r: ")
    top_k_keyframes: int = core_param(LocalizerConfig, "retrieval.top_k")
    pnp_solver: str = core_param(LocalizerConfig, "pnp.solver")
    pnp_reprojection_px: float = core_param(LocalizerConfig, "pnp.max_reproj_px")
    min_inliers: int = core_param(LocalizerConfig, "gates.min_inliers", dynamic=True)
    min_inliers_global: int = core_param(LocalizerConfig, "gates.min_inliers_global", dynamic=True)
    max_median_reproj_px: float = core_param(LocalizerConfig, "gates.max_median_reproj_px", dynamic=True)
    max_jump_m: float = core_param(LocalizerConfig, "gates.max_jump_m", dynamic=True)
    max_jump_deg: float = core_param(LocalizerConfig, "gates.max_jump_deg", dynamic=True)
    rgbd_pose: bool = core_param(LocalizerConfig, "rgbd_pose")
    publish_initialpose: bool = param(False, "also publish each accepted pose on /initialpose (seeds AMCL / "
                                      "robot_localization)", dynamic=True)

    def _cross_checks(self) -> list[str]:
        out = super()._cross_checks()
        if self.frontend == "mast3r" and not (self.checkpoint or self.oracle_dataset):
            out.append("frontend 'mast3r' needs the checkpoint parameter (a local .pth file) or oracle_dataset")
        if self.checkpoint and self.oracle_dataset:
            out.append("give checkpoint or oracle_dataset, not both")
        if self.checkpoint and not Path(self.checkpoint).is_file():
            out.append(f"checkpoint {self.checkpoint!r} is not a file")
        if self.image_size % 16:
            out.append(f"image_size must be a multiple of 16, got {self.image_size}")
        dev = self.device
        if not (dev == "cpu" or dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit())):
            out.append(f"device must be cpu, cuda or cuda:N, got {dev!r}")
        if self.map_path and not Path(self.map_path).is_dir():
            out.append(f"map_path {self.map_path!r} is not a folder")
        if self.min_inliers_global < self.min_inliers:
            out.append(f"min_inliers_global ({self.min_inliers_global}) must be >= min_inliers "
                       f"({self.min_inliers})")
        return out


@dataclass
class MappingParams(NodeParams):
    """``mapping_node`` parameters: the mapper's fill ``IncrementalConfig`` (its alignment: the
    ``rgbd_incremental`` preset), the rest the node itself (depth input, output folder, cloud)."""
    subscribe_depth: bool = param(True, "synchronise a depth image (16UC1 mm or 32FC1 m); required for "
                                  "mapping")
    map_dir: str = param("", "folder the map is saved to (save_map without a path)")
    kf_min_translation: float = core_param(IncrementalConfig, "kf_min_translation")
    kf_min_rotation_deg: float = core_param(IncrementalConfig, "kf_min_rotation_deg")
    kf_max_overlap: float = core_param(IncrementalConfig, "kf_max_overlap")
    max_keyframes: int = core_param(IncrementalConfig, "max_keyframes")
    sequential_window: int = core_param(IncrementalConfig, "sequential_window")
    retrieval_k: int = core_param(IncrementalConfig, "retrieval_k")
    window_size: int = core_param(IncrementalConfig, "window_size")
    lr1: float = core_param(IncrementalConfig, "alignment.lr1", suffix=" (warm start)")
    niter1: int = core_param(IncrementalConfig, "alignment.niter1")
    lr2: float = core_param(IncrementalConfig, "alignment.lr2")
    niter2: int = core_param(IncrementalConfig, "alignment.niter2")
    optimize_depth: bool = core_param(IncrementalConfig, "alignment.optimize_depth")
    shared_intrinsics: bool = core_param(IncrementalConfig, "alignment.shared_intrinsics")
    # a ROS 0 means never (only the optimize service): the mapper gets NEVER for it, hence the ROS range
    optimize_every_n_keyframes: int = core_param(IncrementalConfig, "optimize_every_n_keyframes",
                                                 suffix=ONLY_SERVICE, min=0, max=100000, from_ros=_zero_as_never)
    global_every_n_keyframes: int = core_param(IncrementalConfig, "global_every", suffix=ONLY_SERVICE, min=0,
                                               max=100000, from_ros=_zero_as_never)
    cloud_max_points: int = param(200000, "points in the published cloud_map", min=1000, max=10_000_000)

    def _cross_checks(self) -> list[str]:
        out = super()._cross_checks()
        if self.frontend != "classical":
            out.append(f"mapping_node supports frontend 'classical' (SIFT + depth) only, got "
                       f"{self.frontend!r}")
        if not self.subscribe_depth:
            out.append("mapping_node needs depth: subscribe_depth must be true")
        if self.kf_min_translation == 0 and self.kf_min_rotation_deg == 0:
            out.append("kf_min_translation and kf_min_rotation_deg are both 0: every frame would be a "
                       "keyframe")
        if self.map_dir and not Path(self.map_dir).parent.is_dir():
            out.append(f"map_dir {self.map_dir!r}: parent folder does not exist")
        return out


def params_yaml(cls: type[NodeParams], node_name: str) -> str:
    """The text of ``config/<mode>.yaml``: every parameter with its default and its description
    (``test_param_defaults.py`` checks that the shipped files are exactly this)."""
    def value(v: Any) -> str:
        return f'"{v}"' if isinstance(v, str) else ("true" if v else "false") if isinstance(v, bool) else repr(v)

    lines = [f"# {node_name} parameters (mast3r_ros)",
             "# Every parameter with its default; `ros2 param describe` shows ranges.", "/**:", "  ros__parameters:"]
    lines += [f"    {f.name}: {value(f.default)}  # {f.metadata['help']}" for f in dataclasses.fields(cls)]
    return "\n".join(lines) + "\n"


def load_params_file(path: str | Path, node_name: str) -> dict[str, Any]:
    """The ``ros__parameters`` that apply to ``node_name`` in a ROS 2 params YAML file.

    Sections ``/**`` (wildcard) then ``node_name`` / ``/<ns>/node_name`` are merged in file order.
    """
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ParamError(f"cannot read parameter file {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ParamError(f"parameter file {path} must map node names to ros__parameters")
    out: dict[str, Any] = {}
    for key, section in doc.items():
        name = str(key).rstrip("/").split("/")[-1]
        if key in ("/**", "**") or name == node_name:
            if not isinstance(section, dict) or "ros__parameters" not in section:
                raise ParamError(f"{path}: section {key!r} has no ros__parameters")
            out.update(section["ros__parameters"] or {})
    return out
