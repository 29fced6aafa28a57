"""What the localization node publishes for one frame, as rclpy messages (live node and replay).

Poses are of ``base_frame`` in ``map_frame`` with the image stamp; TF is map->odom (plus identity
odom->base for camera-only rigs) from :class:`~mast3r_ros.ros.core.localization_core.Output`.
"""
from __future__ import annotations

import numpy as np

from mast3r_ros.msg import LocalizationStatus
from mast3r_ros.ros.compat.conversions import make_header
from mast3r_ros.ros.compat.conversions_geometry import pose_with_covariance_stamped, tf_message, transform_stamped
from mast3r_ros.ros.core.localization_core import Output
from mast3r_ros.ros.core.params import LocalizationParams

STATES = {"INIT": LocalizationStatus.STATE_INIT, "TRACKING": LocalizationStatus.STATE_TRACKING,
          "LOST": LocalizationStatus.STATE_LOST, "RELOCALIZING": LocalizationStatus.STATE_RELOCALIZING}


def pose_message(out: Output, map_frame: str):
    """PoseWithCovarianceStamped of the base in the map (image stamp), or None when not localized."""
    if out.T_map_base is None:
        return None
    header = make_header(out.status.stamp_ns, map_frame)
    return pose_with_covariance_stamped(out.T_map_base, out.covariance, header)


def status_message(out: Output, map_frame: str, latency_s: float, frames_dropped: int) -> LocalizationStatus:
    st = out.status
    m = LocalizationStatus(header=make_header(st.stamp_ns, map_frame))
    m.state = STATES.get(st.state, LocalizationStatus.STATE_INIT)
    m.pose_published = out.T_map_base is not None
    m.matches, m.inliers = int(st.n_matches), int(st.n_inliers)
    m.median_reprojection_px = float(st.median_reproj_px)
    t = st.timings
    m.time_features, m.time_retrieval = float(t.get("features", 0)), float(t.get("retrieval", 0))
    m.time_matching, m.time_pose = float(t.get("matching", 0)), float(t.get("pnp", 0))
    m.time_total, m.latency = float(t.get("total", 0)), float(latency_s)
    m.keyframe_ids = [int(k) for k in st.kf_ids]
    m.frames_dropped = int(frames_dropped)
    m.message = st.message
    return m


def tf_transforms(p: LocalizationParams, T_map_odom: np.ndarray | None, stamp_ns: int,
                  odom_identity: bool) -> list:
    """map->odom (when known and ``publish_tf``) and identity odom->base (when this node is the
    odometry: ``publish_odom_tf`` true, or auto without odometry on TF) as TransformStamped."""
    out = []
    if T_map_odom is not None and p.publish_tf:
        out.append(transform_stamped(T_map_odom, p.map_frame, p.odom_frame, stamp_ns))
    if odom_identity:
        out.append(transform_stamped(np.eye(4), p.odom_frame, p.base_frame, stamp_ns))
    return out


def tf_msg(p: LocalizationParams, T_map_odom: np.ndarray | None, stamp_ns: int, odom_identity: bool):
    return tf_message(tf_transforms(p, T_map_odom, stamp_ns, odom_identity))
