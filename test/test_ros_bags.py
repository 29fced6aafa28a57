"""Bag tools: `mast3r-ros make-bag` on real 7-Scenes frames (and a tiny TUM sequence for real
timestamps), read back with rosbags' own CDR reader and checked against the dataset files read
independently; `mast3r-ros play` over DDS to a subscriber in another process."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("rosbags")

from rosbags.rosbag2 import Reader
from scipy.spatial.transform import Rotation

from mast3r_ros.cli import main as cli_main
from mast3r_ros.ros.bag.bag_io import read_bag, typestore

from .live_client import unique_domain_id

HERE = Path(__file__).resolve().parent
FRAMES = "0:30:3"  # 7-Scenes redkitchen keeps every 3rd frame: 0, 3, ..., 27 -> 10 frames
INDICES = list(range(0, 30, 3))
TOPICS = {"/camera/image_raw": "sensor_msgs/msg/Image", "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
          "/camera/depth/image_raw": "sensor_msgs/msg/Image", "/ground_truth/pose": "geometry_msgs/msg/PoseStamped",
          "/tf_static": "tf2_msgs/msg/TFMessage"}


@pytest.fixture(scope="module")
def scene(data_dir: Path) -> Path:
    return data_dir / "7scenes_redkitchen"


@pytest.fixture(scope="module")
def bags(scene: Path, tmp_path_factory) -> dict[str, Path]:
    """The same 10 frames written once per storage plugin."""
    out = {}
    for storage in ("mcap", "sqlite3"):
        out[storage] = tmp_path_factory.mktemp("bags") / f"redkitchen_{storage}"
        assert cli_main(["make-bag", "--dataset", str(scene), "--frames", FRAMES, "--out", str(out[storage]),
                         "--storage", storage]) == 0
    return out


@pytest.fixture(params=["mcap", "sqlite3"])
def bag(request, bags: dict[str, Path]) -> Path:
    return bags[request.param]


def _rosbags_messages(path: Path):
    """(topic, msgtype, log time, message) decoded by rosbags' own CDR deserialiser."""
    store = typestore()
    with Reader(path) as reader:
        for conn, ns, raw in reader.messages():
            yield conn.topic, conn.msgtype, ns, store.deserialize_cdr(raw, conn.msgtype)


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def test_every_message_deserialises_with_its_type(bag: Path):
    counts: dict[str, int] = {}
    with Reader(bag) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == TOPICS
    for topic, msgtype, _ns, msg in _rosbags_messages(bag):
        assert msg.__msgtype__ == msgtype
        counts[topic] = counts.get(topic, 0) + 1
    assert counts == {t: (1 if t == "/tf_static" else len(INDICES)) for t in TOPICS}


def test_stamps_are_frame_index_over_30_hz(bag: Path):
    by_topic: dict[str, list[tuple[int, int]]] = {}
    for topic, _t, ns, msg in _rosbags_messages(bag):
        if topic != "/tf_static":
            by_topic.setdefault(topic, []).append((ns, _stamp(msg)))
    want = [round(i / 30 * 1e9) for i in INDICES]
    for topic, pairs in by_topic.items():
        assert [p[0] for p in pairs] == want, topic          # log time
        assert [p[1] for p in pairs] == want, topic          # header stamp


