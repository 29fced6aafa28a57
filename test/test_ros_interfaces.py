"""Our ROS 2 interfaces (msg/, srv/) as generated into .venv by scripts/setup_venv.sh: they import
as `mast3r_ros.msg` / `mast3r_ros.srv` beside the editable package, construct, and survive a CDR
serialise -> deserialise round trip through the real rmw type support."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

rclpy_serialization = pytest.importorskip("rclpy.serialization")

from geometry_msgs.msg import TransformStamped

import mast3r_ros
from mast3r_ros.msg import LocalizationStatus
from mast3r_ros.srv import LoadMap, Localize, SaveMap, SetReference

REPO = Path(__file__).resolve().parent.parent


def _round_trip(msg):
    data = rclpy_serialization.serialize_message(msg)
    assert isinstance(data, bytes) and len(data) > 4  # 4-byte CDR encapsulation header + payload
    return rclpy_serialization.deserialize_message(data, type(msg))


def test_generated_modules_join_the_editable_package():
    import mast3r_ros.msg as msg_pkg

    # Same package object: our sources and the generated modules live in one folder.
    assert Path(msg_pkg.__file__).parent.parent == Path(mast3r_ros.__file__).parent
    assert hasattr(mast3r_ros, "__version__")  # our __init__, not rosidl's empty one


def test_status_constants_match_the_core_state_names():
    from mast3r_ros.localization.state import LocState

    constants = {name[len("STATE_"):]: getattr(LocalizationStatus, name)
                 for name in dir(LocalizationStatus) if name.startswith("STATE_")}
    assert set(constants) == {s.value for s in LocState}
    assert sorted(constants.values()) == [0, 1, 2, 3]


def test_status_round_trip_keeps_every_field():
    msg = LocalizationStatus()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1700000000, 123456789
    msg.header.frame_id = "map"
    msg.state = LocalizationStatus.STATE_RELOCALIZING
    msg.pose_published = True
    msg.matches, msg.inliers = 812, 345
    msg.median_reprojection_px = 1.25
    msg.time_features, msg.time_retrieval, msg.time_matching = 0.5, 0.25, 0.125
    msg.time_pose, msg.time_total, msg.latency = 0.0625, 1.0, 1.5
    msg.keyframe_ids = [17, 3, 250]
    msg.frames_dropped = 4
    msg.message = "median reprojection 7.1 px > 6.0 px"
    back = _round_trip(msg)
    assert back == msg
    assert list(back.keyframe_ids) == [17, 3, 250]
    assert back.header.stamp.nanosec == 123456789


def test_status_nan_survives():
    back = _round_trip(LocalizationStatus(median_reprojection_px=float("nan")))
    assert math.isnan(back.median_reprojection_px)


def test_status_rejects_wrong_field_types():
    # Field checks are off by default in Jazzy (ROS_PYTHON_CHECK_FIELDS); ask for them.
    with pytest.raises(AssertionError):
        LocalizationStatus(check_fields=True, inliers="many")
    with pytest.raises(AssertionError):
        LocalizationStatus(check_fields=True, state=300)  # uint8


def test_service_requests_and_responses_round_trip():
    req = SetReference.Request(image_path="/data/ref.jpg", use_current_frame=False, depth_path="")
    req.reference_pose.header.frame_id = "map"
    req.reference_pose.pose.position.x = 1.5
    req.reference_pose.pose.orientation.z = math.sqrt(0.5)
    req.reference_pose.pose.orientation.w = math.sqrt(0.5)
    loc = Localize.Request(global_localization=False, radius=2.0)
    loc.pose_hint.header.frame_id = "map"
    loc_res = Localize.Response(success=True, message="")
    loc_res.pose.pose.covariance[0] = 0.01
    msgs = [
        req, SetReference.Response(success=True, message="ok"),
        LoadMap.Request(map_dir="/maps/kitchen"), LoadMap.Response(success=True, num_keyframes=42),
        SaveMap.Request(map_dir="", overwrite=True),
        SaveMap.Response(success=False, message="map_dir exists", map_dir="/m", num_keyframes=0),
        loc, loc_res,
    ]
    for msg in msgs:
        assert _round_trip(msg) == msg, type(msg).__name__


def test_tf_message_round_trip():
    from tf2_msgs.msg import TFMessage

    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = "map", "odom"
    t.transform.translation.x = 0.25
    t.transform.rotation.w = 1.0
    msg = TFMessage(transforms=[t, TransformStamped(child_frame_id="base_link")])
    back = _round_trip(msg)
    assert back == msg and len(back.transforms) == 2


def test_package_xml_is_valid_for_catkin_pkg():
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    pkg = catkin_pkg.parse_package(str(REPO / "package.xml"))  # validates e-mails and format 3
    pkg.validate()
    assert pkg.name == "mast3r_ros" and pkg.package_format == 3
    assert "rosidl_interface_packages" in [g.name for g in pkg.member_of_groups]
    names = {d.name for d in pkg.build_depends + pkg.exec_depends + pkg.buildtool_depends}
    # the full run-dependency list is checked against the imports in test_ros_package_manifest.py
    for dep in ("rclpy", "sensor_msgs", "geometry_msgs", "std_msgs", "rosidl_default_generators",
                "rosidl_default_runtime", "ament_cmake", "ament_cmake_python"):
        assert dep in names, dep
    interfaces = sorted(p.name for p in (REPO / "msg").glob("*.msg")) + \
        sorted(p.name for p in (REPO / "srv").glob("*.srv"))
    cmake = (REPO / "CMakeLists.txt").read_text()
    for name in interfaces:  # every definition is generated
        assert name in cmake, name


@pytest.mark.parametrize("type_name", ["tf2_msgs/msg/TFMessage", "mast3r_ros/msg/LocalizationStatus"])
def test_type_hash_matches_an_independent_computation(type_name):
    # Our venv-built tf2_msgs must be wire-compatible with the real Jazzy one (same RIHS01 type
    # hash), and rosbags must see our own status message as rosidl does (bags and replay).
    import json
    import sys

    from mast3r_ros.ros.bag.bag_io import typestore

    pkg, _, name = type_name.split("/")
    generated = Path(sys.prefix) / "share" / pkg / "msg" / f"{name}.json"
    if not generated.exists():
        pytest.skip(f"{generated} not here (not the .venv build)")
    desc = json.loads(generated.read_text())
    ours = next(h["hash_string"] for h in desc["type_hashes"] if h["type_name"] == type_name)
    assert ours == typestore().hash_rihs01(type_name)
