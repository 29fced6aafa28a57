"""/initialpose like AMCL, live over DDS from a separate process: accepted before, during and after
frames; other frames than map refused with a logged reason; applied as the prior of the next frame
with its covariance as the search region; the node never dies. Shipped defaults; the client
publishes its frames with the Fast DDS profile `mast3r-ros play` loads."""
from __future__ import annotations

import signal
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mast3r_ros.msg")

from geometry_msgs.msg import PoseWithCovarianceStamped  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from mast3r_ros.datasets.calibration import RgbdCalibration  # noqa: E402
from mast3r_ros.datasets.readers import open_dataset  # noqa: E402
from mast3r_ros.geometry.transforms import with_nearest_rotation  # noqa: E402
from mast3r_ros.localization.frontends import make_frontend  # noqa: E402
from mast3r_ros.map.build import build_map  # noqa: E402
from mast3r_ros.ros.compat.conversions import make_header, stamp_to_ns  # noqa: E402
from mast3r_ros.ros.compat.conversions_geometry import T_BODY_OPTICAL, T_to_pose  # noqa: E402

from .live_client import LiveClient, start_launch, stop_process_tree, unique_domain_id  # noqa: E402

CAM = "camera_optical_frame"


def initialpose(T_map_base: np.ndarray, sigma_xy: float, frame: str = "map",
                sigma_yaw: float = 0.1) -> PoseWithCovarianceStamped:
    m = PoseWithCovarianceStamped(header=make_header(time.time_ns(), frame))
    m.pose.pose = T_to_pose(with_nearest_rotation(T_map_base))
    cov = np.zeros((6, 6))
    cov[0, 0] = cov[1, 1] = sigma_xy ** 2
    cov[5, 5] = sigma_yaw ** 2  # rviz "2D Pose Estimate" style: x, y, yaw
    m.pose.covariance = cov.ravel().tolist()
    return m


