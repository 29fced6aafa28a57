"""Bad input over the wire: every kind gives a status and a /diagnostics error naming the problem,
and the node processes the next good frame (checked after each one)."""
from __future__ import annotations

import signal
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mast3r_ros.msg")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from mast3r_ros.datasets.calibration import RgbdCalibration  # noqa: E402
from mast3r_ros.datasets.readers import open_dataset  # noqa: E402
from mast3r_ros.localization.frontends import make_frontend  # noqa: E402
from mast3r_ros.map.build import build_map  # noqa: E402
from mast3r_ros.ros.compat.conversions import stamp_to_ns  # noqa: E402
from mast3r_ros.ros.compat.conversions_geometry import T_to_pose  # noqa: E402
from mast3r_ros.srv import LoadMap, Localize, SetReference  # noqa: E402

from .live_client import (  # noqa: E402
    LiveClient,
    camera_info_msg,
    depth_msg,
    image_msg,
    start_launch,
    stop_process_tree,
    unique_domain_id,
)

CAM = "camera_optical"


@pytest.fixture(scope="module")
def node(data_dir, tmp_path_factory):
    ds = open_dataset(data_dir / "7scenes_redkitchen")
    cal = RgbdCalibration.load("7scenes")
    tmp = tmp_path_factory.mktemp("badinput")
    build_map(ds, "0:30:6", make_frontend("classical"), tmp / "map", calib=cal)
    domain = unique_domain_id()
    # a camera-only RGB-D rig as the README describes it: publish_odom_tf true, depth with its
    # calibration, base->camera on /tf_static (here the identity); all else the shipped defaults
    proc = start_launch("localization", domain, [
        "--map", str(tmp / "map"), "-p", "publish_odom_tf:=true", "-p", "subscribe_depth:=true",
        "-p", "rgbd_calibration:=7scenes"], tmp / "launch.log")
    client = LiveClient(domain, reliable_images=True)
    try:
        assert client.wait_for_service(Trigger, "reset", 60), (tmp / "launch.log").read_text()[-3000:]
        client.publish_static_tf("base_link", CAM, np.eye(4))
        yield client, ds, cal, tmp
    finally:
        client.close()
        took, left = stop_process_tree(proc, signal.SIGTERM, 10.0)
        assert not left


class Wire:
    """Publishes one frame's messages (possibly broken) and waits for its status."""

    def __init__(self, client, ds, cal):
        self.c, f = client, ds.frames("12:13")[0]
        self.rgb, self.K = ds.load_rgb(f), cal.colour_K(ds.K)
        self.depth = ds.load_depth(f)  # raw Kinect depth (m); the node registers it (7scenes calib)
        self.t = time.time_ns()

    def stamp(self) -> int:
        self.t += 100_000_000
        return self.t

    def send(self, stamp, image=None, info=None, depth=None, send_info=True):
        if send_info:
            self.c.pub_info.publish(info or camera_info_msg(self.K, (640, 480), stamp, CAM))
        self.c.pub_depth.publish(depth or depth_msg(self.depth, stamp, CAM))
        self.c.pub_image.publish(image or image_msg(self.rgb, stamp, CAM))

    def status(self, stamp, timeout=20.0):
        ok = self.c.wait_for(
            lambda: any(stamp_to_ns(m.header.stamp) == stamp for m in self.c.messages("status")), timeout)
        assert ok, f"no status for {stamp}"
        return [m for m in self.c.messages("status") if stamp_to_ns(m.header.stamp) == stamp][-1]

    def good(self):
        deadline, sent = time.monotonic() + 45, set()

        def answers():
            return [m for m in self.c.messages("status") if stamp_to_ns(m.header.stamp) in sent]

        while not answers():  # the first frame may be sent before DDS has matched: resend
            assert time.monotonic() < deadline, "no status for a good frame"
            s = self.stamp()
            sent.add(s)
            self.send(s)
            self.c.wait_for(answers, 5.0)  # a loaded machine may take seconds per frame
        st = answers()[0]
        assert st.pose_published, st.message
        return st


def _diag_has(client, text):
    return client.wait_for(lambda: any(
        d.status and d.status[0].level == DiagnosticStatus.ERROR and text in d.status[0].message
        for d in client.messages("diagnostics")), 5.0)


