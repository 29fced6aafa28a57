"""The README's MASt3R RGB-D mapping recipe live: its commands are extracted from README.md (the block after
the ``ros-mast3r-rgbd-recipe`` marker) and run as separate processes with the shipped defaults: `make-bag`
(with depth), `mast3r-ros launch mapping --frontend mast3r -p oracle_dataset:=...` (``subscribe_depth`` left
at its shipped ``true``), `play`, then the save_map service (called by the test's client: no `ros2` CLI
here). The dataset is replaced by a 4-frame excerpt (links to the same files). Asserted: every played frame
a keyframe, save_map writes a 4-keyframe MASt3R map whose poses match the ground truth seen from the base at
the first keyframe (the map frame), and whose stored points are the played depth's (the sensor, not the
aligned pointmaps)."""
from __future__ import annotations

import signal

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mast3r_ros.msg")

from mast3r_ros.datasets.readers import open_dataset  # noqa: E402
from mast3r_ros.geometry.transforms import invert, pose_errors  # noqa: E402
from mast3r_ros.localization.frontends.mast3r import network_pointmap_from_depth  # noqa: E402
from mast3r_ros.map import KeyframeMap  # noqa: E402
from mast3r_ros.model import ImageTransform  # noqa: E402
from mast3r_ros.ros.compat.conversions import stamp_to_ns  # noqa: E402
from mast3r_ros.ros.compat.conversions_geometry import T_BODY_OPTICAL  # noqa: E402
from mast3r_ros.srv import SaveMap  # noqa: E402

from .live_client import stop_process_tree  # noqa: E402
from .recipes import bag_truth, dataset_excerpt, readme_recipe, recipe_client, run_recipe  # noqa: E402

MARKER = "<!-- ros-mast3r-rgbd-recipe"
DATASET = "../shared/data/7scenes_redkitchen"
EXCERPT = (0, 15, 30, 45)  # the bag's frames (0:46:15)


def test_readme_mast3r_rgbd_recipe_maps_with_depth_on_the_shipped_defaults(data_dir, tmp_path):
    data = dataset_excerpt(data_dir / "7scenes_redkitchen" / "data", tmp_path / "kitchen4", EXCERPT)
    cmds = [[a.replace(DATASET, str(data)) for a in c] for c in readme_recipe(MARKER)]
    assert [c[1] for c in cmds] == ["make-bag", "launch", "play", "service"]
    assert [c[i + 1] for c in cmds for i, a in enumerate(c) if a in ("-p", "--param")] == [f"oracle_dataset:={data}"]
    assert "--no-depth" not in cmds[0] and cmds[3][:4] == ["ros2", "service", "call", "/mast3r/save_map"]
    work, env, client = recipe_client(tmp_path)
    started: list = []
    try:
        run_recipe(cmds[:3], work, env, tmp_path, client, started, keys=("status",))
        assert client.wait_for_service(SaveMap, "save_map", 60)  # its client made now, called below
        images, gt = bag_truth(work / "rgbd.bag")
        assert client.wait_for(lambda: set(images) <= {stamp_to_ns(s.header.stamp)
                                                        for s in client.messages("status")}, 30.0)
        statuses = list(client.messages("status"))
        r = client.call(SaveMap, "save_map", SaveMap.Request(), timeout=300)
    finally:
        client.close()
        for p in started:
            stop_process_tree(p, signal.SIGINT, 15.0)
    log = (tmp_path / "launch.log").read_text()
    assert "Traceback" not in log and "model: oracle" in log, log[-2000:]
    assert all(s.message.startswith("keyframe ") for s in statuses), [s.message for s in statuses]
    assert sorted(stamp_to_ns(s.header.stamp) for s in statuses if s.keyframe_ids) == images
    assert r.success and r.num_keyframes == 4 and r.map_dir == "rgbd_map", r.message
    kitchen = open_dataset(data)
    frames = list(kitchen.frames("0:46:15"))
    with KeyframeMap.open(work / "rgbd_map") as kmap:
        assert kmap.meta.frontend == "mast3r"
        kfs = [kmap.get_keyframe(i, load_image=False, arrays=["mast3r_X", "mast3r_tf"]) for i in kmap.keyframe_ids()]
    # the stored points are the played depth back-projected with camera_info's K (to float32 rounding: the
    # bag carries 16UC1 millimetres, converted to metres by the node; the dataset reader divides by 1000)
    for kf, f in zip(kfs, frames):
        tf = ImageTransform.from_array(kf.arrays["mast3r_tf"])
        expected = network_pointmap_from_depth(kitchen.K, kitchen.load_depth(f), tf)
        np.testing.assert_allclose(kf.arrays["mast3r_X"], expected, rtol=3e-7, atol=0)  # NaN where no depth
        np.testing.assert_allclose(kf.K, kitchen.K, rtol=1e-6)  # the depth prior's K is kept
    # the map frame: the base at the first keyframe (no odometry: the node's identity odom->base)
    np.testing.assert_allclose(kfs[0].T_map_cam, T_BODY_OPTICAL, atol=1e-9)
    T_map_world = T_BODY_OPTICAL @ invert(gt[images[0]])
    errs = np.array([pose_errors(kf.T_map_cam, T_map_world @ gt[s]) for kf, s in zip(kfs, images)])
    print(f"\nrgbd recipe: save_map '{r.message}'; keyframe errors (cm, deg) "
          f"{[(round(100 * float(t), 2), round(float(d), 3)) for t, d in errs]}")
    # measured: 0.12 / 0.18 / 0.25 cm, 0.031 / 0.053 / 0.067 deg (network images of 512 px)
    assert errs[:, 0].max() < 0.003 and errs[:, 1].max() < 0.075
