"""One default per parameter: a ROS parameter that fills a core dataclass field has that field's
default (the same object), the node cores' builders (``localizer_config``,
``mast3r_frontend_config``, ``incremental_config``: ``params.core_config``) send each such parameter to
exactly the field its schema names and nothing else there, every declared parameter is read by its node, and the
shipped ``config/*.yaml`` are the schemas' defaults."""
from __future__ import annotations

import dataclasses
import functools
import re

import pytest

from mast3r_ros.config_fields import field_at
from mast3r_ros.localization.frontends.mast3r_config import Mast3rFrontEndConfig
from mast3r_ros.localization.localizer import LocalizerConfig
from mast3r_ros.mapping.incremental_config import IncrementalConfig
from mast3r_ros.paths import REPO_ROOT
from mast3r_ros.ros.core.localization_core import localizer_config, mast3r_frontend_config
from mast3r_ros.ros.core.mapping_core import NEVER, incremental_config
from mast3r_ros.ros.core.params import LocalizationParams, MappingParams, ParamError, param, params_yaml

# what each node builds from its parameters: core dataclass -> builder
BUILDERS = {LocalizationParams: {LocalizerConfig: localizer_config, Mast3rFrontEndConfig: mast3r_frontend_config},
            MappingParams: {IncrementalConfig: incremental_config}}
# sources that read a node's parameters (the node, its core, the shared input/output helpers)
SOURCES = {LocalizationParams: ("ros/nodes/localization_node.py", "ros/core/localization_core.py"),
           MappingParams: ("ros/nodes/mapping_node.py", "ros/core/mapping_core.py")}
SHARED_SOURCES = ("ros/nodes/base.py", "ros/nodes/node_io.py", "ros/nodes/outputs.py", "ros/nodes/managed.py",
                  "ros/core/model_source.py")
# values a schema refuses to change alone: the mapping node's front-end and depth are fixed
UNCHANGEABLE = {(MappingParams, "frontend"), (MappingParams, "subscribe_depth"),
                (LocalizationParams, "frontend"),  # 'mast3r' needs a checkpoint: another parameter
                # the stand-in is for frontend 'mast3r' (another parameter); its noise needs the stand-in
                *((cls, name) for cls in (LocalizationParams, MappingParams)
                  for name in ("oracle_dataset", "oracle_noise"))}


