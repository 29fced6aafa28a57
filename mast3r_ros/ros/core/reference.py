"""Inputs of the ``set_reference`` service (map-free localization): from files or the current frame.

The reference image's intrinsics are the live camera's (camera_info), so a reference file must
have the camera's image size; depth (optional) must be registered to it, or is registered with
the node's ``rgbd_calibration``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mast3r_ros.datasets.calibration import RgbdCalibration
from mast3r_ros.ros.core.frames import Frame, FrameError


def read_depth_file(path: Path) -> np.ndarray:
    """[H,W] float32 metres from a 16-bit PNG (millimetres), a float32 TIFF/EXR (metres) or .npy (metres)."""
    if path.suffix == ".npy":
        raw = np.load(path, allow_pickle=False)
    else:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2:
        raise FrameError(f"depth file {str(path)!r} is not a single-channel image")
    if raw.dtype == np.uint16:
        return raw.astype(np.float32) * np.float32(1e-3)
    if raw.dtype in (np.float32, np.float64):
        return raw.astype(np.float32)
    raise FrameError(f"depth file {str(path)!r} has dtype {raw.dtype}; expected uint16 mm or float32 m")


def reference_inputs(image_path: str, depth_path: str, use_current: bool, current: Frame | None,
                     calib: RgbdCalibration | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(image [H,W,3] uint8 RGB, K [3,3], depth [H,W] float32 m registered to the image, or None).

    Raises:
        FrameError: missing/unreadable file, no frame received yet, size mismatch.
    """
    if current is None:
        what = "use_current_frame" if use_current else "the reference image's intrinsics (camera_info)"
        raise FrameError(f"no synchronised camera frame received yet; needed for {what}")
    if use_current:
        image, depth = current.image, current.depth
    else:
        if not image_path:
            raise FrameError("set image_path or use_current_frame")
        p = Path(image_path)
        if not p.is_file():
            raise FrameError(f"reference image {image_path!r} does not exist")
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FrameError(f"reference image {image_path!r} is not a readable image")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        depth = None
        if depth_path:
            dp = Path(depth_path)
            if not dp.is_file():
                raise FrameError(f"reference depth {depth_path!r} does not exist")
            depth = read_depth_file(dp)
    H, W = image.shape[:2]
    if image.shape[:2] != current.image.shape[:2]:
        raise FrameError(f"reference image is {W}x{H} but the camera (camera_info) is "
                         f"{current.image.shape[1]}x{current.image.shape[0]}")
    if depth is not None:
        if depth.shape[:2] != (H, W):
            raise FrameError(f"reference depth is {depth.shape[1]}x{depth.shape[0]}, image {W}x{H}")
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0)).astype(np.float32)
        if calib is not None:
            depth = calib.depth_in_colour(depth, current.K, (W, H))
    return image, current.K, depth