def test_content_matches_the_dataset_files(bag: Path, scene: Path):
    data = scene / "data"
    K = np.loadtxt(data / "camera-intrinsics.txt")
    seen = set()
    for topic, _t, ns, msg in _rosbags_messages(bag):
        i = round(ns * 30 / 1e9)
        stem = data / f"frame-{i:06d}"
        if topic == "/camera/image_raw":
            assert (msg.encoding, msg.width, msg.height, msg.step) == ("rgb8", 640, 480, 1920)
            assert msg.header.frame_id == "camera_optical_frame"
            bgr = cv2.imread(str(stem) + ".color.jpg")
            assert np.array_equal(msg.data.reshape(480, 640, 3), bgr[:, :, ::-1])
        elif topic == "/camera/depth/image_raw":
            assert msg.encoding == "16UC1" and not msg.is_bigendian
            raw = cv2.imread(str(stem) + ".depth.png", cv2.IMREAD_UNCHANGED)
            got = msg.data.view("<u2").reshape(480, 640)
            expect = np.where(raw == 65535, 0, raw)  # the readers' "invalid" code becomes 0
            assert np.array_equal(got, expect)
        elif topic == "/camera/camera_info":
            np.testing.assert_array_equal(msg.k.reshape(3, 3), K)
            assert (msg.width, msg.height) == (640, 480) and not np.any(msg.d)
        elif topic == "/ground_truth/pose":
            T = np.loadtxt(str(stem) + ".pose.txt")
            assert msg.header.frame_id == "map"
            p, q = msg.pose.position, msg.pose.orientation
            np.testing.assert_allclose([p.x, p.y, p.z], T[:3, 3], atol=1e-12)
            R = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
            np.testing.assert_allclose(R, T[:3, :3], atol=1e-3)  # GT is orthonormal to ~4e-4
        else:
            (tf,) = msg.transforms
            assert (tf.header.frame_id, tf.child_frame_id) == ("base_link", "camera_optical_frame")
            q = tf.transform.rotation
            np.testing.assert_allclose(np.abs([q.x, q.y, q.z, q.w]), 0.5)  # REP-103 camera rotation
        seen.add(topic)
    assert seen == set(TOPICS)


def test_read_bag_gives_rclpy_messages(bag: Path):
    from sensor_msgs.msg import Image

    images = [m for topic, _ns, m in read_bag(bag, ["/camera/image_raw"])]
    assert len(images) == len(INDICES) and all(isinstance(m, Image) for m in images)


def _tiny_tum(root: Path) -> list[float]:
    """Three 16x12 frames with TUM timestamps, depth and ground truth; returns the stamps."""
    stamps = [1305031102.175304, 1305031102.211214, 1305031102.243211]
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rgb_lines, depth_lines, gt_lines = [], [], []
    for k, t in enumerate(stamps):
        cv2.imwrite(str(root / f"rgb/{t:.6f}.png"), np.full((12, 16, 3), 40 * k, np.uint8))
        cv2.imwrite(str(root / f"depth/{t:.6f}.png"), np.full((12, 16), 5000 + k, np.uint16))
        rgb_lines.append(f"{t:.6f} rgb/{t:.6f}.png")
        depth_lines.append(f"{t:.6f} depth/{t:.6f}.png")
        gt_lines.append(f"{t:.4f} {k} 0 1.5 0 0 0 1")
    for name, lines in (("rgb", rgb_lines), ("depth", depth_lines), ("groundtruth", gt_lines)):
        (root / f"{name}.txt").write_text("# test\n" + "\n".join(lines) + "\n")
    return stamps


def test_dataset_timestamps_are_used_when_present(tmp_path: Path):
    stamps = _tiny_tum(tmp_path / "tum")
    out = tmp_path / "tum_bag"
    assert cli_main(["make-bag", "--dataset", str(tmp_path / "tum"), "--frames", "0:3",
                     "--out", str(out)]) == 0
    got = {}
    for topic, _t, ns, msg in _rosbags_messages(out):
        got.setdefault(topic, []).append((ns, msg))
    for ns, msg in got["/camera/image_raw"]:
        assert _stamp(msg) == ns
    assert np.allclose([ns / 1e9 for ns, _ in got["/camera/image_raw"]], stamps, atol=1e-6, rtol=0)
    depth = [m.data.view("<u2")[0] for _, m in got["/camera/depth/image_raw"]]
    assert depth == [1000, 1000, 1000]  # 5000 units/m -> 1.0 m -> 1000 mm (sub-mm steps round away)
    assert [m.pose.position.x for _, m in got["/ground_truth/pose"]] == [0.0, 1.0, 2.0]


