"""rosbag2 files without rosbag2: write a posed RGB-D dataset as a bag, read bags back.

Uses ``rosbags`` (pure Python, sqlite3 and mcap storage). Messages are built and serialised with
rclpy, so what is in a bag is byte for byte what a node would publish; ``rosbags``' own CDR
reader (:func:`typestore`) gives an independent check in the tests.

A dataset bag (``mast3r-ros make-bag``) holds, per frame, with ``header.stamp`` = log time =
the frame's stamp (the dataset's timestamp; frame index / fps for sequences without timestamps,
such as 7-Scenes):

* ``/camera/image_raw``        sensor_msgs/Image rgb8, frame ``camera_optical_frame``
* ``/camera/camera_info``      sensor_msgs/CameraInfo: the colour camera's K (no distortion), i.e.
  the calibration's ``K_rgb`` when one is given (``--rgbd-calib``), else the dataset's K
* ``/camera/depth/image_raw``  sensor_msgs/Image 16UC1 millimetres (0 = none), as the dataset
  stores it (7-Scenes depth is *not* registered to the colour camera: a node subscribing depth
  needs the same ``rgbd_calibration``)
* ``/ground_truth/pose``       geometry_msgs/PoseStamped: the colour camera's optical frame in
  ``map`` (the dataset pose moved to the colour camera when the calibration says the dataset
  poses describe the depth camera)
* ``/tf_static`` once, first:  base_link -> camera_optical_frame (REP-103 rotation, camera at
  the base origin looking along base x), so nodes can look up base -> optical as on a robot.
"""
from __future__ import annotations

import importlib
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rclpy.serialization import deserialize_message, serialize_message

from mast3r_ros.datasets.calibration import RgbdCalibration
from mast3r_ros.datasets.readers import FrameSpec, RgbdDataset, TumRgbdDataset
from mast3r_ros.paths import REPO_ROOT
from mast3r_ros.ros.compat.conversions import (
    CameraIntrinsics,
    depth_m_to_image,
    intrinsics_to_camera_info,
    make_header,
    rgb_to_image,
)
from mast3r_ros.ros.compat.conversions_geometry import T_BODY_OPTICAL, pose_stamped, tf_message, transform_stamped

STORAGES = ("mcap", "sqlite3")


@dataclass(frozen=True)
class DatasetBagConfig:
    """Topics, frames and timing of a dataset bag (defaults: the nodes' default inputs)."""

    image_topic: str = "/camera/image_raw"
    camera_info_topic: str = "/camera/camera_info"
    depth_topic: str = "/camera/depth/image_raw"       # '' = no depth
    ground_truth_topic: str = "/ground_truth/pose"     # '' = no ground truth
    camera_frame: str = "camera_optical_frame"
    base_frame: str = "base_link"                      # '' = no /tf_static
    map_frame: str = "map"
    fps: float = 30.0          # stamps of datasets without timestamps: index / fps seconds
    time_offset_s: float = 0.0  # added to every stamp
    # colour/depth calibration (``--rgbd-calib``): camera_info and ground truth are the colour
    # camera's, as in a map built with the same calibration; None = the dataset's K and poses
    calibration: RgbdCalibration | None = None


def frame_stamp_ns(dataset: RgbdDataset, frame, cfg: DatasetBagConfig) -> int:
    """Stamp of a frame in ns: the dataset's timestamp where it has real ones (TUM), else index / fps."""
    seconds = frame.timestamp if isinstance(dataset, TumRgbdDataset) else frame.index / cfg.fps
    return round((seconds + cfg.time_offset_s) * 1e9)


