"""One vocabulary, one default per parameter: a ROS parameter that fills a core dataclass field is that
field under its nested dotted name (``localizer.pnp.max_reproj_px``), declared with the field's default
(the same object), description and range; the node's params object holds the core dataclasses it
fills, so every nested name reaches exactly its field and nothing else; old flat names are refused
naming the new name; every ROS-only parameter is read by its node; and the shipped ``config/*.yaml``
are the schemas' defaults, nested."""
from __future__ import annotations

import dataclasses
import functools
import re

import pytest
import yaml

from mast3r_ros.config_fields import field_at
from mast3r_ros.localization.frontends.mast3r_config import Mast3rFrontEndConfig
from mast3r_ros.localization.localizer import LocalizerConfig
from mast3r_ros.localization.mapfree import MapFreeConfig
from mast3r_ros.mapping.incremental_config import IncrementalConfig
from mast3r_ros.mapping.monocular_stream_config import MonocularStreamConfig
from mast3r_ros.paths import REPO_ROOT
from mast3r_ros.ros.core.params import (
    NEVER,
    ONLY_SERVICE,
    RENAMED,
    LocalizationParams,
    MappingParams,
    ParamError,
    load_params_file,
    params_yaml,
)

# each node's sections: params field -> the core dataclass it holds
SECTIONS = {LocalizationParams: {"mast3r": Mast3rFrontEndConfig, "localizer": LocalizerConfig},
            MappingParams: {"mapper": IncrementalConfig, "mast3r": Mast3rFrontEndConfig,
                            "mono": MonocularStreamConfig}}
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
PARAMS = [LocalizationParams, MappingParams]


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


def _core_specs(cls):
    return [s for s in cls.specs().values() if s.section]


@pytest.mark.parametrize("cls", PARAMS)
def test_core_parameter_default_is_the_core_dataclass_default(cls):
    specs = _core_specs(cls)
    assert len(specs) == {LocalizationParams: 21, MappingParams: 25}[cls]  # mapping: 15 mapper, 5 mast3r, 5 mono
    declared = cls()
    for s in specs:
        assert s.name == f"{s.section}.{s.path}"  # the nested name is the field path under its section
        value = functools.reduce(getattr, s.path.split("."), SECTIONS[cls][s.section]())  # what the core holds
        ros = declared.value(s)  # what the node declares
        if value is None:  # ROS has no None: '' stands for it
            assert ros == "", s.name
        else:
            assert ros is value, f"{s.name} = {ros!r}, {SECTIONS[cls][s.section].__name__}.{s.path} = {value!r}"


def test_node_defaults_are_exactly_the_core_defaults():
    # the whole dataclasses, including fields no parameter sets: no parameter overrides a core default
    assert MappingParams().mapper == IncrementalConfig()
    assert MappingParams().mast3r == Mast3rFrontEndConfig() and MappingParams().mono == MonocularStreamConfig()
    assert LocalizationParams().localizer == LocalizerConfig()
    assert LocalizationParams().mast3r == Mast3rFrontEndConfig()
    for cls in PARAMS:  # and the shipped YAML builds the same objects
        mode = "localization" if cls is LocalizationParams else "mapping"
        assert cls.from_dict(load_params_file(REPO_ROOT / "config" / f"{mode}.yaml", f"{mode}_node")) == cls()


def _other_value(s, tmp_path):
    """Candidates for a valid ROS value different from the default."""
    special = {"mast3r.checkpoint": [str(tmp_path / "c.pth")], "map_path": [str(tmp_path)],
               "map_dir": [str(tmp_path / "m")], "mast3r.device": ["cuda:1"], "rgbd_calibration": ["7scenes"]}
    if s.name in special:
        return special[s.name]
    d = s.encode(s.default)
    if s.choices:
        return [c for c in s.choices if c != d]
    if isinstance(d, bool):
        return [not d]
    if isinstance(d, int):
        return [d + 16, d + 1, d - 1]  # image_size: a multiple of 16
    if isinstance(d, float):
        return [d + 0.25, d / 2]
    return [f"{d}_other"]


def _state(params, cls) -> dict:
    """{(section, field path): value} of every core field the params object holds."""
    return {(sec, path): v for sec in SECTIONS[cls] for path, v in _flatten(getattr(params, sec)).items()}


@pytest.mark.parametrize("cls", PARAMS)
def test_each_parameter_reaches_its_core_field_and_only_it(cls, tmp_path):
    (tmp_path / "c.pth").write_bytes(b"")
    base = cls()
    before = _state(base, cls)
    for s in cls.specs().values():
        changed = v = None
        for v in _other_value(s, tmp_path):
            try:
                changed = base.replace({s.name: v})
                break
            except ParamError:
                continue
        if changed is None:
            assert (cls, s.name) in UNCHANGEABLE, f"no valid other value for {s.name}"
            continue
        after = _state(changed, cls)
        diffs = {key for key, val in after.items() if val != before[key]}
        if not s.section:  # a node matter: no core field moves
            assert not diffs, f"{s.name} changes {diffs} but is a ROS-only parameter"
            continue
        assert diffs == {(s.section, s.path)}, f"{s.name} changes {diffs}"
        assert after[(s.section, s.path)] == (v or None if s.optional else v), (s.name, v)
        assert changed.value(s) == v  # and reads back as the ROS value