def test_rgbd_calib_bag_carries_the_colour_camera_of_the_map(scene: Path, tmp_path: Path):
    """`make-bag --rgbd-calib 7scenes` and `map build --rgbd-calib 7scenes` describe the same camera:
    camera_info = the calibration's colour K (not the dataset's depth-camera K), ground truth = the
    colour camera's pose, which is what the map's keyframes store."""
    from mast3r_ros.datasets.calibration import RgbdCalibration
    from mast3r_ros.datasets.readers import open_dataset
    from mast3r_ros.localization.frontends import make_frontend
    from mast3r_ros.map import KeyframeMap
    from mast3r_ros.map.build import build_map

    cal = RgbdCalibration.load("7scenes")
    out = tmp_path / "bag"
    assert cli_main(["make-bag", "--dataset", str(scene), "--frames", "0:12:3", "--rgbd-calib", "7scenes",
                     "--out", str(out)]) == 0
    dataset_K = np.loadtxt(scene / "data" / "camera-intrinsics.txt")
    assert dataset_K[0, 0] == 585.0  # the file holds the depth camera's focal length
    infos = [m for _t, _ns, m in read_bag(out, ["/camera/camera_info"])]
    assert len(infos) == 4
    for m in infos:  # exact: [525, 525, 320, 240] of the preset
        np.testing.assert_array_equal(m.k.reshape(3, 3), cal.colour_K(dataset_K))
    poses = {round(ns * 30 / 1e9): m.pose for _t, ns, m in read_bag(out, ["/ground_truth/pose"])}
    build_map(open_dataset(scene), "0:12:3", make_frontend("classical"), tmp_path / "map", calib=cal)
    with KeyframeMap.open(tmp_path / "map") as kmap:
        kfs = {kf.frame_index: kf for kf in (kmap.get_keyframe(i, load_image=False) for i in kmap.keyframe_ids())}
    assert sorted(kfs) == [0, 3, 6, 9]
    for i, kf in kfs.items():
        np.testing.assert_array_equal(kf.K, infos[0].k.reshape(3, 3))  # the node's K = the map's K
        raw = np.loadtxt(scene / "data" / f"frame-{i:06d}.pose.txt")
        T = cal.colour_pose(raw)
        p, q = poses[i].position, poses[i].orientation
        np.testing.assert_allclose([p.x, p.y, p.z], T[:3, 3], atol=1e-12)
        np.testing.assert_allclose(Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix(), T[:3, :3], atol=1e-3)
        np.testing.assert_allclose(kf.T_map_cam, T, atol=1e-12)  # ground truth in the map's own frame
        # the colour camera sits 2.56 cm from the depth camera the dataset poses describe (1.2e-6 m
        # measured difference: the GT rotations are orthonormal only to ~4e-4)
        assert abs(np.linalg.norm(T[:3, 3] - raw[:3, 3]) - np.linalg.norm(cal.T_rgb_depth[:3, 3])) < 5e-6


