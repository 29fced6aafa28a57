"""geometry_msgs / nav_msgs / tf2_msgs / PointCloud2 <-> numpy, and optical vs body frames.

Poses are [4,4] float64 homogeneous transforms named ``T_<to>_<from>`` (``T_map_cam`` maps
camera-frame points into the map frame), metres. A message's pose of frame C in header frame P
is ``T_P_C``. Covariances are [6,6] float64 in ROS order (x, y, z, rotation about x, y, z),
as in geometry_msgs/PoseWithCovariance. Reading is duck-typed on ROS field names (rclpy and
rosbags messages); writing builds rclpy messages.

Optical vs body frames (REP 103). All vision math uses the camera *optical* frame
(x right, y down, z forward; suffix ``_optical_frame`` in ROS). Robot frames (``base_link``,
``camera_link``) are *body* frames: x forward, y left, z up. The fixed rotation between them,

    R_body_optical = [[0, 0, 1],      optical z (forward) = body  x
                      [-1, 0, 0],     optical x (right)   = body -y
                      [0, -1, 0]]     optical y (down)    = body -z

is the one every ROS camera driver publishes for camera_link -> camera_optical_frame
(roll -pi/2, pitch 0, yaw -pi/2; quaternion xyzw (-0.5, 0.5, -0.5, 0.5)). The nodes take the
real base -> optical transform from TF; these helpers are for rigs whose optical frame sits at
the body frame's origin and for tests.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from geometry_msgs.msg import (
    Pose,
    PoseArray,
    PoseStamped,
    PoseWithCovarianceStamped,
    Transform,
    TransformStamped,
)
from nav_msgs.msg import Path
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from mast3r_ros.ros.compat.conversions import ConversionError, make_header, payload_bytes, stamp_to_ns

R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
T_BODY_OPTICAL = np.eye(4)
T_BODY_OPTICAL[:3, :3] = R_BODY_OPTICAL
T_BODY_OPTICAL.flags.writeable = False  # shared constant
QUAT_UNIT_TOL = 1e-3  # |q| may differ from 1 by this much (float32 round trips, hand-typed poses)
# max |R R^T - I| accepted; the nearest rotation is sent. Ground-truth poses are not exactly
# orthonormal (7-Scenes' KinectFusion poses deviate by up to 4e-4).
ROTATION_TOL = 1e-3


def optical_to_body(T_x_optical: np.ndarray) -> np.ndarray:
    """Pose of an optical frame -> pose of the co-located body frame: T_x_body = T_x_optical @ T_optical_body."""
    return np.asarray(T_x_optical, dtype=np.float64) @ T_BODY_OPTICAL.T


def body_to_optical(T_x_body: np.ndarray) -> np.ndarray:
    """Pose of a body frame -> pose of the co-located optical frame: T_x_optical = T_x_body @ T_body_optical."""
    return np.asarray(T_x_body, dtype=np.float64) @ T_BODY_OPTICAL


# ---------------------------------------------------------------- poses and transforms


def _check_T(T) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ConversionError(f"pose must be a finite [4,4] transform, got shape {T.shape}")
    R = T[:3, :3]
    err = np.abs(R @ R.T - np.eye(3)).max()
    if err > ROTATION_TOL or np.linalg.det(R) < 0:
        raise ConversionError(f"pose rotation block is not a rotation matrix (|R R^T - I| = {err:.2g})")
    return T


def _quat_xyzw(q) -> np.ndarray:
    """Quaternion message -> unit [4] (x, y, z, w); refuses non-finite or non-unit input."""
    v = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    n = np.linalg.norm(v)
    if not np.all(np.isfinite(v)) or abs(n - 1.0) > QUAT_UNIT_TOL:
        raise ConversionError(f"quaternion {v.tolist()} is not a unit quaternion (|q| = {n:.6f})")
    return v / n


def _to_T(t, q) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(_quat_xyzw(q)).as_matrix()
    T[:3, 3] = [t.x, t.y, t.z]
    if not np.all(np.isfinite(T[:3, 3])):
        raise ConversionError(f"translation {T[:3, 3].tolist()} is not finite")
    return T


def _fill(t, q, T: np.ndarray) -> None:
    T = _check_T(T)
    t.x, t.y, t.z = (float(v) for v in T[:3, 3])
    q.x, q.y, q.z, q.w = (float(v) for v in Rotation.from_matrix(T[:3, :3]).as_quat())


def pose_to_T(pose) -> np.ndarray:
    """geometry_msgs/Pose -> [4,4]."""
    return _to_T(pose.position, pose.orientation)


def T_to_pose(T: np.ndarray) -> Pose:
    """[4,4] -> geometry_msgs/Pose."""
    pose = Pose()
    _fill(pose.position, pose.orientation, T)
    return pose


def transform_to_T(tf) -> np.ndarray:
    """geometry_msgs/Transform -> [4,4]."""
    return _to_T(tf.translation, tf.rotation)


def T_to_transform(T: np.ndarray) -> Transform:
    """[4,4] -> geometry_msgs/Transform."""
    tf = Transform()
    _fill(tf.translation, tf.rotation, T)
    return tf


def pose_stamped(T_frame_child: np.ndarray, header: Header) -> PoseStamped:
    return PoseStamped(header=header, pose=T_to_pose(T_frame_child))


def _check_cov(cov) -> np.ndarray:
    cov = np.asarray(cov, dtype=np.float64)
    if cov.size != 36:
        raise ConversionError(f"covariance must have 36 values, got {cov.size}")
    cov = cov.reshape(6, 6)
    if not np.all(np.isfinite(cov)) or not np.allclose(cov, cov.T, rtol=1e-6, atol=1e-12):
        raise ConversionError("covariance must be finite and symmetric")
    return cov


def pose_with_covariance_stamped(T_frame_child: np.ndarray, cov: np.ndarray,
                                 header: Header) -> PoseWithCovarianceStamped:
    """[4,4] pose + [6,6] covariance (ROS order x, y, z, rot x, y, z) -> PoseWithCovarianceStamped."""
    msg = PoseWithCovarianceStamped(header=header)
    msg.pose.pose = T_to_pose(T_frame_child)
    msg.pose.covariance = [float(v) for v in _check_cov(cov).reshape(-1)]
    return msg


def pose_with_covariance_to_T(msg) -> tuple[np.ndarray, np.ndarray]:
    """PoseWithCovarianceStamped (or PoseWithCovariance) -> ([4,4] pose, [6,6] covariance)."""
    pwc = msg.pose if hasattr(msg, "header") else msg
    return pose_to_T(pwc.pose), _check_cov(pwc.covariance)


def transform_stamped(T_parent_child: np.ndarray, parent: str, child: str,
                      stamp_ns: int) -> TransformStamped:
    """[4,4] T_parent_child -> TransformStamped (header.frame_id = parent, child_frame_id = child)."""
    if not parent or not child or parent == child:
        raise ConversionError(f"transform needs two different, non-empty frames, got {parent!r} -> {child!r}")
    return TransformStamped(header=make_header(stamp_ns, parent), child_frame_id=child,
                            transform=T_to_transform(T_parent_child))


def tf_message(transforms: Sequence[TransformStamped]):
    """TransformStampeds -> tf2_msgs/TFMessage (for /tf and /tf_static)."""
    from tf2_msgs.msg import TFMessage  # generated in .venv by setup_venv; real package on a robot

    return TFMessage(transforms=list(transforms))


def tf_message_to_dict(msg) -> dict[tuple[str, str], tuple[int, np.ndarray]]:
    """TFMessage -> {(parent, child): (stamp_ns, [4,4] T_parent_child)}; the last one wins."""
    return {(t.header.frame_id, t.child_frame_id): (stamp_to_ns(t.header.stamp), transform_to_T(t.transform))
            for t in msg.transforms}


# ---------------------------------------------------------------- pose sets


def pose_array(Ts: Sequence[np.ndarray], header: Header) -> PoseArray:
    """[N] x [4,4] poses in header.frame_id -> PoseArray."""
    return PoseArray(header=header, poses=[T_to_pose(T) for T in Ts])


def pose_array_to_T(msg) -> np.ndarray:
    """PoseArray -> [N,4,4] float64."""
    return np.stack([pose_to_T(p) for p in msg.poses]) if msg.poses else np.zeros((0, 4, 4))


def path(Ts: Sequence[np.ndarray], stamps_ns: Sequence[int], header: Header) -> Path:
    """[N] x [4,4] poses with their stamps -> nav_msgs/Path in header.frame_id."""
    if len(Ts) != len(stamps_ns):
        raise ConversionError(f"path has {len(Ts)} poses but {len(stamps_ns)} stamps")
    return Path(header=header, poses=[pose_stamped(T, make_header(ns, header.frame_id))
                                      for T, ns in zip(Ts, stamps_ns)])


def path_to_T(msg) -> tuple[np.ndarray, np.ndarray]:
    """nav_msgs/Path -> ([N,4,4] float64 poses, [N] int64 stamps in ns)."""
    Ts = [pose_to_T(p.pose) for p in msg.poses]
    stamps = np.array([stamp_to_ns(p.header.stamp) for p in msg.poses], dtype=np.int64)
    return (np.stack(Ts) if Ts else np.zeros((0, 4, 4))), stamps


# ---------------------------------------------------------------- point clouds

_FIELD_DTYPES = {PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2",
                 PointField.UINT16: "u2", PointField.INT32: "i4", PointField.UINT32: "u4",
                 PointField.FLOAT32: "f4", PointField.FLOAT64: "f8"}


def xyz_rgb_to_pointcloud2(xyz: np.ndarray, rgb: np.ndarray | None, header: Header) -> PointCloud2:
    """[N,3] float points (metres, in header.frame_id) + optional [N,3] uint8 RGB -> unorganised
    PointCloud2 with float32 x, y, z and, with colour, the PCL/rviz packed ``rgb`` field (a float32
    whose bits are the uint32 0x00RRGGBB)."""
    xyz = np.asarray(xyz, dtype=np.float32)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ConversionError(f"points must be [N,3], got {xyz.shape}")
    names = ["x", "y", "z"] + ([] if rgb is None else ["rgb"])
    rec = np.zeros(len(xyz), dtype=np.dtype({"names": names, "formats": ["<f4"] * len(names)}))
    rec["x"], rec["y"], rec["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != xyz.shape or rgb.dtype != np.uint8:
            raise ConversionError(f"colours must be [N,3] uint8 like the points, got {rgb.shape} {rgb.dtype}")
        packed = (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2]
        rec["rgb"] = packed.view(np.float32)
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, n in enumerate(names)]
    msg = PointCloud2(header=header, height=1, width=len(xyz), fields=fields, is_bigendian=False,
                      point_step=rec.dtype.itemsize, row_step=rec.dtype.itemsize * len(xyz),
                      is_dense=bool(np.all(np.isfinite(xyz))))
    msg.data = rec.tobytes()
    return msg


def _cloud_dtype(msg) -> np.dtype:
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for f in msg.fields:
        if int(f.datatype) not in _FIELD_DTYPES:
            raise ConversionError(f"PointCloud2 field {f.name!r} has unknown datatype {f.datatype}")
        shape = () if int(f.count) <= 1 else (int(f.count),)
        names.append(f.name)
        scalar = order + _FIELD_DTYPES[int(f.datatype)]
        formats.append((scalar, shape) if shape else scalar)
        offsets.append(int(f.offset))
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": int(msg.point_step)})


def pointcloud2_to_xyz_rgb(msg) -> tuple[np.ndarray, np.ndarray | None]:
    """PointCloud2 -> ([N,3] float32 x, y, z in header.frame_id, [N,3] uint8 RGB or None), N =
    height x width (invalid points kept as sent). Any field layout, padding and endianness."""
    dtype = _cloud_dtype(msg)
    if not {"x", "y", "z"} <= set(dtype.names):
        raise ConversionError(f"PointCloud2 lacks x/y/z fields (has {list(dtype.names)})")
    h, w = int(msg.height), int(msg.width)
    row_step, step = int(msg.row_step), int(msg.point_step)
    data = payload_bytes(msg.data)
    if row_step < w * step or data.size != row_step * h:
        raise ConversionError(f"PointCloud2 data has {data.size} bytes; expected row_step {row_step} x "
                              f"height {h} with row_step >= width {w} x point_step {step}")
    rows = data.reshape(h, row_step)[:, : w * step]
    rec = np.ascontiguousarray(rows).reshape(-1).view(dtype)
    xyz = np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float32)
    color = "rgb" if "rgb" in dtype.names else "rgba" if "rgba" in dtype.names else None
    if color is None:
        return xyz, None
    packed = np.ascontiguousarray(rec[color]).astype(dtype.fields[color][0].newbyteorder("="))
    bits = packed.view(np.uint32) if packed.dtype.itemsize == 4 else packed.astype(np.uint32)
    rgb = np.stack([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF], axis=1).astype(np.uint8)
    return xyz, rgb