def test_zero_passes_means_never():
    p = MappingParams().replace({"mapper.optimize_every_n_keyframes": 0, "mapper.global_every": 0})
    assert p.mapper.optimize_every_n_keyframes == NEVER and p.mapper.global_every == NEVER
    assert p.to_dict()["mapper.global_every"] == 0  # and back: ROS shows its 0


@pytest.mark.parametrize("old,new", sorted(RENAMED.items()))
def test_old_flat_names_are_refused_naming_the_new_name(old, new):
    cls = LocalizationParams if new.split(".")[0] in SECTIONS[LocalizationParams] else MappingParams
    spec = cls.specs()[new]  # the new name exists
    with pytest.raises(ParamError) as exc:
        cls.from_dict({old: cls().value(spec)}, strict=False)
    assert str(exc.value) == f"parameter {old!r} was renamed to {new!r}"


def test_every_old_name_is_gone():
    names = set(LocalizationParams.specs()) | set(MappingParams.specs())
    assert not names & set(RENAMED)
    assert len(RENAMED) == 31  # every flat name that filled a core field before (16 + 15)


@pytest.mark.parametrize("cls", PARAMS)
def test_every_declared_parameter_is_read_by_its_node(cls):
    text = "\n".join((REPO_ROOT / "mast3r_ros" / s).read_text(encoding="utf-8")
                     for s in SOURCES[cls] + SHARED_SOURCES)
    # a section is handed to its component whole (test_each_parameter_reaches_its_core_field_and_only_it
    # shows each nested name arrives there); every ROS-only parameter is read by name
    unread = [n for n in [*SECTIONS[cls], *(s.name for s in cls.specs().values() if not s.section)]
              if not re.search(rf"\b(?:p|params|new)\.{n}\b", text)]
    assert not unread, f"{cls.__name__} declares parameters its node never reads: {unread}"


def test_shipped_yaml_is_the_schema_defaults_nested():
    for cls, mode in ((LocalizationParams, "localization"), (MappingParams, "mapping")):
        shipped = (REPO_ROOT / "config" / f"{mode}.yaml").read_text(encoding="utf-8")
        assert shipped == params_yaml(cls, f"{mode}_node"), f"regenerate config/{mode}.yaml with params_yaml"
    doc = yaml.safe_load((REPO_ROOT / "config" / "localization.yaml").read_text())["/**"]["ros__parameters"]
    assert doc["localizer"]["pnp"]["max_reproj_px"] == LocalizerConfig().pnp.max_reproj_px
    assert doc["mast3r"]["amp_dtype"] == "" and doc["map_path"] == ""
    doc = yaml.safe_load((REPO_ROOT / "config" / "mapping.yaml").read_text())["/**"]["ros__parameters"]
    assert doc["mapper"]["alignment"]["lr1"] == IncrementalConfig().alignment.lr1


@pytest.mark.parametrize("cls", PARAMS)
def test_core_parameter_description_and_range_are_the_core_fields(cls):
    for s in _core_specs(cls):
        core = field_at(SECTIONS[cls][s.section], s.path)[0].metadata
        never = s.zero_is_never  # a ROS 0 means NEVER: the one range and help ROS changes
        assert s.help == core["help"] + (ONLY_SERVICE if never else ""), s.name
        assert (s.min, s.max) == ((0, 100000) if never else (core["min"], core["max"])), s.name
        choices = core["choices"] and tuple(dict.fromkeys("" if c is None else c for c in core["choices"]))
        assert s.choices == choices, s.name
    # written once: no core description is typed again in the ROS schema
    text = (REPO_ROOT / "mast3r_ros" / "ros" / "core" / "params.py").read_text(encoding="utf-8")
    again = [s.name for s in _core_specs(cls) if f'"{s.help}' in text]
    assert not again, f"descriptions written again in params.py: {again}"


def test_dynamic_parameters():
    dyn = {n for cls in PARAMS for n, s in cls.specs().items() if s.dynamic}
    assert dyn == {"publish_tf", "transform_tolerance", "tf_timeout", "max_rate_hz", "publish_initialpose",
                   *(f"localizer.gates.{g}" for g in ("min_inliers", "min_inliers_global", "max_median_reproj_px",
                                                      "max_jump_m", "max_jump_deg"))}


@pytest.mark.parametrize("core_cls", [LocalizerConfig, Mast3rFrontEndConfig, IncrementalConfig, MapFreeConfig])
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
    assert checked == {LocalizerConfig: 12, Mast3rFrontEndConfig: 9, IncrementalConfig: 15, MapFreeConfig: 7}[core_cls]


def test_mapping_node_declares_only_the_mast3r_settings_it_reads():
    """The monocular engine matches with its own settings: the front-end's matching fields are not mapping
    parameters (a user setting one is told it is unknown instead of seeing it ignored)."""
    names = {n for n in MappingParams.specs() if n.startswith("mast3r.")}
    assert names == {"mast3r.checkpoint", "mast3r.device", "mast3r.amp_dtype", "mast3r.bf16_weights",
                     "mast3r.image_size"}
    with pytest.raises(ParamError, match="unknown parameter 'mast3r.subsample'"):
        MappingParams.from_dict({"mast3r.subsample": 4})
