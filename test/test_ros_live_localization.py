"""Live over DDS, separate processes: `mast3r-ros launch localization` on a 7-Scenes map, frames
published by a client, poses/status recorded, services called while frames are processed, then
SIGTERM. Shipped defaults (the client publishes with the Fast DDS profile `mast3r-ros play` loads):
no odometry on TF (publish_odom_tf auto gives the identity odom->base); assertions are on behaviour
(the newest frame is answered, poses are accurate), never on how many frames this machine managed to process."""
from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mast3r_ros.msg")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from mast3r_ros.datasets.calibration import RgbdCalibration  # noqa: E402
from mast3r_ros.datasets.readers import open_dataset  # noqa: E402
from mast3r_ros.geometry.transforms import pose_errors, with_nearest_rotation  # noqa: E402
from mast3r_ros.localization.frontends import make_frontend  # noqa: E402
from mast3r_ros.map.build import build_map  # noqa: E402
from mast3r_ros.ros.compat.conversions import stamp_to_ns  # noqa: E402
from mast3r_ros.ros.compat.conversions_geometry import T_to_pose, pose_to_T  # noqa: E402
from mast3r_ros.srv import LoadMap, Localize, SetReference  # noqa: E402

from .live_client import LiveClient, start_launch, stop_process_tree, unique_domain_id  # noqa: E402

CAM = "camera_optical"
# camera optical frame on the robot: 0.2 m forward, 0.3 m up, looking forward (REP 103 rotation)
T_BASE_CAM = np.eye(4)
T_BASE_CAM[:3, :3] = [[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]]
T_BASE_CAM[:3, 3] = [0.2, 0.0, 0.3]


@pytest.fixture(scope="module")
def scene(data_dir, tmp_path_factory):
    ds = open_dataset(data_dir / "7scenes_redkitchen")
    cal = RgbdCalibration.load("7scenes")
    out = tmp_path_factory.mktemp("livemap") / "map"
    build_map(ds, "0:60:6", make_frontend("classical"), out, calib=cal)
    return ds, cal, out


@pytest.fixture
def live(scene, tmp_path):
    """(client, launch process, domain); the process tree is always torn down."""
    ds, cal, mp = scene
    domain = unique_domain_id()
    proc = start_launch("localization", domain, ["--map", str(mp)], tmp_path / "launch.log")
    client = LiveClient(domain, reliable_images=True)
    client.publish_static_tf("base_link", CAM, T_BASE_CAM)
    try:
        if not client.wait_for_service(Trigger, "reset", 60):
            pytest.fail("node not ready:\n" + (tmp_path / "launch.log").read_text()[-3000:])
        # the clients of the services the tests call while frames keep the node busy, made now
        # (see LiveClient._service_client: a client made at its call can lose the answer)
        for typ, name in ((Localize, "localize"), (SetReference, "set_reference"), (LoadMap, "load_map")):
            assert client.wait_for_service(typ, name, 30)
        yield client, proc, tmp_path / "launch.log"
    finally:
        client.close()
        stop_process_tree(proc, signal.SIGKILL, 5.0)


def _statuses(client, stamp):
    return [m for m in client.messages("status") if stamp_to_ns(m.header.stamp) == stamp]


