"""Synchronised messages -> :class:`~mast3r_ros.ros.core.frames.Frame` (shared by the nodes and replay).

Raises ``ConversionError`` / ``FrameError`` naming the problem (encoding, step, sizes, all-NaN
depth), so the caller reports it and goes on with the next frame.
"""
from __future__ import annotations

import numpy as np

from mast3r_ros.ros.compat.conversions import (
    camera_info_to_intrinsics,
    image_to_depth_m,
    image_to_numpy,
    image_to_rgb,
)
from mast3r_ros.ros.core.frames import Frame, FrameError


def decode_frame(stamp_ns: int, msgs: dict, t_received: float = 0.0) -> Frame:
    """``msgs``: 'image' (sensor_msgs/Image), 'camera_info', optional 'depth' (16UC1 mm / 32FC1 m)."""
    image = image_to_rgb(msgs["image"])
    intr = camera_info_to_intrinsics(msgs["camera_info"])
    depth = None
    if "depth" in msgs:
        depth = image_to_depth_m(msgs["depth"])
        if not np.any(depth > 0):  # REP 118 NaN = no return; a frame with no return at all is a fault
            raw = image_to_numpy(msgs["depth"])
            n_nan = int(np.count_nonzero(np.isnan(raw))) if raw.dtype.kind == "f" else 0
            raise FrameError(f"depth image has no valid pixel ({n_nan} of {raw.size} are NaN, the rest "
                             f"<= 0 or inf)")
    frame_id = str(msgs["image"].header.frame_id)
    if not frame_id:
        raise FrameError("image header.frame_id is empty; the camera optical frame is needed for TF")
    return Frame(stamp_ns, frame_id, image, intr.K, intr.dist, intr.size, depth, t_received)
