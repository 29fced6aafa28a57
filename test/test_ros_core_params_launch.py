"""Parameter schemas (validation with reasons, YAML files in config/) and the launch description."""
from __future__ import annotations

import pytest

from mast3r_ros.paths import REPO_ROOT
from mast3r_ros.ros.core.params import (
    LocalizationParams,
    MappingParams,
    ParamError,
    load_params_file,
)
from mast3r_ros.ros.nodes.launch_description import DEFAULTS, LAUNCH_ARGUMENTS, describe


def test_config_files_hold_every_parameter_with_its_default():
    for cls, name in ((LocalizationParams, "localization"), (MappingParams, "mapping")):
        values = load_params_file(REPO_ROOT / "config" / f"{name}.yaml", f"{name}_node")
        assert set(values) == set(cls.specs())
        cls.from_dict(values)  # valid as shipped


@pytest.mark.parametrize("changes,reason", [
    ({"frontend": "orb"}, "frontend must be one of ['classical', 'mast3r'], got 'orb'"),
    ({"localizer.gates.min_inliers": 2}, "localizer.gates.min_inliers must be >= 4, got 2"),
    ({"tf_publish_rate": "fast"}, "tf_publish_rate must be a number"),
    ({"publish_tf": 1}, "publish_tf must be a bool"),
    ({"frontend": "mast3r"}, "frontend 'mast3r' needs the mast3r.checkpoint parameter"),
    ({"base_frame": "map"}, "map_frame, odom_frame and base_frame must differ"),
    ({"map_path": "/nonexistent/map"}, "map_path '/nonexistent/map' is not a folder"),
    ({"mast3r.image_size": 500}, "mast3r.image_size must be a multiple of 16"),
    ({"localizer.gates.min_inliers_global": 10},
     "localizer.gates.min_inliers_global (10) must be >= localizer.gates.min_inliers (20)"),
    ({"nonsense": 1}, "unknown parameter 'nonsense'"),
    ({"localizer.pnp.max_reproj": 1}, "unknown parameter 'localizer.pnp.max_reproj' (did you mean "
                                      "'localizer.pnp.max_reproj_px'?)"),
    ({"min_inliers": 25}, "parameter 'min_inliers' was renamed to 'localizer.gates.min_inliers'"),
    ({"mast3r.device": "tpu"}, "mast3r.device must be cpu, cuda or cuda:N"),
])
def test_bad_values_are_refused_with_a_reason(changes, reason):
    with pytest.raises(ParamError) as exc:
        LocalizationParams().replace(changes)
    assert reason in str(exc.value)


def test_int_for_float_is_accepted_and_coerced():
    p = LocalizationParams().replace({"localizer.gates.max_jump_m": 1}, tf_publish_rate=10)
    assert isinstance(p.localizer.gates.max_jump_m, float) and p.tf_publish_rate == 10.0


def test_params_file_sections(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    localizer:\n      gates:\n        min_inliers: 25\n"
                 "/robot/localization_node:\n  ros__parameters:\n    localizer: {gates: {max_jump_m: 2.0}}\n"
                 "mapping_node:\n  ros__parameters:\n    mapper: {max_keyframes: 7}\n")
    # nested mappings arrive as dotted names, as ROS 2 reads them
    assert load_params_file(f, "localization_node") == {"localizer.gates.min_inliers": 25,
                                                        "localizer.gates.max_jump_m": 2.0}
    f.write_text("localization_node:\n  min_inliers: 3\n")
    with pytest.raises(ParamError, match="no ros__parameters"):
        load_params_file(f, "localization_node")


@pytest.mark.parametrize("mode,file_text,items,reason", [
    ("localization", "", ["top_k_keyframes:=3"],
     "parameter 'top_k_keyframes' was renamed to 'localizer.retrieval.top_k'"),
    ("mapping", "/**:\n  ros__parameters:\n    lr1: 0.01\n", [],
     "parameter 'lr1' was renamed to 'mapper.alignment.lr1'"),
    ("mapping", "", ["mapper.alignment.lrr1:=0.01"],
     "unknown mapping_node parameter 'mapper.alignment.lrr1' (did you mean 'mapper.alignment.lr1'?)"),
    ("localization", "", ["localizer.retrieval.top_k=3"], "must look like NAME:=VALUE"),
])
def test_mast3r_ros_launch_refuses_old_and_unknown_names(tmp_path, mode, file_text, items, reason):
    from mast3r_ros.cli.launch import check_parameter_names

    params_file = ""
    if file_text:
        params_file = str(tmp_path / "p.yaml")
        (tmp_path / "p.yaml").write_text(file_text)
    with pytest.raises(ValueError) as exc:
        check_parameter_names(mode, params_file, items)
    assert reason in str(exc.value) and "\n" not in str(exc.value)
    # the shipped files and the new names pass
    check_parameter_names(mode, "", ["localizer.retrieval.top_k:=3" if mode == "localization"
                                     else "mapper.alignment.lr1:=0.01", "use_sim_time:=true"])