def test_bad_frames_are_reported_and_next_good_frame_processed(node):
    client, ds, cal, tmp = node
    w = Wire(client, ds, cal)
    w.good()

    def bad(expect, **kw):
        s = kw.pop("stamp", None) or w.stamp()
        for key in ("image", "info", "depth"):
            if callable(kw.get(key)):
                kw[key] = kw[key](s)
        w.send(s, **kw)
        st = w.status(s)
        assert not st.pose_published and expect in st.message, st.message
        assert _diag_has(client, expect), expect
        w.good()
        return st

    def wrong_encoding(s):
        m = image_msg(w.rgb, s, CAM)
        m.encoding = "yuv422"
        return m

    def short_data(s):
        m = image_msg(w.rgb, s, CAM)
        m.data = bytes(m.data)[: len(m.data) - 640 * 3]
        return m

    bad("colour image has encoding 'yuv422'", image=wrong_encoding)
    bad("image data has 919680 bytes, expected step 1920 x height 480 = 921600", image=short_data)
    bad("camera_info size 320x240 does not match image size 640x480",
        info=lambda s: camera_info_msg(w.K, (320, 240), s, CAM))
    bad("depth image has no valid pixel (307200 of 307200 are NaN",
        depth=lambda s: depth_msg(np.full((480, 640), np.nan, np.float32), s, CAM))
    # an image whose camera_info never comes: rejected once a newer camera_info shows it cannot pair
    lone = w.stamp()
    w.send(lone, send_info=False)
    w.good()
    st = w.status(lone)
    assert "no partner within" in st.message and "/camera/camera_info" in st.message, st.message
    assert _diag_has(client, "/camera/camera_info")
    # a stamp going backwards (bag loop, restarted driver) is recovered from at once, as reset would
    back = w.t - 250_000_000
    w.send(back)
    st = w.status(back)
    assert "went backwards" in st.message and "reset" in st.message, st.message
    w.good()
    # one frame 11 days ahead of the clock is refused and does not poison the stamp history
    future = w.t + 11 * 24 * 3600 * 10**9
    w.send(future)
    st = w.status(future)
    assert not st.pose_published and "ahead of the node's clock" in st.message, st.message
    assert _diag_has(client, "ahead of the node's clock")
    w.good()


def test_bad_service_requests_are_refused_with_reason(node):
    client, ds, cal, tmp = node
    r = client.call(LoadMap, "load_map", LoadMap.Request(map_dir=str(tmp / "missing")))
    assert not r.success and "does not exist" in r.message and r.num_keyframes == 0
    assert _diag_has(client, "does not exist")
    rq = SetReference.Request(image_path=str(tmp / "missing.png"))
    rq.reference_pose.header.frame_id = "map"
    r = client.call(SetReference, "set_reference", rq)
    assert not r.success and "missing.png' does not exist" in r.message
    rq = SetReference.Request(use_current_frame=True)
    rq.reference_pose.header.frame_id = "odom"
    rq.reference_pose.pose = T_to_pose(np.eye(4))
    r = client.call(SetReference, "set_reference", rq)
    assert not r.success and "frame_id 'odom' is not the map frame 'map'" in r.message
    rq = Localize.Request(radius=1.0)
    rq.pose_hint.header.frame_id = "base_link"
    r = client.call(Localize, "localize", rq)
    assert not r.success and "'base_link' is not the map frame" in r.message
    assert _diag_has(client, "is not the map frame")
    Wire(client, ds, cal).good()  # still localizing


def _diag_level(client, level, text, timeout=5.0):
    return client.wait_for(lambda: any(
        d.status and d.status[0].level == level and text in d.status[0].message
        for d in client.messages("diagnostics")), timeout)


def test_diagnostics_ok_only_while_tracking_paused_is_a_warning(node):
    client, ds, cal, tmp = node
    w = Wire(client, ds, cal)
    w.good()
    assert _diag_level(client, DiagnosticStatus.OK, "tracking")   # odometry here: publish_odom_tf true
    assert client.call(Trigger, "pause", Trigger.Request()).success
    n_diag = len(client.messages("diagnostics"))
    s = w.stamp()
    w.send(s)
    st = w.status(s)
    assert not st.pose_published and "paused" in st.message
    assert _diag_level(client, DiagnosticStatus.WARN, "paused")
    assert not any(d.status and d.status[0].level == DiagnosticStatus.ERROR and "paused" in d.status[0].message
                   for d in client.messages("diagnostics")[n_diag:])   # a state, not a failure per frame
    assert client.call(Trigger, "resume", Trigger.Request()).success
    w.good()
    assert _diag_level(client, DiagnosticStatus.OK, "tracking")
