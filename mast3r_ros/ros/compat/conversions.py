"""sensor_msgs images and camera info <-> numpy, without cv_bridge.

Reading is duck-typed on ROS field names, so rclpy messages and rosbags dataclasses both work;
writing builds rclpy messages. Poses, TF, paths and point clouds are in
:mod:`mast3r_ros.ros.compat.conversions_geometry`.

Arrays at this boundary:

* colour: [H,W,3] uint8 RGB (``image_to_rgb``), whatever the wire encoding was;
* depth: [H,W] float32 metres, 0.0 = no measurement (``image_to_depth_m``). REP 118 allows NaN
  (no return) and +-Inf (out of range) in 32FC1 depth; they become 0.0, as in our dataset readers;
* pixel data in the message's own layout: [H,W] or [H,W,C] of the encoding's dtype
  (``image_to_numpy``).

Every malformed message raises :class:`ConversionError` naming what is wrong (encoding, step,
size, distortion model), so a node can report it and go on with the next frame.
"""
from __future__ import annotations

import array
from dataclasses import dataclass

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

# encoding -> (dtype, channels), for the encodings we read and write.
ENCODINGS = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("16UC1", "32FC1")      # millimetres, metres
DISTORTION_MODELS = ("plumb_bob", "rational_polynomial")  # OpenCV coefficient order


class ConversionError(ValueError):
    """A message cannot be converted; the text names the field and the problem."""


# ---------------------------------------------------------------- stamps and headers


def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    """Integer nanoseconds (>= 0) -> builtin_interfaces/Time."""
    ns = int(ns)
    if ns < 0:
        raise ConversionError(f"stamp {ns} ns is negative")
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def make_header(stamp_ns: int, frame_id: str) -> Header:
    return Header(stamp=ns_to_stamp(stamp_ns), frame_id=str(frame_id))


# ---------------------------------------------------------------- raw images


def payload_bytes(data) -> np.ndarray:
    """A message's uint8[] payload (bytes, array.array, numpy, list) as a flat uint8 array, without
    copying where possible."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def image_to_numpy(msg) -> np.ndarray:
    """sensor_msgs/Image -> [H,W] or [H,W,C] array of the encoding's dtype, channel order as sent.

    Checks encoding, size, step (row padding is allowed and dropped) and the byte count. The
    result is a new array (never a view of the message buffer).
    """
    enc = str(msg.encoding)
    if enc not in ENCODINGS:
        raise ConversionError(f"unsupported image encoding {enc!r}; expected one of {sorted(ENCODINGS)}")
    dtype, channels = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ConversionError(f"image size {w}x{h} ({enc}) is empty")
    row_bytes = w * channels * dtype.itemsize
    if step < row_bytes:
        raise ConversionError(f"image step {step} < width {w} x {channels * dtype.itemsize} bytes per "
                              f"pixel = {row_bytes} ({enc})")
    data = payload_bytes(msg.data)
    if data.size != step * h:
        raise ConversionError(f"image data has {data.size} bytes, expected step {step} x height {h} = "
                              f"{step * h} ({enc} {w}x{h})")
    rows = data.reshape(h, step)[:, :row_bytes]
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    px = np.ascontiguousarray(rows).view(wire).astype(dtype, copy=True)
    return px.reshape(h, w, channels) if channels > 1 else px.reshape(h, w)


def numpy_to_image(pixels: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """[H,W] or [H,W,C] array already in ``encoding``'s layout -> sensor_msgs/Image (little endian,
    no row padding)."""
    if encoding not in ENCODINGS:
        raise ConversionError(f"unsupported image encoding {encoding!r}; expected one of {sorted(ENCODINGS)}")
    dtype, channels = ENCODINGS[encoding]
    px = np.asarray(pixels)
    fits = px.ndim == 2 if channels == 1 else (px.ndim == 3 and px.shape[2] == channels)
    if not fits:
        raise ConversionError(f"array of shape {px.shape} does not fit encoding {encoding!r} "
                              f"({channels} channel(s))")
    if px.dtype != dtype:
        raise ConversionError(f"array dtype {px.dtype} does not fit encoding {encoding!r} ({dtype})")
    h, w = px.shape[:2]
    msg = Image(header=header or Header(), height=h, width=w, encoding=encoding, is_bigendian=0,
                step=w * channels * dtype.itemsize)
    msg.data = np.ascontiguousarray(px, dtype=dtype.newbyteorder("<")).tobytes()
    return msg


# ---------------------------------------------------------------- colour and depth


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> [H,W,3] uint8 RGB."""
    if str(msg.encoding) not in COLOR_ENCODINGS:
        raise ConversionError(f"colour image has encoding {msg.encoding!r}; expected one of "
                              f"{list(COLOR_ENCODINGS)}")
    px = image_to_numpy(msg)
    enc = str(msg.encoding)
    if enc == "mono8":
        return np.repeat(px[:, :, None], 3, axis=2)
    if enc.startswith("bgr"):
        return np.ascontiguousarray(px[:, :, 2::-1])
    return np.ascontiguousarray(px[:, :, :3])


