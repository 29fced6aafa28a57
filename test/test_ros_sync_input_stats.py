"""What reached the sync is counted (frames lost before the node show in /diagnostics): arrivals,
arrival rate, stamp gaps and the number of messages they stand for. ROS-free."""
from __future__ import annotations

import numpy as np

from mast3r_ros.ros.compat.sync import ApproximateSync, TopicCounter

PERIOD_NS = 33_333_333  # 30 Hz


def _feed(stamps_idx, arrival_jitter_s=0.0, seed=0):
    rng = np.random.default_rng(seed)
    c = TopicCounter()
    for i in stamps_idx:
        c.add(i * PERIOD_NS, i / 30.0 + rng.uniform(0, arrival_jitter_s))
    return c


def test_counter_exact_on_steady_stream():
    c = _feed(range(300))
    assert (c.received, c.gaps, c.missing) == (300, 0, 0)
    assert abs(c.rate_hz(299 / 30.0) - 30.0) < 1e-9  # arrivals exactly 1/30 s apart, window 5 s


def test_counter_counts_each_lost_frame():
    lost = {40, 41, 42, 100, 200, 201}
    c = _feed([i for i in range(300) if i not in lost])
    assert c.received == 294 and c.gaps == 3 and c.missing == len(lost)


def test_counter_heavy_loss_still_counts_missing():
    # 70 % lost at random (the stock-transport case measured 26 % delivered): a median step would
    # be a multiple of the period; the counter must still account for every frame in between
    rng = np.random.default_rng(1)
    kept = sorted({0, 1, 2, 3, 4, 5, 6, *[i for i in range(7, 600) if rng.random() > 0.7]})
    c = _feed(kept)
    assert c.received + c.missing == kept[-1] + 1


def test_counter_restarts_on_stamps_going_back():
    c = _feed(list(range(100)) + list(range(50)))  # a bag played twice
    assert c.received == 150 and c.gaps == 0 and c.missing == 0


def test_sync_input_stats_compare_image_and_camera_info():
    s = ApproximateSync(("image", "camera_info"), max_interval_s=0.005, queue_size=30)
    for i in range(90):
        t = i / 30.0
        s.add("camera_info", i * PERIOD_NS, "c", t)
        if i % 10 != 9:                      # every 10th image lost on the way in
            s.add("image", i * PERIOD_NS, "i", t)
    st = s.input_stats(now_s=89 / 30.0)
    assert st["camera_info_received"] == "90" and st["image_received"] == "81"
    assert st["image_missing"] == "8"        # lost 9, 19, ..., 79 sit between images; 89 is at the end
    assert st["image_stamp_gaps"] == "8" and st["camera_info_missing"] == "0"
    assert st["synced"] == "81" and st["unsynchronised"] == "0"
    assert float(st["camera_info_hz"]) == 30.0 and 26.0 < float(st["image_hz"]) < 28.0
