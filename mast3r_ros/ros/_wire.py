"""Private message <-> numpy helpers for the nodes, until/unless ``conversions.py`` covers them.

Duck-typed on ROS field names (rclpy messages and rosbags dataclasses both work). Images are
decoded to [H,W,3] uint8 RGB; depth to [H,W] float32 metres; poses are [4,4] float64.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_sec_nanosec(ns: int) -> tuple[int, int]:
    return int(ns // 1_000_000_000), int(ns % 1_000_000_000)


def _rows(msg, bytes_per_px: int) -> np.ndarray:
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8) if not isinstance(msg.data, np.ndarray) \
        else msg.data.view(np.uint8)
    if h <= 0 or w <= 0:
        raise ValueError(f"image has size {w}x{h}")
    if step < w * bytes_per_px:
        raise ValueError(f"image step {step} < width {w} x {bytes_per_px} bytes per pixel ({msg.encoding})")
    if data.size != step * h:
        raise ValueError(f"image data has {data.size} bytes, expected step {step} x height {h} = {step * h}")
    return data.reshape(h, step)[:, : w * bytes_per_px]


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> [H,W,3] uint8 RGB."""
    enc = str(msg.encoding).lower()
    if enc not in _CHANNELS:
        raise ValueError(f"unsupported image encoding {msg.encoding!r}; expected one of {sorted(_CHANNELS)}")
    c = _CHANNELS[enc]
    px = _rows(msg, c).reshape(int(msg.height), int(msg.width), c)
    if enc == "mono8":
        return np.repeat(px, 3, axis=2)
    if enc.startswith("bgr"):
        return np.ascontiguousarray(px[:, :, 2::-1])
    return np.ascontiguousarray(px[:, :, :3])


def depth_to_m(msg) -> np.ndarray:
    """sensor_msgs/Image depth (16UC1 millimetres, 32FC1 metres) -> [H,W] float32 metres."""
    enc = str(msg.encoding).upper()
    if enc in ("16UC1", "MONO16"):
        dt, scale = np.dtype(np.uint16), 1e-3
    elif enc == "32FC1":
        dt, scale = np.dtype(np.float32), 1.0
    else:
        raise ValueError(f"unsupported depth encoding {msg.encoding!r}; expected 16UC1 (mm) or 32FC1 (m)")
    if msg.is_bigendian:
        dt = dt.newbyteorder(">")
    rows = _rows(msg, dt.itemsize)
    d = np.ascontiguousarray(rows).view(dt).reshape(int(msg.height), int(msg.width)).astype(np.float32)
    return d * np.float32(scale) if scale != 1.0 else d


def camera_info_to_K(msg) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """CameraInfo -> (K [3,3] float64, OpenCV distortion [N] or None, (W, H))."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    d = np.asarray(msg.d, dtype=np.float64)
    model = str(msg.distortion_model)
    if d.size and np.any(d != 0) and model not in ("plumb_bob", "rational_polynomial"):
        raise ValueError(f"unsupported distortion model {model!r}; expected plumb_bob or rational_polynomial")
    return K, (d if d.size and np.any(d != 0) else None), (int(msg.width), int(msg.height))


def T_to_pose_fields(T: np.ndarray) -> tuple[list[float], list[float]]:
    """[4,4] -> ([x, y, z], [qx, qy, qz, qw])."""
    q = Rotation.from_matrix(np.asarray(T)[:3, :3]).as_quat()
    return [float(v) for v in T[:3, 3]], [float(v) for v in q]


def fill_pose(pose, T: np.ndarray) -> None:
    (pose.position.x, pose.position.y, pose.position.z), q = T_to_pose_fields(T)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = q


def fill_transform(tf, T: np.ndarray) -> None:
    (tf.translation.x, tf.translation.y, tf.translation.z), q = T_to_pose_fields(T)
    tf.rotation.x, tf.rotation.y, tf.rotation.z, tf.rotation.w = q


def pose_to_T(pose) -> np.ndarray:
    """geometry_msgs/Pose -> [4,4]; refuses a non-unit or non-finite quaternion."""
    q = np.array([pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w], float)
    p = np.array([pose.position.x, pose.position.y, pose.position.z], float)
    n = np.linalg.norm(q)
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(p))) or abs(n - 1.0) > 1e-2:
        raise ValueError(f"pose has a non-finite value or a non-unit quaternion (|q| = {n:.3f})")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(q / n).as_matrix()
    T[:3, 3] = p
    return T


def transform_to_T(tf) -> np.ndarray:
    """geometry_msgs/Transform -> [4,4]."""
    q = [tf.rotation.x, tf.rotation.y, tf.rotation.z, tf.rotation.w]
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(q).as_matrix()
    T[:3, 3] = [tf.translation.x, tf.translation.y, tf.translation.z]
    return T
