"""ROS-free node cores: approximate time sync, newest-frame queue + worker, TF tree, frame checks."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from mast3r_ros.geometry.transforms import make_T, rotation_exp
from mast3r_ros.localization.covariance import camera_to_base
from mast3r_ros.ros.compat.sync import ApproximateSync
from mast3r_ros.ros.compat.tf_tree import TfLookupError, TfTree
from mast3r_ros.ros.core.frame_queue import FrameWorker, NewestQueue
from mast3r_ros.ros.core.frames import Frame, FrameError, check_frame

MS = 1_000_000


def test_sync_exact_and_approximate_pairs():
    s = ApproximateSync(("image", "camera_info"), max_interval_s=0.005,
                        topic_names={"image": "/cam/image", "camera_info": "/cam/info"})
    assert s.add("image", 100 * MS, "i1").sets == []            # waits for camera_info
    r = s.add("camera_info", 100 * MS, "c1")                     # exact stamp: final at once
    assert r.sets == [{"image": "i1", "camera_info": "c1"}] and r.stamps == [100 * MS]
    s.add("camera_info", 132 * MS, "c2")                         # info first, image slightly later
    r = s.add("image", 134 * MS, "i2")
    assert r.sets == [] and not r.rejected                       # a closer info may still come
    r = s.add("camera_info", 166 * MS, "c3")
    assert r.sets == [{"image": "i2", "camera_info": "c2"}]      # nearest (2 ms) chosen


def test_sync_rejects_image_without_partner_and_names_topic():
    s = ApproximateSync(("image", "camera_info"), max_interval_s=0.005, queue_size=3,
                        topic_names={"image": "/cam/image", "camera_info": "/cam/info"})
    r = s.add("image", 100 * MS, "orphan")
    r = s.add("image", 133 * MS, "good")
    r = s.add("camera_info", 133 * MS, "c")
    assert r.sets == [{"image": "good", "camera_info": "c"}]
    assert len(r.rejected) == 1 and r.rejected[0][0] == 100 * MS
    assert "/cam/info" in r.rejected[0][1] and "0.100" in r.rejected[0][1]
    s2 = ApproximateSync(("image", "camera_info"), queue_size=2, topic_names={"camera_info": "/cam/info"})
    msgs = sum([s2.add("image", i * 33 * MS, i).rejected for i in range(4)], [])
    assert msgs and msgs[0][0] == 0 and "nothing received on /cam/info" in msgs[0][1]


def test_sync_rejects_backwards_image_until_reset():
    s = ApproximateSync(("image", "camera_info"))
    s.add("camera_info", 200 * MS, "c")
    assert s.add("image", 200 * MS, "i").sets
    r = s.add("image", 100 * MS, "old")
    assert r.rejected[0][0] == 100 * MS and "went backwards" in r.rejected[0][1]
    s.reset()
    s.add("camera_info", 100 * MS, "c")
    assert s.add("image", 100 * MS, "old").sets


def test_sync_three_topics_and_thread_safety():
    s = ApproximateSync(("image", "camera_info", "depth"), max_interval_s=0.01, queue_size=50)
    got = []
    frame = threading.Barrier(3)

    def feed(key, offset):
        for i in range(200):
            frame.wait(60)  # the three drivers publish each frame together: their add() calls race,
            got.extend(s.add(key, i * 33 * MS + offset, (key, i)).sets)  # none runs ahead of the queue

    threads = [threading.Thread(target=feed, args=a) for a in
               (("image", 0), ("camera_info", 0), ("depth", 2 * MS))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    # measured 200 in 20 of 20 runs; the last set may wait for a newer message, in some arrival orders
    assert len(got) >= 199
    assert all(g["image"][1] == g["camera_info"][1] == g["depth"][1] for g in got)


def test_newest_queue_drops_oldest():
    q = NewestQueue(2)
    assert q.put(1) is None and q.put(2) is None and q.put(3) == 1
    assert q.get(0) == 2 and q.get(0) == 3 and q.get(0.01) is None
    assert q.dropped == 1 and q.pushed == 3


def test_worker_processes_newest_and_survives_errors():
    seen = []
    entered, gate = threading.Event(), threading.Event()

    def handler(item):
        entered.set()
        gate.wait(60)
        if item == "bad":
            raise RuntimeError("boom")
        seen.append(item)

    w = FrameWorker(handler).start()
    w.submit("bad")
    assert entered.wait(60)             # worker now busy with "bad" (taken off the queue)
    for i in range(10):
        w.submit(i)                     # 0..8 dropped while busy, 9 kept
    gate.set()
    deadline = time.monotonic() + 60    # a hang guard, not a speed requirement
    while w.processed < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w.stop(10.0)
    assert seen == [9] and w.failures == 1 and w.queue.dropped == 9


def test_tf_tree_chain_interpolation_and_errors():
    tf = TfTree()
    T_base_cam = make_T(rotation_exp(np.array([0.1, -0.2, 0.3])), np.array([0.1, 0.0, 0.5]))
    tf.set_transform("base_link", "cam", 0, T_base_cam, static=True)
    tf.set_transform("odom", "base_link", 1_000 * MS, make_T(np.eye(3), np.array([0.0, 0, 0])))
    tf.set_transform("odom", "base_link", 2_000 * MS,
                     make_T(rotation_exp(np.array([0, 0, 0.2])), np.array([1.0, 0, 0])))
    T = tf.lookup("odom", "cam", 1_500 * MS)
    T_mid = make_T(rotation_exp(np.array([0, 0, 0.1])), np.array([0.5, 0, 0]))
    np.testing.assert_allclose(T, T_mid @ T_base_cam, atol=1e-9)
    np.testing.assert_allclose(tf.lookup("cam", "base_link", 1_500 * MS), np.linalg.inv(T_base_cam),
                               atol=1e-9)
    with pytest.raises(TfLookupError, match="not available at 3.000"):
        tf.lookup("odom", "cam", 3_000 * MS)
    with pytest.raises(TfLookupError, match="no TF path"):
        tf.lookup("map", "cam", 0)


def _frame(**kw):
    base = dict(stamp_ns=10, frame_id="cam", image=np.zeros((48, 64, 3), np.uint8),
                K=np.array([[50.0, 0, 32], [0, 50, 24], [0, 0, 1]]), info_size=(64, 48))
    base.update(kw)
    return Frame(**base)


@pytest.mark.parametrize("kw,last,match", [
    ({"stamp_ns": 5}, 10, "went backwards"),
    ({"image": np.zeros((48, 64), np.uint8)}, None, "must be \\[H,W,3\\] uint8"),
    ({"info_size": (640, 480)}, None, "camera_info size 640x480 does not match image size 64x48"),
    ({"K": np.full((3, 3), np.nan)}, None, "not a valid intrinsics"),
    ({"depth": np.full((48, 64), np.nan, np.float32)}, None, "no valid pixel \\(3072 of 3072 are NaN"),
    ({"depth": np.ones((10, 10), np.float32)}, None, "depth size 10x10"),
])
def test_check_frame_names_the_problem(kw, last, match):
    with pytest.raises(FrameError, match=match):
        check_frame(_frame(**kw), last)


def test_check_frame_partial_nan_depth_becomes_invalid():
    d = np.ones((48, 64), np.float32)
    d[0, :5] = np.nan
    out = check_frame(_frame(depth=d), None)
    assert out[0, 0] == 0 and out[1, 1] == 1


def test_camera_to_base_covariance_matches_monte_carlo():
    rng = np.random.default_rng(0)
    T_map_cam = make_T(rotation_exp(np.array([0.3, 0.2, -0.1])), np.array([1.0, 2.0, 0.5]))
    T_base_cam = make_T(rotation_exp(np.array([-1.2, 0.0, -1.5])), np.array([0.2, 0.0, 0.4]))
    A = rng.normal(size=(6, 6)) * 0.01
    cov = A @ A.T
    T_b, cov_b = camera_to_base(T_map_cam, cov, T_base_cam)
    samples = []
    for e in rng.multivariate_normal(np.zeros(6), cov, size=20000):
        Tc = make_T(rotation_exp(e[3:]) @ T_map_cam[:3, :3], T_map_cam[:3, 3] + e[:3])
        Tb = Tc @ np.linalg.inv(T_base_cam)  # the base shares the camera's rotation error
        samples.append(np.r_[Tb[:3, 3] - T_b[:3, 3], e[3:]])
    emp = np.cov(np.array(samples).T)
    np.testing.assert_allclose(emp, cov_b, atol=0.05 * np.abs(cov_b).max())
    assert np.abs(cov_b[:3, :3] - cov[:3, :3]).max() > 0.2 * np.abs(cov).max()  # lever arm matters