def test_initialpose_before_during_after_frames(data_dir, tmp_path):
    ds = open_dataset(data_dir / "7scenes_redkitchen")
    cal = RgbdCalibration.load("7scenes")
    build_map(ds, "0:60:6", make_frontend("classical"), tmp_path / "map", calib=cal)
    domain = unique_domain_id()
    log = tmp_path / "launch.log"
    proc = start_launch("localization", domain, ["--map", str(tmp_path / "map")], log)
    client = LiveClient(domain, reliable_images=True)
    client.publish_static_tf("base_link", CAM, T_BODY_OPTICAL)
    frames = ds.frames("3:60:3")

    def T_map_base(f):
        return cal.colour_pose(f.T_world_cam) @ np.linalg.inv(T_BODY_OPTICAL)

    def send(f, timeout=20.0):
        """One frame (resent until DDS delivers it); its status."""
        deadline, sent = time.monotonic() + timeout, set()

        def answers():
            return [s for s in client.messages("status") if stamp_to_ns(s.header.stamp) in sent]

        while time.monotonic() < deadline:
            stamp = time.time_ns()
            sent.add(stamp)
            client.publish_frame(stamp, ds.load_rgb(f), cal.colour_K(ds.K), CAM)
            if client.wait_for(answers, 5.0):
                return answers()[0]
        raise AssertionError("no status:\n" + log.read_text()[-3000:])

    def logged(text, n=1):
        """Wait until the node has logged ``text`` n times (it logs once the prior is in place)."""
        assert client.wait_for(lambda: log.read_text().count(text) >= n, 30.0), log.read_text()[-3000:]

    try:
        assert client.wait_for_service(Trigger, "reset", 60), log.read_text()[-3000:]
        assert client.wait_for(lambda: client.node.count_subscribers("/initialpose") > 0, 20.0)
        # localization mode shows the loaded map: its cloud on the latched cloud_map
        assert client.wait_for(lambda: client.messages("cloud"), 10.0)
        cloud = client.messages("cloud")[-1]
        assert cloud.header.frame_id == "map" and cloud.width * cloud.height > 1000
        # before any frame: a pose in odom is refused (logged); a wrong pose in map with a tight
        # covariance (3 m off, sigma 5 cm) becomes the prior of the first frame, which is refused
        client.pub_initialpose.publish(initialpose(T_map_base(frames[0]), 0.05, frame="odom"))
        wrong = T_map_base(frames[0]).copy()
        wrong[0, 3] += 3.0
        client.pub_initialpose.publish(initialpose(wrong, 0.05))
        logged("/initialpose refused")
        logged("/initialpose accepted", 1)
        st = send(frames[0])
        assert not st.pose_published and "jump" in st.message, st.message
        # during frames: the true pose is the prior of the next frame, which is localized
        client.pub_initialpose.publish(initialpose(T_map_base(frames[1]), 0.3))
        logged("/initialpose accepted", 2)
        st = send(frames[1])
        assert st.pose_published, st.message
        poses_before = len(client.messages("pose"))
        for i, f in enumerate(frames[2:8]):   # more priors while frames stream
            if i % 2 == 0:
                client.pub_initialpose.publish(initialpose(T_map_base(f), 0.3))
                logged("/initialpose accepted", 3 + i // 2)
            send(f)
        assert len(client.messages("pose")) >= poses_before + 4
        # after frames: still accepted, the node lives on and answers services
        client.pub_initialpose.publish(initialpose(T_map_base(frames[8]), 0.3))
        logged("/initialpose accepted", 6)
        assert client.call(Trigger, "reset", Trigger.Request()).success
        assert send(frames[8]).pose_published
        text = log.read_text()
        assert "/initialpose refused: /initialpose frame_id 'odom' is not the map frame 'map'" in text
        assert text.count("/initialpose accepted") == 6, text[-3000:]  # every prior in the map frame
        assert "Traceback" not in text and "failed:" not in text
    finally:
        client.close()
        took, left = stop_process_tree(proc, signal.SIGINT, 10.0)
    assert not left


def test_accepted_fixes_seed_other_localizers_on_initialpose(data_dir, tmp_path):
    """publish_initialpose:=true (README): each published pose also goes out on /initialpose, and
    the node does not take its own fixes as priors."""
    from mast3r_ros.ros.nodes.node_io import RELIABLE

    ds = open_dataset(data_dir / "7scenes_redkitchen")
    cal = RgbdCalibration.load("7scenes")
    build_map(ds, "0:60:6", make_frontend("classical"), tmp_path / "map", calib=cal)
    domain = unique_domain_id()
    log = tmp_path / "launch.log"
    proc = start_launch("localization", domain, ["--map", str(tmp_path / "map"),
                                                 "-p", "publish_initialpose:=true"], log)
    client = LiveClient(domain, reliable_images=True)
    client.subscribe(PoseWithCovarianceStamped, "/initialpose", RELIABLE, "initialpose")
    client.publish_static_tf("base_link", CAM, T_BODY_OPTICAL)
    try:
        assert client.wait_for_service(Trigger, "reset", 60), log.read_text()[-3000:]
        deadline = time.monotonic() + 45
        for f in ds.frames("3:60:6") * 5:
            if len(client.messages("pose")) >= 3 or time.monotonic() > deadline:
                break
            client.publish_frame(time.time_ns(), ds.load_rgb(f), cal.colour_K(ds.K), CAM)
            time.sleep(1.0)
        client.wait_for(lambda: len(client.messages("initialpose")) >= len(client.messages("pose")), 5.0)
        poses, seeds = client.messages("pose"), client.messages("initialpose")
        assert len(poses) >= 3, log.read_text()[-3000:]
        by_stamp = {stamp_to_ns(m.header.stamp): m for m in seeds}
        for p in poses:
            s = by_stamp[stamp_to_ns(p.header.stamp)]
            assert s.header.frame_id == "map" and list(s.pose.covariance) == list(p.pose.covariance)
        assert "/initialpose accepted" not in log.read_text()   # its own fixes are not priors
    finally:
        client.close()
        took, left = stop_process_tree(proc, signal.SIGINT, 10.0)
    assert not left
