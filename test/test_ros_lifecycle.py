"""Managed nodes for nav2, live over DDS: `mast3r-ros launch localization --map M --lifecycle` and
`mast3r-ros launch mapping --lifecycle` as separate processes with the shipped defaults, their
transitions driven from this process over the standard `<node>/change_state` and `<node>/get_state`
services (lifecycle_msgs), frames from `mast3r-ros play` of a `make-bag` bag.

Asserted: unconfigured at start, with no frame subscription and no pose publisher; after configure +
activate poses (stamps = played image stamps, frame map) and mapping statuses arrive; deactivate while the
bag plays: no subscription, no publisher, and no pose or status after it; cleanup returns to unconfigured;
configure + activate after cleanup gives poses again; shutdown from active, inactive and unconfigured; a
bad map at configure gives FAILURE with a one-line reason and the node stays alive, unconfigured.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mast3r_ros.msg")
pytest.importorskip("rclpy.lifecycle")

from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402

from mast3r_ros.datasets.calibration import RgbdCalibration  # noqa: E402
from mast3r_ros.datasets.readers import open_dataset  # noqa: E402
from mast3r_ros.localization.frontends import make_frontend  # noqa: E402
from mast3r_ros.map.build import build_map  # noqa: E402
from mast3r_ros.msg import LocalizationStatus  # noqa: E402
from mast3r_ros.ros.bag.bag_io import read_bag  # noqa: E402
from mast3r_ros.ros.compat.conversions import stamp_to_ns  # noqa: E402
from mast3r_ros.ros.nodes.node_io import RELIABLE  # noqa: E402

from .live_client import (  # noqa: E402
    LiveClient,
    ros_env,
    start_launch,
    stop_process_tree,
    unique_domain_id,
)

LOC = "/mast3r/localization_node"
MAP = "/mapping/mapping_node"
BAD = "/bad/localization_node"
IMAGE = "/camera/image_raw"


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "mast3r-ros"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mast3r_ros.cli"]


@pytest.fixture(scope="module")
def map_and_bag(data_dir, tmp_path_factory):
    """A small 7-Scenes map (frames 0:60:6); a make-bag bag of 19 frames between its keyframes (22 s at rate 0.5)."""
    ds_dir = data_dir / "7scenes_redkitchen"
    out = tmp_path_factory.mktemp("lifecycle")
    build_map(open_dataset(ds_dir), "0:60:6", make_frontend("classical"), out / "map",
              calib=RgbdCalibration.load("7scenes"))
    subprocess.run(_cli() + ["make-bag", "--dataset", str(ds_dir), "--frames", "3:60:3", "--fps", "5",
                             "--rgbd-calib", "7scenes", "--out", str(out / "bag")],
                   check=True, capture_output=True, timeout=180)
    return out / "map", out / "bag"


def _call(client: LiveClient, srv_type, name: str, request, timeout: float = 180.0):
    cli = client.node.create_client(srv_type, name)
    try:
        assert cli.wait_for_service(timeout_sec=timeout), f"{name} not available"
        fut = cli.call_async(request)
        done = threading.Event()
        fut.add_done_callback(lambda _: done.set())
        assert done.wait(timeout), f"{name} did not answer in {timeout} s"
        return fut.result()
    finally:
        client.node.destroy_client(cli)


def _state(client: LiveClient, node: str) -> str:
    return _call(client, GetState, f"{node}/get_state", GetState.Request()).current_state.label


def _change(client: LiveClient, node: str, transition: int) -> bool:
    req = ChangeState.Request()
    req.transition.id = transition
    return _call(client, ChangeState, f"{node}/change_state", req).success


def _endpoints(client: LiveClient, node: str) -> tuple[set[str], set[str]]:
    """(topics the node subscribes to, topics it publishes) from the ROS graph."""
    ns, name = node.rsplit("/", 1)
    g = client.node
    return ({t for t, _ in g.get_subscriber_names_and_types_by_node(name, ns)},
            {t for t, _ in g.get_publisher_names_and_types_by_node(name, ns)})


def _wait_endpoints(client, node, pred, timeout=20.0) -> tuple[set[str], set[str]]:
    client.wait_for(lambda: pred(*_endpoints(client, node)), timeout, poll=0.2)
    return _endpoints(client, node)


def _play(bag: Path, domain: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(_cli() + ["play", str(bag), "--rate", "0.5", "--wait-for", IMAGE, "/camera/camera_info"],
                            env=ros_env(domain), stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


@pytest.mark.slow
def test_lifecycle_transitions_localization_and_mapping(map_and_bag, tmp_path):
    mp, bag = map_and_bag
    images = {stamp_to_ns(m.header.stamp) for _, _, m in read_bag(bag, [IMAGE])}
    domain = unique_domain_id()
    logs = {k: tmp_path / f"{k}.log" for k in ("loc", "map", "bad", "play")}
    procs = {"loc": start_launch("localization", domain, ["--map", str(mp), "--lifecycle"], logs["loc"]),
             "map": start_launch("mapping", domain, ["--lifecycle", "--namespace", "mapping"], logs["map"]),
             "bad": start_launch("localization", domain, ["--map", str(tmp_path / "no_such_map"), "--lifecycle",
                                                           "--namespace", "bad"], logs["bad"])}
    client = LiveClient(domain)
    client.subscribe(LocalizationStatus, "/mapping/status", RELIABLE, "map_status")
    play = None

    def counts():
        return len(client.messages("pose")), len(client.messages("status")), len(client.messages("map_status"))

    def tail(k):
        return logs[k].read_text()[-3000:]

    try:
        # unconfigured at start: no frame subscription, no pose publisher, no pose
        for node in (LOC, MAP, BAD):
            assert _state(client, node) == "unconfigured"
        subs, pubs = _endpoints(client, LOC)
        assert IMAGE not in subs and "/mast3r/localization_pose" not in pubs, (subs, pubs)
        assert IMAGE not in _endpoints(client, MAP)[0]

        # a bad map at configure: FAILURE, one logged line, alive and unconfigured
        assert not _change(client, BAD, Transition.TRANSITION_CONFIGURE)
        assert _state(client, BAD) == "unconfigured" and procs["bad"].poll() is None
        reasons = [ln for ln in logs["bad"].read_text().splitlines() if "configure failed" in ln]
        assert len(reasons) == 1 and "no_such_map" in reasons[0], tail("bad")
        assert _change(client, BAD, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert _state(client, BAD) == "finalized"

        # configure + activate: the map and model load at configure, subscriptions appear at activate
        for node in (LOC, MAP):
            assert _change(client, node, Transition.TRANSITION_CONFIGURE), tail("loc" if node == LOC else "map")
            assert _state(client, node) == "inactive"
        assert IMAGE not in _endpoints(client, LOC)[0]
        assert counts() == (0, 0, 0)
        for node in (LOC, MAP):
            assert _change(client, node, Transition.TRANSITION_ACTIVATE)
            assert _state(client, node) == "active"
        subs, pubs = _wait_endpoints(client, LOC, lambda s, p: IMAGE in s and "/mast3r/localization_pose" in p)
        assert IMAGE in subs and "/mast3r/localization_pose" in pubs and "/tf" in pubs, (subs, pubs)

        # frames: poses and mapping statuses for played frames; deactivate while the bag still plays
        play = _play(bag, domain, logs["play"])
        assert client.wait_for(lambda: counts()[0] >= 2 and counts()[2] >= 2, 60.0), tail("loc") + tail("map")
        for node in (LOC, MAP):
            assert _change(client, node, Transition.TRANSITION_DEACTIVATE)
            assert _state(client, node) == "inactive"
        time.sleep(1.0)  # messages already on the wire when deactivate answered
        after_deactivate = counts()
        subs, pubs = _wait_endpoints(client, LOC, lambda s, p: IMAGE not in s and "/mast3r/localization_pose" not in p)
        assert IMAGE not in subs and "/mast3r/localization_pose" not in pubs, (subs, pubs)
        assert IMAGE not in _wait_endpoints(client, MAP, lambda s, p: IMAGE not in s)[0]
        time.sleep(3.0)  # frames go on being played to the inactive nodes
        assert play.poll() is None, "the bag ended before the nodes were deactivated\n" + tail("play")
        assert counts() == after_deactivate, "a pose or status was published while inactive"
        poses = client.messages("pose")
        assert all(p.header.frame_id == "map" and stamp_to_ns(p.header.stamp) in images for p in poses)
        print(f"\nlifecycle: {len(poses)} poses, {after_deactivate[1]} statuses, "
              f"{after_deactivate[2]} mapping statuses of {len(images)} played frames before deactivate")

        stop_process_tree(play, signal.SIGKILL, 5.0)

        # cleanup -> unconfigured; configure again after cleanup; activate again: poses again
        for node in (LOC, MAP):
            assert _change(client, node, Transition.TRANSITION_CLEANUP)
            assert _state(client, node) == "unconfigured"
        for node in (LOC, MAP):
            assert _change(client, node, Transition.TRANSITION_CONFIGURE) and _state(client, node) == "inactive"
        assert _change(client, LOC, Transition.TRANSITION_ACTIVATE) and _state(client, LOC) == "active"
        play = _play(bag, domain, logs["play"])
        assert client.wait_for(lambda: counts()[0] > after_deactivate[0], 60.0), tail("loc")
        stop_process_tree(play, signal.SIGKILL, 5.0)
        poses = client.messages("pose")
        assert all(p.header.frame_id == "map" and stamp_to_ns(p.header.stamp) in images for p in poses)
        assert counts()[2] == after_deactivate[2]  # mapping stayed inactive: nothing from it

        # shutdown from active, inactive and (above) unconfigured: finalized, the processes live on
        assert _change(client, LOC, Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert _change(client, MAP, Transition.TRANSITION_INACTIVE_SHUTDOWN)
        assert _state(client, LOC) == "finalized" and _state(client, MAP) == "finalized"
        assert all(p.poll() is None for p in procs.values())
    finally:
        client.close()
        if play is not None and play.poll() is None:
            stop_process_tree(play, signal.SIGKILL, 5.0)
        left = {k: stop_process_tree(p, signal.SIGINT, 15.0)[1] for k, p in procs.items()}
    assert not any(left.values()), left
    for k in ("loc", "map", "bad"):
        assert "Traceback" not in logs[k].read_text(), tail(k)


def test_launch_argument_selects_the_managed_node():
    from mast3r_ros.ros.nodes.launch_description import LIFECYCLE_FLAG, describe

    assert describe({"mode": "localization"})[0].arguments == []  # default: the plain node, as before
    for mode in ("localization", "mapping"):
        assert describe({"mode": mode, "lifecycle": "true"})[0].arguments == [LIFECYCLE_FLAG]
    with pytest.raises(ValueError, match="lifecycle must be true or false"):
        describe({"lifecycle": "maybe"})
