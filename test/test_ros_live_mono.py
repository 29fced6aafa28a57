"""The README's monocular mapping recipe live (issue #16): its commands are extracted from README.md (the block
after the ``ros-mono-recipe`` marker) and run as separate processes with the shipped defaults: `make-bag
--no-depth`, `mast3r-ros launch mapping --frontend mast3r -p subscribe_depth:=false -p oracle_dataset:=...`,
`play`, the save_map service (called by the test's client: no `ros2` CLI here), then `launch localization`
in the saved map and `play` of a query bag. The dataset is replaced by an 8-frame excerpt (links to the same
files): the stand-in registers every frame of its dataset at configure. Asserted: every played frame
answered by the mapping node, the 4 frames 0.5 s apart all keyframes (no odometry: the interval rule), a
background pass publishes their poses before any service call, save_map writes a MASt3R map of 4 keyframes
whose poses match the ground truth seen from the base at the first keyframe (the map frame: base_link ->
camera optical from the bag's /tf_static), keyframe poses and cloud_map republished after the pass; the
mapping node continues the map (load_map); the localization node loads that map with the stand-in, shows it
on its latched cloud_map and localizes the played queries in frame map, accurately; start-up logs and
/diagnostics say `model: oracle`."""
from __future__ import annotations

import signal

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mast3r_ros.msg")

from geometry_msgs.msg import PoseArray  # noqa: E402

from mast3r_ros.geometry.transforms import invert, pose_errors  # noqa: E402
from mast3r_ros.map import KeyframeMap  # noqa: E402
from mast3r_ros.ros.compat.conversions import stamp_to_ns  # noqa: E402
from mast3r_ros.ros.compat.conversions_geometry import T_BODY_OPTICAL, pointcloud2_to_xyz_rgb, pose_to_T  # noqa: E402
from mast3r_ros.ros.nodes.node_io import LATCHED  # noqa: E402
from mast3r_ros.srv import LoadMap, SaveMap  # noqa: E402

from .live_client import LiveClient, ros_env, stop_process_tree, unique_domain_id  # noqa: E402
from .recipes import bag_truth, dataset_excerpt, readme_recipe, run_step, start_step, user_checkout  # noqa: E402

MARKER = "<!-- ros-mono-recipe"
DATASET = "../shared/data/7scenes_redkitchen"
EXCERPT = (0, 15, 30, 45, 6, 12, 18, 24)  # the mapping bag's frames (0:46:15), then the queries' (6:25:6)


def test_readme_mono_recipe_sets_only_what_monocular_mapping_needs():
    cmds = readme_recipe(MARKER)
    assert [c[1] for c in cmds] == ["make-bag", "launch", "play", "service", "make-bag", "launch", "play"]
    params = [c[i + 1] for c in cmds for i, a in enumerate(c) if a in ("-p", "--param")]
    assert params == ["subscribe_depth:=false", f"oracle_dataset:={DATASET}", f"oracle_dataset:={DATASET}"]
    assert [c[2] for c in cmds if c[1] == "launch"] == ["mapping", "localization"]
    assert all(c[c.index("--frontend") + 1] == "mast3r" for c in cmds if c[1] == "launch")
    assert all("--no-depth" in c and "--rgbd-calib" not in c for c in cmds if c[1] == "make-bag")
    assert cmds[3][:4] == ["ros2", "service", "call", "/mast3r/save_map"]


def _answered(client: LiveClient, stamps: list[int]) -> bool:
    return set(stamps) <= {stamp_to_ns(s.header.stamp) for s in client.messages("status")}


def _cm_deg(errs: np.ndarray) -> list:
    return [(round(100 * float(t), 2), round(float(d), 3)) for t, d in errs]


def _models(client: LiveClient) -> set:
    return {v.value for d in client.messages("diagnostics") for s in d.status for v in s.values if v.key == "model"}


