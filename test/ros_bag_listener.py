"""Test helper run as a separate process: subscribe to a dataset bag's topics over DDS, print what
arrived as JSON on stdout. Usage: python ros_bag_listener.py N_IMAGES TIMEOUT_S

Exits once N_IMAGES images, N_IMAGES ground-truth poses and /tf_static arrived, or at the timeout.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time

import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage


def main() -> int:
    n_images, timeout = int(sys.argv[1]), float(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("bag_listener")
    got = {"images": [], "poses": [], "tf_static": []}

    def on_image(msg: Image) -> None:
        got["images"].append({"stamp": msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec,
                              "frame_id": msg.header.frame_id, "t": time.monotonic(),
                              "md5": hashlib.md5(bytes(msg.data)).hexdigest(), "size": [msg.width, msg.height]})

    def on_pose(msg: PoseStamped) -> None:
        p = msg.pose.position
        got["poses"].append({"stamp": msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec,
                             "frame_id": msg.header.frame_id, "xyz": [p.x, p.y, p.z]})

    def on_tf(msg: TFMessage) -> None:
        got["tf_static"] += [[t.header.frame_id, t.child_frame_id] for t in msg.transforms]

    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(Image, "/camera/image_raw", on_image, reliable)
    node.create_subscription(PoseStamped, "/ground_truth/pose", on_pose, reliable)
    node.create_subscription(TFMessage, "/tf_static", on_tf, latched)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
        if len(got["images"]) >= n_images and len(got["poses"]) >= n_images and got["tf_static"]:
            break
    print(json.dumps(got))
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