def _send_until_status(client, ds, cal, f, stamp, timeout=30.0, **kw):
    """Publish a frame (again every 2 s until DDS matching is done) and wait for its status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client.publish_frame(stamp, ds.load_rgb(f), cal.colour_K(ds.K), CAM, **kw)
        if client.wait_for(lambda: _statuses(client, stamp), 2.0):
            return _statuses(client, stamp)[-1]
    raise AssertionError(f"no status for stamp {stamp}")


def test_live_localization_services_and_sigterm(live, scene):
    client, proc, log = live
    ds, cal, mp = scene
    frames = ds.frames("3:60:6")
    _send_until_status(client, ds, cal, frames[0], time.time_ns())  # DDS matched, node warm
    stamps, gt = {}, {}
    answers = {}

    def call_services():
        hint = PoseStamped()
        hint.header.frame_id = "map"
        T_map_base = cal.colour_pose(frames[4].T_world_cam) @ np.linalg.inv(T_BASE_CAM)
        hint.pose = T_to_pose(with_nearest_rotation(T_map_base))
        t = time.monotonic()
        rq = Localize.Request(pose_hint=hint, radius=1.0)
        answers["localize"] = (client.call(Localize, "localize", rq),
                               time.monotonic() - t)
        answers["reset"] = client.call(Trigger, "reset", Trigger.Request())
        ref = ds.frames("30:31")[0]
        rq = SetReference.Request(image_path=str(ref.rgb_path), depth_path=str(ref.depth_path))
        rq.reference_pose.header.frame_id = "map"
        rq.reference_pose.pose = T_to_pose(with_nearest_rotation(cal.colour_pose(ref.T_world_cam)))
        answers["set_reference"] = client.call(SetReference, "set_reference", rq)
        answers["load_map"] = client.call(LoadMap, "load_map", LoadMap.Request(map_dir=str(mp)))

    caller = threading.Thread(target=call_services)
    def n_poses():
        return sum(stamp_to_ns(m.header.stamp) in stamps for m in client.messages("pose"))

    # ~3 Hz (the node is slower); at least two rounds, and on until 5 poses so that the accuracy
    # is measured however slow this machine is right now
    deadline = time.monotonic() + 45.0
    for i, f in enumerate(frames * 20):
        if i >= 2 * len(frames) and (n_poses() >= 5 or time.monotonic() > deadline):
            break
        stamp = time.time_ns()  # like a driver: stamped at capture, so latency is real
        stamps[stamp], gt[stamp] = f.index, cal.colour_pose(f.T_world_cam)
        client.publish_frame(stamp, ds.load_rgb(f), cal.colour_K(ds.K), CAM)
        if i == 2:
            caller.start()
        time.sleep(0.333)
    caller.join(60)
    last = max(stamps)
    client.wait_for(lambda: any(stamp_to_ns(m.header.stamp) == last for m in client.messages("status")), 10.0)
    for name in ("localize", "reset", "set_reference", "load_map"):
        assert name in answers, f"service {name} did not answer"
    resp, took = answers["localize"]
    assert resp.success and resp.pose.header.frame_id == "map" and took < 10.0  # measured 0.3-1.1 s
    assert stamp_to_ns(resp.pose.header.stamp) in stamps
    assert answers["reset"].success and answers["set_reference"].success, answers["set_reference"].message
    assert answers["load_map"].success and answers["load_map"].num_keyframes == 10

    poses = [m for m in client.messages("pose") if stamp_to_ns(m.header.stamp) in stamps]
    status = [m for m in client.messages("status") if stamp_to_ns(m.header.stamp) in stamps]
    assert len(status) >= 5 and len(poses) >= 5, log.read_text()[-2000:]
    assert {stamp_to_ns(p.header.stamp) for p in poses} <= {stamp_to_ns(s.header.stamp) for s in status
                                                           if s.pose_published}
    errs = []
    for p in poses:
        assert p.header.frame_id == "map"
        q = p.pose.pose
        T_map_cam = pose_to_T(q) @ T_BASE_CAM  # the node publishes the base pose
        T_gt = gt[stamp_to_ns(p.header.stamp)]
        errs.append(pose_errors(cal.dataset_pose(T_map_cam), cal.dataset_pose(T_gt)))
        assert np.all(np.isfinite(p.pose.covariance)) and p.pose.covariance[0] > 0
    te, re = np.median([e[0] for e in errs]), np.median([e[1] for e in errs])
    print(f"\nlive: {len(status)} statuses, {len(poses)} poses of {len(stamps)} frames; median "
          f"{100 * te:.1f} cm / {re:.2f} deg; latency median "
          f"{np.median([s.latency for s in status]) * 1000:.0f} ms")
    # which frames are processed depends on the machine's speed: the bound sits just above the worst
    # single frame measured (1.02 cm / 0.243 deg over frames 3..57; medians measured 0.5 cm / 0.15 deg)
    assert te < 0.011 and re < 0.27
    # newest-frame policy: the newest frame is always answered; frames dropped while busy are
    # counted in the statuses, never more than were sent (how many: the machine's speed, not asserted)
    answered = {stamp_to_ns(s.header.stamp) for s in status}
    assert last in answered
    assert len(answered) + sum(s.frames_dropped for s in status) <= len(stamps)
    tf = [t for m in client.messages("tf") for t in m.transforms]
    assert any(t.header.frame_id == "map" and t.child_frame_id == "odom" for t in tf)
    # no odometry on TF: after the grace period the node is the odometry (publish_odom_tf auto)
    assert any(t.header.frame_id == "odom" and t.child_frame_id == "base_link" for t in tf)
    diag = [d.status[0] for d in client.messages("diagnostics") if d.status]
    assert any(d.values and dict((kv.key, kv.value) for kv in d.values).get("odometry", "").startswith("identity")
               for d in diag)
    # OK only while tracking with odometry: without odometry the summary is a WARN saying so
    assert not any(d.level == DiagnosticStatus.OK for d in diag)
    assert any(d.level == DiagnosticStatus.WARN and "without odometry" in d.message for d in diag)

    took, left = stop_process_tree(proc, signal.SIGTERM, 10.0)
    assert not left and took < 10.0, f"still alive after SIGTERM: {left}"
    print(f"live: all processes exited {took:.2f} s after SIGTERM")


def _map_odom_arrivals(client) -> list[float]:
    """Monotonic arrival times of every map->odom transform received on /tf."""
    with client.lock:
        return [t for t, m in client.received["tf"] for tr in m.transforms
                if tr.header.frame_id == "map" and tr.child_frame_id == "odom"]


def _send_until_map_odom(client, ds, cal, frames) -> float:
    """Publish frames until map->odom is broadcast after a fix (with publish_odom_tf auto the identity
    odom->base comes after its 2 s grace, so the first fixes may have no map->odom); returns the
    monotonic time of that fix."""
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        for f in frames:
            if _send_until_status(client, ds, cal, f, time.time_ns()).pose_published:
                t_fix = time.monotonic()
                if client.wait_for(lambda: any(t > t_fix for t in _map_odom_arrivals(client)), 1.0):
                    return t_fix
    raise AssertionError("no map->odom after any fix in 60 s")


def test_map_to_odom_stops_on_load_map_until_the_next_fix(live, scene):
    """Issue #13 item 7: the old map->odom is wrong in a new map, so after `load_map` the node
    broadcasts none (rather than the stale one at 20 Hz) until a frame is localized in the new map."""
    client, _, log = live
    ds, cal, mp = scene
    frames = ds.frames("3:60:6")
    t_fix = _send_until_map_odom(client, ds, cal, frames)
    assert client.wait_for(lambda: sum(t > t_fix for t in _map_odom_arrivals(client)) >= 5, 10.0), \
        "map->odom is not broadcast steadily after a fix:\n" + log.read_text()[-2000:]
    assert client.call(LoadMap, "load_map", LoadMap.Request(map_dir=str(mp))).success
    t_loaded = time.monotonic()
    time.sleep(2.5)  # no frame is sent: nothing can localize in the new map meanwhile
    # one transform published before the swap may still be in flight; none after that (was 20 Hz)
    late = [t - t_loaded for t in _map_odom_arrivals(client) if t > t_loaded + 0.5]
    assert not late, f"{len(late)} map->odom broadcast after load_map without a new fix"
    _send_until_map_odom(client, ds, cal, frames)  # the first fix in the new map brings it back