def test_make_bag_refuses_and_leaves_nothing_behind(scene: Path, tmp_path: Path, capsys):
    out = tmp_path / "b"
    assert cli_main(["make-bag", "--dataset", str(scene), "--frames", "5000:6000", "--out", str(out)]) == 2
    assert "selects no frame" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    out.mkdir()
    assert cli_main(["make-bag", "--dataset", str(scene), "--frames", "0:3", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert cli_main(["make-bag", "--dataset", str(tmp_path / "nope"), "--frames", "0:3",
                     "--out", str(tmp_path / "c")]) == 2


# ---------------------------------------------------------------- play over DDS


def _ros_env() -> dict[str, str]:
    """This machine only, and a domain of our own so parallel runs never see each other."""
    return {**os.environ, "ROS_DOMAIN_ID": str(unique_domain_id()), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_play_publishes_the_bag_over_dds(bags: dict[str, Path]):
    bag, rate = bags["mcap"], 2.0  # the DDS side does not depend on the storage plugin
    env = _ros_env()
    listener = subprocess.Popen([sys.executable, str(HERE / "ros_bag_listener.py"), str(len(INDICES)), "40"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    player = None
    try:
        player = subprocess.run(
            [sys.executable, "-m", "mast3r_ros.cli", "play", str(bag), "--rate", str(rate),
             "--wait-for", "/camera/image_raw", "/ground_truth/pose", "/tf_static", "--wait-timeout", "30",
             # The player sees the listener before the listener's side of the DDS match is done; a
             # sample sent in that window is repaired only at the next heartbeat (seconds), which
             # would bunch the arrivals the span check below times.
             "--delay", "1.0"],
            check=False, capture_output=True, text=True, env=env, timeout=60)
        out, err = listener.communicate(timeout=45)
    finally:
        _stop(listener)
    assert player.returncode == 0, player.stderr
    assert "/camera/image_raw 10" in player.stdout
    assert listener.returncode == 0, err
    got = json.loads(out)
    want = [round(i / 30 * 1e9) for i in INDICES]
    assert [m["stamp"] for m in got["images"]] == want          # recorded stamps, in order, none lost
    assert [m["stamp"] for m in got["poses"]] == want
    assert got["tf_static"] == [["base_link", "camera_optical_frame"]]
    expected = {round(ns * 30 / 1e9): msg for _t, ns, msg in read_bag(bag, ["/camera/image_raw"])}
    for m in got["images"]:
        src = expected[round(m["stamp"] * 30 / 1e9)]
        assert m["md5"] == hashlib.md5(bytes(src.data)).hexdigest() and m["size"] == [640, 480]
    span = got["images"][-1]["t"] - got["images"][0]["t"]
    nominal = (INDICES[-1] - INDICES[0]) / 30 / rate   # 0.45 s at rate 2
    assert 0.8 * nominal <= span <= nominal + 1.0, span


def test_play_stops_cleanly_on_sigterm(bags: dict[str, Path]):
    env = _ros_env()
    proc = subprocess.Popen([sys.executable, "-m", "mast3r_ros.cli", "play", str(bags["mcap"]), "--rate", "0.05"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().startswith("play: Fast DDS profile")  # set before the participant
        assert proc.stdout.readline().startswith("play: ")  # publishing (20x slower than real time)
        time.sleep(0.3)
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    finally:
        _stop(proc)
    assert proc.returncode == 0, err
    assert "interrupted" in out and "/camera/image_raw 1," in out  # only the first frame went out


def test_play_clock_is_steady(bags: dict[str, Path]):
    """`play --clock`: /clock at a steady 40 Hz of wall time (not only at messages, which come at
    10 Hz in this bag), bag time advancing with wall time from the first stamp to the last."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock

    env = _ros_env()
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(env["ROS_DOMAIN_ID"]))
    node = rclpy.create_node("clock_listener", context=ctx)
    got: list[tuple[float, int]] = []
    node.create_subscription(Clock, "/clock", lambda m: got.append(
        (time.monotonic(), m.clock.sec * 10**9 + m.clock.nanosec)), QoSProfile(depth=1000,
                                                                                reliability=ReliabilityPolicy.RELIABLE))
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    player = subprocess.Popen([sys.executable, "-m", "mast3r_ros.cli", "play", str(bags["mcap"]), "--clock",
                               "--wait-for", "/clock", "--delay", "1.0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        while player.poll() is None:
            ex.spin_once(timeout_sec=0.01)
        out, err = player.communicate(timeout=10)
    finally:
        _stop(player)
        node.destroy_node()
        ctx.try_shutdown()
    assert player.returncode == 0, err
    t = np.array([a for a, _ in got])
    bag = np.array([b for _, b in got])
    first, last = INDICES[0] * 10**9 // 30, round(INDICES[-1] / 30 * 1e9)
    # the clock runs on wall time: its last tick may fall just after the last message (4.6 us seen)
    assert bag[0] == first and np.all(np.diff(bag) >= 0) and bag[-1] <= last + 25_000_000
    playing = (bag > first)                               # after the 1 s delay (clock held at the first stamp)
    span = (bag[playing][-1] - first) / 1e9
    assert span > 0.8 * (last - first) / 1e9               # bag time reached the last messages
    steps = np.diff(t[playing])
    n = int(playing.sum())
    # 40 Hz over the 0.9 s of bag: ~36 ticks (10 with a clock per message); arrivals are steady
    assert n >= 0.8 * 40 * span, (n, span)
    assert np.median(steps) == pytest.approx(0.025, abs=0.005) and steps.max() < 0.2, steps
    # bag time follows wall time at rate 1
    assert np.median(np.diff(bag[playing]) / 1e9) == pytest.approx(0.025, abs=0.005)
