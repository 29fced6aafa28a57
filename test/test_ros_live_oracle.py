"""The README's MASt3R-without-weights recipe live (issue #16): its commands are extracted from README.md
(the block after the ``ros-oracle-recipe`` marker) and run as separate processes with the shipped defaults:
`map build --frontend mast3r --oracle-model`, `make-bag`, `mast3r-ros launch localization --frontend mast3r
-p oracle_dataset:=...`, `mast3r-ros play`. The dataset is replaced by an 11-frame excerpt of it (links to
the same files): the stand-in registers every frame of its dataset at configure, 11 instead of 334 keep
the test short. Asserted: poses stamped with the played image stamps in frame map, accurate; the start-up
log and /diagnostics say `model: oracle`. And a managed node given an `oracle_dataset` that is no dataset:
configure fails with one logged line naming it, the process stays alive."""
from __future__ import annotations

import signal

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mast3r_ros.msg")

from lifecycle_msgs.srv import ChangeState  # noqa: E402

from mast3r_ros.geometry.transforms import pose_errors  # noqa: E402
from mast3r_ros.ros.compat.conversions import stamp_to_ns  # noqa: E402
from mast3r_ros.ros.compat.conversions_geometry import T_BODY_OPTICAL, pose_to_T  # noqa: E402

from .live_client import LiveClient, start_launch, stop_process_tree, unique_domain_id  # noqa: E402
from .recipes import bag_truth, dataset_excerpt, played_bag, readme_recipe, recipe_client, run_recipe  # noqa: E402

MARKER = "<!-- ros-oracle-recipe"
DATASET = "../shared/data/7scenes_redkitchen"
EXCERPT = range(0, 31, 3)  # the frames on disk that the recipe's map (0:31:15) and bag (6:25:6) use


def test_readme_oracle_recipe_sets_only_the_oracle_parameter():
    cmds = readme_recipe(MARKER)
    assert [c[1] for c in cmds] == ["map", "make-bag", "launch", "play"]
    params = [c[i + 1] for c in cmds for i, a in enumerate(c) if a in ("-p", "--param")]
    assert params == [f"oracle_dataset:={DATASET}"]
    assert all(DATASET in c for c in cmds[:2]) and "--oracle-model" in cmds[0]
    assert cmds[2][cmds[2].index("--frontend") + 1] == "mast3r"


def test_readme_oracle_recipe_localizes_a_played_bag(data_dir, tmp_path):
    data = dataset_excerpt(data_dir / "7scenes_redkitchen" / "data", tmp_path / "kitchen11", EXCERPT)
    cmds = [[str(data) if a == DATASET else a.replace(DATASET, str(data)) for a in c] for c in readme_recipe(MARKER)]
    work, env, client = recipe_client(tmp_path)
    started: list = []
    try:
        run_recipe(cmds, work, env, tmp_path, client, started)
        images, gt = bag_truth(played_bag(cmds, work))
        # frames arrive faster than the stand-in's MASt3R path answers them: the newest waits (frame_queue_size
        # 1), so the first and the last played frame are always processed
        last = images[-1]
        client.wait_for(lambda: any(stamp_to_ns(s.header.stamp) == last for s in client.messages("status")), 90.0)
        client.wait_for(lambda: any("model" in {v.key for s in d.status for v in s.values}
                                    for d in client.messages("diagnostics")), 5.0)
    finally:
        for launch in started:
            stop_process_tree(launch, signal.SIGINT, 15.0)
        statuses, poses, diags = client.messages("status"), client.messages("pose"), client.messages("diagnostics")
        client.close()
    node_log = (tmp_path / "launch.log").read_text()
    assert "model: oracle" in node_log, node_log[-3000:]
    models = {v.value for d in diags for s in d.status for v in s.values if v.key == "model"}
    assert models == {"oracle"}, models
    answered = {stamp_to_ns(s.header.stamp) for s in statuses} & set(images)
    assert {images[0], images[-1]} <= answered, node_log[-3000:]
    assert all(p.header.frame_id == "map" and stamp_to_ns(p.header.stamp) in gt for p in poses)
    errs = np.array([pose_errors(pose_to_T(p.pose.pose) @ T_BODY_OPTICAL, gt[stamp_to_ns(p.header.stamp)])
                     for p in poses])
    assert len(poses) >= 2, f"{len(poses)} poses of {len(images)} frames\n{node_log[-3000:]}"
    print(f"\noracle recipe: {len(answered)}/{len(images)} frames answered, {len(poses)} poses, errors (cm, deg) "
          f"{[(round(100 * t, 3), round(r, 3)) for t, r in errs]}")
    # measured (2 runs on a loaded machine, frames 6 and 24 answered, frame 24 tracked on the one keyframe
    # nearest its prior, the MASt3R front-end's default): 0.029 / 0.24 cm, 0.028 / 0.059 deg (with top-5
    # retrieval for every query, as before: 0.029 / 0.125 cm). A faster machine answers other frames,
    # hence some room above the figures
    assert errs[:, 0].max() < 0.0035 and errs[:, 1].max() < 0.075
    assert "Traceback" not in node_log


def test_managed_node_refuses_an_oracle_dataset_that_is_no_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("not a dataset\n")
    domain = unique_domain_id()
    log = tmp_path / "bad.log"
    proc = start_launch("localization", domain, ["--lifecycle", "--frontend", "mast3r", "-p",
                                                 f"oracle_dataset:={tmp_path}"], log)
    client = LiveClient(domain)
    try:
        req = ChangeState.Request()
        req.transition.id = 1  # configure
        resp = client.call(ChangeState, "localization_node/change_state", req, timeout=120.0)
        assert resp is not None and not resp.success
        client.wait_for(lambda: "configure failed" in log.read_text(), 10.0)
        assert proc.poll() is None  # alive, unconfigured
    finally:
        client.close()
        stop_process_tree(proc, signal.SIGINT, 15.0)
    reasons = [ln for ln in log.read_text().splitlines() if "configure failed" in ln]
    assert len(reasons) == 1 and "unrecognised dataset layout" in reasons[0] and str(tmp_path) in reasons[0], \
        log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