def _flatten(obj, prefix: str = "") -> dict:
    """{dotted field path: value} of a (nested) dataclass instance."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            out.update(_flatten(v, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = v
    return out


def _core_fields(cls):
    return [f for f in dataclasses.fields(cls) if f.metadata["core"] is not None]


@pytest.mark.parametrize("cls", [LocalizationParams, MappingParams])
def test_core_parameter_default_is_the_core_dataclass_default(cls):
    fields = _core_fields(cls)
    assert len(fields) == {LocalizationParams: 16, MappingParams: 15}[cls]
    for f in fields:
        core_cls, path = f.metadata["core"]
        value = functools.reduce(getattr, path.split("."), core_cls())  # what the core holds there
        if value is None:  # ROS has no None: '' stands for it
            assert f.default == "", f.name
        else:
            assert f.default is value, (f"{cls.__name__}.{f.name} = {f.default!r}, "
                                        f"{core_cls.__name__}.{path} = {value!r}")


def test_node_defaults_build_exactly_the_core_defaults():
    # the whole dataclasses, including fields no parameter sets: no parameter overrides a core default
    assert incremental_config(MappingParams()) == IncrementalConfig()
    assert localizer_config(LocalizationParams()) == LocalizerConfig()
    assert mast3r_frontend_config(LocalizationParams()) == Mast3rFrontEndConfig()


def _other_value(f: dataclasses.Field, tmp_path):
    """Candidates for a valid value different from the default."""
    special = {"checkpoint": [str(tmp_path / "c.pth")], "map_path": [str(tmp_path)],
               "map_dir": [str(tmp_path / "m")], "device": ["cuda:1"], "rgbd_calibration": ["7scenes"]}
    if f.name in special:
        return special[f.name]
    d, meta = f.default, f.metadata
    if meta["choices"]:
        return [c for c in meta["choices"] if c != d]
    if isinstance(d, bool):
        return [not d]
    if isinstance(d, int):
        return [d + 16, d + 1, d - 1]  # image_size: a multiple of 16
    if isinstance(d, float):
        return [d + 0.25, d / 2]
    return [f"{d}_other"]


@pytest.mark.parametrize("cls", [LocalizationParams, MappingParams])
def test_each_parameter_reaches_its_core_field_and_only_it(cls, tmp_path):
    (tmp_path / "c.pth").write_bytes(b"")
    base = cls()
    built = {core: _flatten(build(base)) for core, build in BUILDERS[cls].items()}
    for f in dataclasses.fields(cls):
        changed = None
        for v in _other_value(f, tmp_path):
            try:
                changed = base.replace(**{f.name: v})
                break
            except ParamError:
                continue
        if changed is None:
            assert (cls, f.name) in UNCHANGEABLE, f"no valid other value for {f.name}"
            continue
        diffs = {(core, path) for core, build in BUILDERS[cls].items()
                 for path, val in _flatten(build(changed)).items() if val != built[core][path]}
        core = f.metadata["core"]
        if core is None:  # a node matter: no core field moves
            assert not diffs, f"{f.name} changes {diffs} but its schema names no core field"
            continue
        assert diffs == {core}, f"{f.name} changes {diffs}, its schema says {core}"
        got = _flatten(BUILDERS[cls][core[0]](changed))[core[1]]
        assert got == (v or None if f.name == "amp_dtype" else v), (f.name, got, v)


def test_zero_passes_means_never():
    cfg = incremental_config(MappingParams().replace(optimize_every_n_keyframes=0, global_every_n_keyframes=0))
    assert cfg.optimize_every_n_keyframes == NEVER and cfg.global_every == NEVER


@pytest.mark.parametrize("cls", [LocalizationParams, MappingParams])
def test_every_declared_parameter_is_read_by_its_node(cls):
    text = "\n".join((REPO_ROOT / "mast3r_ros" / s).read_text(encoding="utf-8")
                     for s in SOURCES[cls] + SHARED_SOURCES)
    # a core-backed parameter is read by the builder (params.core_config, through the schema's field
    # path; test_each_parameter_reaches_its_core_field_and_only_it shows it arrives): the node must call
    # the builders; every other parameter is read by name
    unbuilt = [build.__name__ for build in BUILDERS[cls].values() if f"{build.__name__}(" not in text]
    assert not unbuilt, f"{cls.__name__}: the node never builds {unbuilt}"
    unread = [f.name for f in dataclasses.fields(cls) if f.metadata["core"] is None
              and not re.search(rf"\b(?:p|params|new)\.{f.name}\b", text)]
    assert not unread, f"{cls.__name__} declares parameters its node never reads: {unread}"


def test_shipped_yaml_is_the_schema_defaults():
    for cls, mode in ((LocalizationParams, "localization"), (MappingParams, "mapping")):
        shipped = (REPO_ROOT / "config" / f"{mode}.yaml").read_text(encoding="utf-8")
        assert shipped == params_yaml(cls, f"{mode}_node"), f"regenerate config/{mode}.yaml with params_yaml"


# One description per parameter: what ROS adds to a core field's help (the front-end it belongs to, the
# ROS-only 0) and the ranges it changes (0 = never, which the mapper gets as NEVER); nothing else differs.
HELP_AFFIXES = {"checkpoint": ("", "; mast3r front-end"), "subsample": ("mast3r: ", ""),
                "pixel_tol": ("mast3r: ", ""), "min_conf": ("mast3r: ", ""), "lr1": ("", " (warm start)"),
                "optimize_every_n_keyframes": ("", " (0 = only the optimize service)"),
                "global_every_n_keyframes": ("", " (0 = only the optimize service)")}
RANGE_OVERRIDES = {"optimize_every_n_keyframes": {"min": 0, "max": 100000},
                   "global_every_n_keyframes": {"min": 0, "max": 100000}}


def _description_mismatches(cls) -> list[str]:
    """Every way a core-backed parameter's help/min/max/choices differ from its core field's metadata
    beyond the affixes and overrides listed above."""
    out = []
    for f in _core_fields(cls):
        core_field, _ = field_at(*f.metadata["core"])
        core = core_field.metadata
        if not core.get("help"):
            out.append(f"{f.name}: core field {f.metadata['core'][1]} has no description")
            continue
        prefix, suffix = HELP_AFFIXES.get(f.name, ("", ""))
        if f.metadata["help"] != prefix + core["help"] + suffix:
            out.append(f"{f.name}: help {f.metadata['help']!r} is not the core's {core['help']!r}")
        want = {"min": core["min"], "max": core["max"], **RANGE_OVERRIDES.get(f.name, {})}
        for key, value in want.items():
            if f.metadata[key] != value:
                out.append(f"{f.name}: {key} {f.metadata[key]} is not the core's {value}")
        choices = core["choices"] and tuple(dict.fromkeys("" if c is None else c for c in core["choices"]))
        if f.metadata["choices"] != choices:
            out.append(f"{f.name}: choices {f.metadata['choices']} are not the core's {choices}")
    return out


@pytest.mark.parametrize("cls", [LocalizationParams, MappingParams])
def test_core_parameter_description_and_range_are_the_core_fields(cls):
    assert _description_mismatches(cls) == []
    # written once: no core description is typed again in the ROS schema
    text = (REPO_ROOT / "mast3r_ros" / "ros" / "core" / "params.py").read_text(encoding="utf-8")
    again = [f.name for f in _core_fields(cls) if f'"{field_at(*f.metadata["core"])[0].metadata["help"]}' in text]
    assert not again, f"descriptions written again in params.py: {again}"


def test_a_description_written_in_the_ros_layer_is_caught():
    @dataclasses.dataclass
    class Drifted(MappingParams):  # the old way: help and range typed again next to the core path
        retrieval_k: int = param(5, "extra pairs with older keyframes", min=1, max=50,
                                 core=(IncrementalConfig, "retrieval_k"))
    found = sorted(" ".join(m.split()[:2]) for m in _description_mismatches(Drifted))
    assert found == ["retrieval_k: help", "retrieval_k: max", "retrieval_k: min"]


@pytest.mark.parametrize("core_cls", [LocalizerConfig, Mast3rFrontEndConfig, IncrementalConfig])
def test_core_defaults_satisfy_their_own_constraints(core_cls):
    checked = 0
    for path in _flatten(core_cls()):
        f, value = field_at(core_cls, path)
        meta = f.metadata
        if "help" not in meta:
            continue
        checked += 1
        assert meta["min"] is None or value >= meta["min"], (path, value)
        assert meta["max"] is None or value <= meta["max"], (path, value)
        assert meta["choices"] is None or value in meta["choices"], (path, value)
    assert checked == {LocalizerConfig: 9, Mast3rFrontEndConfig: 7, IncrementalConfig: 15}[core_cls]