def rgb_to_image(rgb: np.ndarray, encoding: str = "rgb8", header: Header | None = None) -> Image:
    """[H,W,3] uint8 RGB -> sensor_msgs/Image in ``encoding`` (rgb8, bgr8 or mono8)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ConversionError(f"expected [H,W,3] uint8 RGB, got shape {rgb.shape} dtype {rgb.dtype}")
    if encoding == "rgb8":
        px = rgb
    elif encoding == "bgr8":
        px = rgb[:, :, ::-1]
    elif encoding == "mono8":
        px = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    else:
        raise ConversionError(f"cannot write colour as {encoding!r}; expected rgb8, bgr8 or mono8")
    return numpy_to_image(px, encoding, header)


def image_to_depth_m(msg) -> np.ndarray:
    """Depth image (16UC1 millimetres, 32FC1 metres) -> [H,W] float32 metres, 0.0 = no measurement
    (raw 0, NaN, +-Inf and negative values)."""
    enc = str(msg.encoding)
    if enc not in DEPTH_ENCODINGS:
        raise ConversionError(f"depth image has encoding {enc!r}; expected 16UC1 (mm) or 32FC1 (m)")
    raw = image_to_numpy(msg)
    if enc == "16UC1":
        return raw.astype(np.float32) * np.float32(1e-3)
    depth = raw.astype(np.float32, copy=True)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def depth_m_to_image(depth_m: np.ndarray, encoding: str = "16UC1", header: Header | None = None) -> Image:
    """[H,W] float metres (0 or non-finite = no measurement) -> 16UC1 (rounded mm, 0 = none;
    beyond 65.535 m is refused) or 32FC1 (metres, NaN = none, as REP 118)."""
    d = np.asarray(depth_m, dtype=np.float64)
    if d.ndim != 2:
        raise ConversionError(f"expected [H,W] depth in metres, got shape {d.shape}")
    invalid = ~np.isfinite(d) | (d <= 0)
    if encoding == "16UC1":
        mm = np.where(invalid, 0.0, np.rint(d * 1000.0))
        if mm.max(initial=0.0) > 65535:
            raise ConversionError(f"depth {d[~invalid].max():.3f} m does not fit 16UC1 millimetres")
        return numpy_to_image(mm.astype(np.uint16), encoding, header)
    if encoding == "32FC1":
        return numpy_to_image(np.where(invalid, np.nan, d).astype(np.float32), encoding, header)
    raise ConversionError(f"cannot write depth as {encoding!r}; expected 16UC1 or 32FC1")


# ---------------------------------------------------------------- compressed images


def compressed_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png, colour or grey) -> [H,W,3] uint8 RGB."""
    fmt = str(msg.format).lower()
    if "jpeg" not in fmt and "jpg" not in fmt and "png" not in fmt:
        raise ConversionError(f"compressed image format {msg.format!r} is not jpeg or png")
    data = payload_bytes(msg.data)
    if data.size == 0:
        raise ConversionError("compressed image has no data")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)  # 8-bit BGR whatever the source
    if img is None:
        raise ConversionError(f"compressed image ({msg.format!r}, {data.size} bytes) cannot be decoded")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def rgb_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", header: Header | None = None,
                      jpeg_quality: int = 95) -> CompressedImage:
    """[H,W,3] uint8 RGB -> sensor_msgs/CompressedImage (``format`` 'jpeg' or 'png', as
    image_transport's compressed plugin names them: 'rgb8; jpeg compressed bgr8')."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ConversionError(f"expected [H,W,3] uint8 RGB, got shape {rgb.shape} dtype {rgb.dtype}")
    if fmt not in ("jpeg", "png"):
        raise ConversionError(f"compression {fmt!r} not supported; expected jpeg or png")
    ext, params = (".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]) if fmt == "jpeg" else (".png", [])
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:
        raise ConversionError(f"{fmt} encoding failed for an image of shape {rgb.shape}")
    msg = CompressedImage(header=header or Header(), format=f"rgb8; {fmt} compressed bgr8")
    msg.data = buf.tobytes()
    return msg


# ---------------------------------------------------------------- camera info


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of one camera as our core uses them.

    K: [3,3] float64 pixels, pixel-centre convention (integer (u, v) is a pixel centre).
    dist: [N] float64 OpenCV distortion coefficients (k1, k2, p1, p2, k3[, k4, k5, k6]) or None
        when the image is already rectified / has no distortion.
    width, height: image size in pixels the intrinsics belong to.
    """

    K: np.ndarray
    dist: np.ndarray | None
    width: int
    height: int

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def camera_info_to_intrinsics(msg) -> CameraIntrinsics:
    """sensor_msgs/CameraInfo -> CameraIntrinsics; refuses an unusable K, size or distortion model.

    Binning and ROI are not supported (both must be unset), as in most drivers' output.
    """
    K = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    if K.size != 9:
        raise ConversionError(f"camera_info K has {K.size} values, expected 9")
    K = K.reshape(3, 3)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] != 1.0:
        raise ConversionError(f"camera_info K is not a calibrated pinhole matrix (fx, fy > 0, K[2,2] = 1): "
                              f"{K.reshape(-1).tolist()}")
    w, h = int(msg.width), int(msg.height)
    if w <= 0 or h <= 0:
        raise ConversionError(f"camera_info size {w}x{h} is empty")
    if int(msg.binning_x) > 1 or int(msg.binning_y) > 1 or int(msg.roi.width) or int(msg.roi.height):
        raise ConversionError("camera_info with binning or a region of interest is not supported")
    d = np.asarray(msg.d, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(d)):
        raise ConversionError("camera_info D has non-finite coefficients")
    if not d.size or not np.any(d):
        return CameraIntrinsics(K, None, w, h)
    model = str(msg.distortion_model)
    if model not in DISTORTION_MODELS:
        raise ConversionError(f"camera_info distortion model {model!r} not supported; expected one of "
                              f"{list(DISTORTION_MODELS)} (or all-zero D)")
    return CameraIntrinsics(K, d, w, h)


