"""Decoded input frames and their validation (ROS-free); the camera -> base pose/covariance change is
:func:`mast3r_ros.localization.covariance.camera_to_base`.

A :class:`Frame` is what the node (or offline replay) has after converting the synchronised
messages to numpy. :func:`check_frame` names everything wrong with it, so a bad frame becomes a
status + diagnostic error instead of a crash, and the next good frame is processed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class FrameError(ValueError):
    """A frame (or a service request) cannot be used; the message names the problem."""


@dataclass
class Frame:
    """One synchronised camera frame.

    stamp_ns: image header stamp, integer nanoseconds.
    frame_id: camera *optical* frame of the image (x right, y down, z forward).
    image: [H,W,3] uint8 RGB.
    K: [3,3] float64 intrinsics of ``image`` from camera_info (pixels, pixel-centre convention).
    dist: OpenCV distortion coefficients from camera_info, or None (no distortion).
    info_size: (W, H) from camera_info.
    depth: optional [H,W] float32 metres (0 or NaN = no measurement, REP 118).
    received: monotonic seconds when the image arrived (latency is measured from here).
    """
    stamp_ns: int
    frame_id: str
    image: np.ndarray
    K: np.ndarray
    dist: np.ndarray | None = None
    info_size: tuple[int, int] | None = None
    depth: np.ndarray | None = None
    received: float = 0.0


FUTURE_LIMIT_S = 10.0   # an image stamped this far ahead of the node's clock is refused
JUMP_LIMIT_S = 600.0    # ... as is one this far ahead of the previous image,
JUMP_CONFIRM = 3        # unless this many consecutive images agree on the new time (a new recording)


class StampGuard:
    """Image stamps before synchronisation: refuse the far future, recover from going backwards.

    Why: one frame stamped days ahead would otherwise become the "previous stamp" and every later
    frame would be refused as going backwards. A frame far ahead of the node's clock (when it
    has one) or of the previous image is refused and not remembered; :data:`JUMP_CONFIRM`
    consecutive frames agreeing on the jump are a new timeline and accepted. A stamp older than
    the previous image (a bag loop, a restarted driver) resets the history, as the ``reset``
    service would; the caller resets its sync and tracking state when told ``'reset'``.
    """

    def __init__(self):
        self.last_ns: int | None = None
        self._ahead: list[int] = []

    def check(self, stamp_ns: int, now_ns: int = 0) -> tuple[str, str]:
        """('ok' | 'refuse' | 'reset', reason). ``now_ns`` 0 = no clock (offline, sim time not started)."""
        if now_ns > 0 and stamp_ns > now_ns + FUTURE_LIMIT_S * 1e9:
            return "refuse", (f"image stamp {stamp_ns / 1e9:.3f} s is {(stamp_ns - now_ns) / 1e9:.1f} s ahead of "
                              f"the node's clock; frame refused")
        last, self_ahead = self.last_ns, self._ahead
        if last is None or 0 <= stamp_ns - last <= JUMP_LIMIT_S * 1e9:
            self.last_ns, self._ahead = stamp_ns, []
            return "ok", ""
        if stamp_ns < last:
            self.last_ns, self._ahead = stamp_ns, []
            return "reset", (f"image stamp went backwards by {(last - stamp_ns) / 1e9:.3f} s: input and "
                             f"tracking state reset (as the reset service)")
        agree = bool(self_ahead) and 0 <= stamp_ns - self_ahead[-1] <= JUMP_LIMIT_S * 1e9
        self._ahead = self_ahead + [stamp_ns] if agree else [stamp_ns]
        if len(self._ahead) >= JUMP_CONFIRM:
            self.last_ns, self._ahead = stamp_ns, []
            return "reset", (f"image stamps jumped {(stamp_ns - last) / 1e9:.0f} s ahead for {JUMP_CONFIRM} frames: "
                             f"new timeline, tracking state reset")
        return "refuse", (f"image stamp {stamp_ns / 1e9:.3f} s is {(stamp_ns - last) / 1e9:.0f} s ahead of the "
                          f"previous image; frame refused")

    @staticmethod
    def ahead_of_clock(stamp_ns: int, now_ns: int) -> bool:
        """A partner message (camera_info, depth) of a frame the guard would refuse for its clock."""
        return now_ns > 0 and stamp_ns > now_ns + FUTURE_LIMIT_S * 1e9

    def reset(self) -> None:
        self.last_ns, self._ahead = None, []


def check_frame(frame: Frame, last_stamp_ns: int | None) -> np.ndarray | None:
    """Raise :class:`FrameError` naming the problem; return the cleaned depth (NaN -> 0) or None.

    Checks: stamp not older than the previous processed frame (:func:`check_stamp_order`), then
    the frame's content (:func:`check_frame_content`).
    """
    check_stamp_order(frame.stamp_ns, last_stamp_ns)
    return check_frame_content(frame)


def check_stamp_order(stamp_ns: int, last_stamp_ns: int | None) -> None:
    """Raise :class:`FrameError` when ``stamp_ns`` is older than the previous processed frame's."""
    if last_stamp_ns is not None and stamp_ns < last_stamp_ns:
        raise FrameError(f"image stamp went backwards: {stamp_ns / 1e9:.3f} s after "
                         f"{last_stamp_ns / 1e9:.3f} s (call the reset service after a bag loop)")


def check_frame_content(frame: Frame) -> np.ndarray | None:
    """Raise :class:`FrameError` naming the problem; return the cleaned depth (NaN -> 0) or None.

    Checks: image shape/dtype, camera_info size equal to the image size, finite positive focal
    lengths, principal point inside the image, depth size equal to the image size, and at least
    one valid depth pixel (an all-NaN depth image is a sensor failure).
    """
    img = frame.image
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise FrameError(f"image must be [H,W,3] uint8 RGB, got shape {img.shape} dtype {img.dtype}")
    H, W = img.shape[:2]
    if frame.info_size is not None and tuple(frame.info_size) != (W, H):
        raise FrameError(f"camera_info size {frame.info_size[0]}x{frame.info_size[1]} does not match "
                         f"image size {W}x{H}")
    K = np.asarray(frame.K, dtype=np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise FrameError(f"camera_info K is not a valid intrinsics matrix: {K.ravel().tolist()}")
    if not (0 <= K[0, 2] <= W and 0 <= K[1, 2] <= H):
        raise FrameError(f"camera_info principal point ({K[0, 2]:.1f}, {K[1, 2]:.1f}) lies outside "
                         f"the {W}x{H} image")
    if frame.depth is None:
        return None
    depth = np.asarray(frame.depth, dtype=np.float32)
    if depth.shape != (H, W):
        raise FrameError(f"depth size {depth.shape[1]}x{depth.shape[0]} does not match image size {W}x{H}")
    finite = np.isfinite(depth)
    if not np.any(finite & (depth > 0)):
        n_nan = int(np.count_nonzero(np.isnan(depth)))
        raise FrameError(f"depth image has no valid pixel ({n_nan} of {depth.size} are NaN, the rest "
                         f"<= 0 or inf)")
    return np.where(finite & (depth > 0), depth, np.float32(0.0))