def dataset_messages(dataset: RgbdDataset, frames: FrameSpec | str | None,
                     cfg: DatasetBagConfig = DatasetBagConfig()) -> Iterator[tuple[str, int, object]]:
    """(topic, log time ns, rclpy message) for the selected frames, in time order."""
    selected = dataset.frames(frames)
    if not selected:
        raise ValueError(f"frame spec {frames} selects no frame of {dataset.root}")
    stamps = [frame_stamp_ns(dataset, f, cfg) for f in selected]
    if any(b <= a for a, b in itertools.pairwise(stamps)) or stamps[0] < 0:
        raise ValueError("frame stamps must be non-negative and strictly increasing")
    if cfg.base_frame:
        tf = transform_stamped(T_BODY_OPTICAL, cfg.base_frame, cfg.camera_frame, stamps[0])
        yield "/tf_static", stamps[0], tf_message([tf])
    W, H = dataset.image_size
    cal = cfg.calibration or RgbdCalibration()
    intr = CameraIntrinsics(cal.colour_K(dataset.K), None, int(W), int(H))
    for frame, ns in zip(selected, stamps):
        header = make_header(ns, cfg.camera_frame)
        rgb = dataset.load_rgb(frame)
        if rgb.shape[:2] != (H, W):
            raise ValueError(f"{frame.rgb_path}: image is {rgb.shape[1]}x{rgb.shape[0]}, dataset says {W}x{H}")
        yield cfg.image_topic, ns, rgb_to_image(rgb, "rgb8", header)
        yield cfg.camera_info_topic, ns, intrinsics_to_camera_info(intr, header)
        depth = dataset.load_depth(frame) if cfg.depth_topic else None
        if depth is not None:
            yield cfg.depth_topic, ns, depth_m_to_image(depth, "16UC1", header)
        if cfg.ground_truth_topic and frame.T_world_cam is not None:
            yield cfg.ground_truth_topic, ns, pose_stamped(cal.colour_pose(frame.T_world_cam),
                                                                  make_header(ns, cfg.map_frame))


def message_type_name(msg) -> str:
    """rclpy message instance -> ROS 2 type name 'pkg/msg/Name'."""
    pkg, sub = type(msg).__module__.split(".")[:2]
    return f"{pkg}/{sub}/{type(msg).__name__}"


def message_class(type_name: str):
    """ROS 2 type name 'pkg/msg/Name' -> rclpy message class (ImportError names what is missing)."""
    parts = type_name.split("/")
    if len(parts) != 3 or parts[1] not in ("msg", "srv"):
        raise ValueError(f"not a ROS 2 message type name: {type_name!r}")
    module = importlib.import_module(f"{parts[0]}.{parts[1]}")
    try:
        return getattr(module, parts[2])
    except AttributeError:
        raise ImportError(f"message type {type_name} not found in {module.__name__}") from None


def typestore():
    """rosbags typestore for ROS 2 Jazzy plus our own interfaces (mast3r_ros/msg/*)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in sorted(_msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"mast3r_ros/msg/{path.stem}"))
    store.register(types)
    return store


def _msg_dir() -> Path:
    """Our .msg files: in the source tree, or in share/mast3r_ros/msg of a colcon install."""
    if (REPO_ROOT / "msg").is_dir():
        return REPO_ROOT / "msg"
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("mast3r_ros")) / "msg"
    except (ImportError, LookupError):
        return REPO_ROOT / "msg"  # nothing registered; the stock Jazzy types still work


def write_bag(out: str | Path, messages: Iterable[tuple[str, int, object]], storage: str = "mcap") -> dict:
    """Write (topic, log time ns, rclpy message) to a new rosbag2 folder ``out``.

    Returns {topic: count}. ``out`` must not exist (rosbag2 never appends).
    """
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.enums import StoragePlugin

    if storage not in STORAGES:
        raise ValueError(f"storage {storage!r}: expected one of {STORAGES}")
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; rosbag2 bags are written to a new folder")
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    store = typestore()
    counts: dict[str, int] = {}
    connections = {}
    with Writer(out, version=Writer.VERSION_LATEST, storage_plugin=plugin) as writer:
        for topic, ns, msg in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, message_type_name(msg), typestore=store)
            writer.write(connections[topic], int(ns), serialize_message(msg))
            counts[topic] = counts.get(topic, 0) + 1
    return counts


def read_bag(path: str | Path, topics: Sequence[str] | None = None) -> Iterator[tuple[str, int, object]]:
    """(topic, log time ns, rclpy message) from a rosbag2 folder, in log-time order."""
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        classes = {c.id: message_class(c.msgtype) for c in conns}
        for conn, ns, raw in reader.messages(connections=conns):
            yield conn.topic, ns, deserialize_message(bytes(raw), classes[conn.id])