def test_launch_checkpoint_argument_fills_the_nested_parameter():
    (node,) = describe({"checkpoint": "/c.pth"})
    assert node.parameters[1]["mast3r.checkpoint"] == "/c.pth" and "mast3r.checkpoint:=/c.pth" in node.ros_args()


def test_launch_defaults_localization():
    (node,) = describe({})
    assert node.executable == "localization_node" and node.namespace == "mast3r"
    assert dict(node.remappings) == {"image": "/camera/image_raw", "camera_info": "/camera/camera_info",
                                     "depth": "/camera/depth/image_raw"}
    assert node.parameters[0].endswith("config/localization.yaml")
    args = node.ros_args()
    assert args[:5] == ["--ros-args", "--log-level", "info", "-r", "__node:=localization_node"]
    assert "__ns:=/mast3r" in args and "use_sim_time:=false" in args


def test_launch_mapping_with_overrides(tmp_path):
    specs = describe({"mode": "mapping", "map": str(tmp_path), "namespace": "robot1/slam",
                      "image_topic": "/front/image", "publish_tf": "false", "checkpoint": "/c.pth",
                      "base_frame": "base_footprint", "rviz": "true", "params_file": "/p.yaml"})
    node, rviz = specs
    assert node.executable == "mapping_node" and node.namespace == "robot1/slam"
    assert node.parameters == ["/p.yaml", {"use_sim_time": False, "map_dir": str(tmp_path),
                                           "mast3r.checkpoint": "/c.pth",  # mapping with frontend mast3r
                                           "base_frame": "base_footprint", "publish_tf": False}]
    assert ("image", "/front/image") in node.remappings
    assert rviz.package == "rviz2" and rviz.arguments[1].endswith("config/mast3r.rviz")
    assert "-p" in node.ros_args() and "publish_tf:=false" in node.ros_args()


def test_launch_odom_qos_and_log_level():
    (node,) = describe({"publish_odom_tf": "false", "qos_image": "reliable", "log_level": "debug"})
    assert node.parameters[1]["publish_odom_tf"] == "false" and node.parameters[1]["qos_image"] == "reliable"
    args = node.ros_args()
    assert args[:3] == ["--ros-args", "--log-level", "debug"]
    assert "publish_odom_tf:='false'" in args  # a string, as the tri-state parameter declares
    (default,) = describe({})
    assert "publish_odom_tf" not in default.parameters[1] and default.log_args() == ["--log-level", "info"]
    with pytest.raises(ValueError, match="log_level must be one of"):
        describe({"log_level": "loud"})


@pytest.mark.parametrize("args,match", [({"mode": "slam"}, "mode must be one of"),
                                        ({"rviz": "maybe"}, "rviz must be true or false"),
                                        ({"maps": "x"}, "unknown launch argument")])
def test_launch_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        describe(args)


def test_launch_file_declares_exactly_the_arguments():
    text = (REPO_ROOT / "launch" / "mast3r.launch.py").read_text()
    assert "LAUNCH_ARGUMENTS" in text and "describe(values)" in text
    names = [n for n, _, _ in LAUNCH_ARGUMENTS]
    assert names[0] == "mode" and DEFAULTS["namespace"] == "mast3r"
    for name in ("map", "params_file", "checkpoint", "image_topic", "camera_info_topic", "depth_topic",
                 "publish_tf", "namespace", "use_sim_time", "rviz", "map_frame", "base_frame",
                 "publish_odom_tf", "qos_image", "log_level"):
        assert name in names


def test_rviz_config_shows_the_interface():
    import yaml

    doc = yaml.safe_load((REPO_ROOT / "config" / "mast3r.rviz").read_text())
    vm = doc["Visualization Manager"]
    assert vm["Global Options"]["Fixed Frame"] == "map"
    displays = {d["Class"].split("/")[-1]: d for d in vm["Displays"]}
    for cls in ("TF", "PointCloud2", "Path", "PoseWithCovariance", "Image"):
        assert cls in displays
    assert displays["PointCloud2"]["Topic"]["Value"] == "/mast3r/cloud_map"
    assert displays["PointCloud2"]["Topic"]["Durability Policy"] == "Transient Local"
    assert displays["PoseWithCovariance"]["Topic"]["Value"] == "/mast3r/localization_pose"
    tools = {t["Class"].split("/")[-1]: t for t in vm["Tools"]}
    assert tools["SetInitialPose"]["Topic"]["Value"] == "/initialpose"