def test_readme_mono_recipe_maps_then_localizes(data_dir, tmp_path):
    data = dataset_excerpt(data_dir / "7scenes_redkitchen" / "data", tmp_path / "kitchen8", EXCERPT)
    cmds = [[a.replace(DATASET, str(data)) for a in c] for c in readme_recipe(MARKER)]
    work = user_checkout(tmp_path)
    domain = unique_domain_id()
    env = ros_env(domain)
    launch = client = None
    logs, kf_msgs, phases = [], [], {}
    try:
        for cmd in cmds:
            if cmd[0] == "ros2":  # the save_map call of the recipe
                assert cmd[4:] == ["mast3r_ros/srv/SaveMap", "{map_dir: '', overwrite: false}"]  # map_dir: the launch's
                r = client.call(SaveMap, "save_map", SaveMap.Request(), timeout=300)
                phases["save"] = r
                assert r.success, r.message
                # the save's pass is published as a pass of the classical node is: poses and cloud, latched
                client.wait_for(lambda: kf_msgs and len(kf_msgs[-1].poses) == r.num_keyframes
                                and client.messages("cloud") and client.messages("cloud")[-1].width > 0, 15.0)
                phases["map_published"] = len(kf_msgs[-1].poses) if kf_msgs else 0
                phases["cloud"] = client.messages("cloud")[-1] if client.messages("cloud") else None
                # and the mapping node continues the map it saved (load_map of a monocular map)
                phases["load"] = client.call(LoadMap, "load_map", LoadMap.Request(map_dir="mono_map"), timeout=60)
                continue
            if cmd[1] == "launch":
                if launch is not None:  # the mapping node stops before the localization node starts
                    phases["mapping_models"] = _models(client)
                    client.close()
                    stop_process_tree(launch, signal.SIGINT, 15.0)
                logs.append(tmp_path / f"launch_{cmd[2]}.log")
                launch = start_step(cmd, work, env, logs[-1])
                client = LiveClient(domain)
                if cmd[2] == "mapping":
                    client.node.create_subscription(PoseArray, "/mast3r/keyframe_poses", kf_msgs.append, LATCHED)
                keys = ("status",) if cmd[2] == "mapping" else ("status", "pose")
                assert client.wait_matched(keys, 120.0), logs[-1].read_text()[-3000:]
                if cmd[2] == "mapping":  # the clients of the calls below, made now (LiveClient._service_client)
                    assert client.wait_for_service(SaveMap, "save_map", 60) and client.wait_for_service(
                        LoadMap, "load_map", 60)
                continue
            log = tmp_path / f"{cmd[1]}_{len(phases)}.log"
            run_step(cmd, work, env, log)
            if cmd[1] == "play":
                images, _ = bag_truth(work / cmd[2])
                if "save" not in phases:  # mapping: every frame is buffered at once, so all are answered
                    assert client.wait_for(lambda: _answered(client, images), 30.0), logs[-1].read_text()[-3000:]
                    phases["mapping_status"] = list(client.messages("status"))
                    # the 4th keyframe started a background pass: rviz shows the map before any service call
                    phases["auto_pass"] = client.wait_for(lambda: bool(kf_msgs) and len(kf_msgs[-1].poses) == 4, 120.0)
                else:  # localization: the newest frame waits (frame_queue_size 1): the last one is answered
                    assert client.wait_for(lambda: _answered(client, images[-1:]), 90.0), logs[-1].read_text()[-3000:]
        client.wait_for(lambda: bool(_models(client)) and bool(client.messages("cloud")), 5.0)
        statuses, poses, loc_models = client.messages("status"), client.messages("pose"), _models(client)
        loc_clouds = client.messages("cloud")
    finally:
        if client is not None:
            client.close()
        if launch is not None:
            stop_process_tree(launch, signal.SIGINT, 15.0)
    map_log, loc_log = (p.read_text() for p in logs)
    assert "model: oracle" in map_log and "model: oracle" in loc_log, map_log[-2000:] + loc_log[-2000:]
    assert phases["mapping_models"] == loc_models == {"oracle"}
    assert "Traceback" not in map_log + loc_log
    # the background pass is logged: what a user watching the terminal sees
    assert "map updated: MASt3R mapping pass over 4 keyframes: 6 of 6 image pairs decoded" in map_log, map_log[-2000:]

    # mapping: no depth, no odometry -> every frame 0.5 s after the last is a keyframe
    map_images, map_gt = bag_truth(work / "mono.bag")
    mapping = phases["mapping_status"]
    assert all(s.message.startswith("keyframe ") for s in mapping), [s.message for s in mapping]
    assert sorted(stamp_to_ns(s.header.stamp) for s in mapping if s.keyframe_ids) == map_images
    r = phases["save"]
    assert r.num_keyframes == 4 and r.map_dir == "mono_map"  # the launch's --map, relative to the node
    assert phases["auto_pass"]  # keyframe_poses of the background pass (mono.pass_every_n_keyframes 4)
    assert phases["map_published"] == 4  # keyframe_poses republished after the save's pass
    assert phases["load"].success and phases["load"].num_keyframes == 4, phases["load"].message
    xyz, rgb = pointcloud2_to_xyz_rgb(phases["cloud"])
    assert phases["cloud"].header.frame_id == "map" and len(xyz) > 10000 and rgb is not None
    with KeyframeMap.open(work / "mono_map") as kmap:
        assert kmap.meta.frontend == "mast3r"
        T_kf = np.stack([kmap.poses()[i] for i in kmap.keyframe_ids()])
    # the map frame is the odom frame at the first keyframe, here (no odometry: the node's identity odom->base)
    # its base frame, base_link -> camera optical from the bag's /tf_static: z up, x along the first view
    np.testing.assert_allclose(T_kf[0], T_BODY_OPTICAL, atol=1e-9)
    T_map_world = T_BODY_OPTICAL @ invert(map_gt[map_images[0]])
    kf_err = np.array([pose_errors(T, T_map_world @ map_gt[s]) for T, s in zip(T_kf, map_images)])

    # the localization node shows the map it loaded (latched cloud_map): a monocular map has no depth,
    # its cloud is the keyframes' stored MASt3R points
    assert loc_clouds and loc_clouds[-1].header.frame_id == "map"
    loc_xyz, _ = pointcloud2_to_xyz_rgb(loc_clouds[-1])
    assert len(loc_xyz) > 10000, len(loc_xyz)

    # localization in that map: poses in frame map at the played stamps, near the ground truth
    q_images, q_gt = bag_truth(work / "mono_q.bag")
    answered = {stamp_to_ns(s.header.stamp) for s in statuses} & set(q_images)
    assert poses and all(p.header.frame_id == "map" and stamp_to_ns(p.header.stamp) in q_gt for p in poses)
    q_err = np.array([pose_errors(pose_to_T(p.pose.pose) @ T_BODY_OPTICAL,
                                  T_map_world @ q_gt[stamp_to_ns(p.header.stamp)]) for p in poses])
    print(f"\nmono recipe: save_map '{r.message}'; keyframe errors (cm, deg) {_cm_deg(kf_err)}; "
          f"{len(answered)}/{len(q_images)} queries answered, {len(poses)} poses, errors {_cm_deg(q_err)}")
    # measured (3 runs, the same): keyframes 0.13 / 0.21 / 0.20 cm, 0.035 / 0.062 / 0.046 deg; queries 6 and 24
    # answered (the newest frame waits), 0.05 / 0.29 cm, 0.024 / 0.071 deg, query 24 tracked on the one keyframe
    # nearest its prior (the MASt3R front-end's default; top-5 retrieval for every query gave 0.21 cm / 0.049 deg).
    # A faster machine answers other frames, hence some room above the figures
    assert kf_err[:, 0].max() < 0.003 and kf_err[:, 1].max() < 0.08
    assert q_err[:, 0].max() < 0.0035 and q_err[:, 1].max() < 0.085