def intrinsics_to_camera_info(intr: CameraIntrinsics, header: Header | None = None) -> CameraInfo:
    """CameraIntrinsics -> sensor_msgs/CameraInfo (R = identity, P = [K | 0], monocular)."""
    K = np.asarray(intr.K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ConversionError(f"K must be [3,3], got {K.shape}")
    d = np.zeros(0) if intr.dist is None else np.asarray(intr.dist, dtype=np.float64).reshape(-1)
    if d.size not in (0, 5, 8):
        raise ConversionError(f"{d.size} distortion coefficients; expected 5 (plumb_bob) or 8 (rational)")
    P = np.zeros((3, 4))
    P[:, :3] = K
    return CameraInfo(
        header=header or Header(), width=int(intr.width), height=int(intr.height),
        distortion_model="rational_polynomial" if d.size == 8 else "plumb_bob",
        d=[float(v) for v in (d if d.size else np.zeros(5))],
        k=[float(v) for v in K.reshape(-1)], r=[float(v) for v in np.eye(3).reshape(-1)],
        p=[float(v) for v in P.reshape(-1)])


def check_image_matches_camera_info(width: int, height: int, intr: CameraIntrinsics) -> None:
    """Raise ConversionError when an image of (width, height) is not the camera_info's size."""
    if (int(width), int(height)) != (intr.width, intr.height):
        raise ConversionError(f"image is {width}x{height} but camera_info is {intr.width}x{intr.height}")
