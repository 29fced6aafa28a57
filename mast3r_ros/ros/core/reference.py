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


class MapFreeReference:
    """The ``set_reference`` service's reference: one posed image; every later query is solved against
    it by ``mast3r-ros relocalize``'s solver (:mod:`mast3r_ros.localization.mapfree`: PnP on the
    reference's metric pointmap, then essential matrix + metric scale, then Procrustes) with the node's
    front-end: MASt3R predicts the reference's pointmap, the classical (SIFT) one takes its depth.

    Args:
        frontend: the node's front-end (its model and configuration are used).
        image: [H,W,3] uint8 RGB; K: [3,3]; depth: [H,W] float32 m registered to ``image``, 0 = none
            (required by the classical front-end, unused by MASt3R).
        T_map_ref: [4,4] reference camera (optical) to map pose.
    Raises:
        ValueError: the front-end cannot use this reference (named).
    """

    def __init__(self, frontend, image: np.ndarray, K: np.ndarray, depth: np.ndarray | None,
                 T_map_ref: np.ndarray):
        self.frontend, self.image, self.K, self.depth = frontend, image, K, depth
        self.T_map_ref = np.asarray(T_map_ref, np.float64)
        self.state = "INIT"  # LocState value: TRACKING after an answered query, LOST after a refusal
        if frontend.name == "classical":
            if depth is None or not np.any(depth > 0):
                raise ValueError("the classical front-end needs the reference's depth (depth_path, or "
                                 "use_current_frame with subscribe_depth)")
        else:  # encoded once, now: an image the model cannot take (e.g. not the stand-in's) is named here
            from mast3r_ros.model import preprocess_array

            self._model = ReferenceEncoded(frontend.model, preprocess_array(image, frontend.config.image_size).tensor)

    def localize(self, image: np.ndarray, K: np.ndarray):
        """:class:`~mast3r_ros.localization.mapfree.MapFreeResult` of a query ([H,W,3] uint8 RGB, K [3,3])."""
        from mast3r_ros.localization.mapfree import MapFreeQuery, relocalize_classical, relocalize_mast3r

        query = MapFreeQuery(image, K)
        if self.frontend.name == "classical":
            res = relocalize_classical(self.image, self.K, self.depth, self.T_map_ref, query, self.frontend.config)
        else:
            res = relocalize_mast3r(self._model, self.image, self.K, self.T_map_ref, query, self.frontend.config)
        self.state = "TRACKING" if res.T_map_cam is not None else "LOST"
        return res


class ReferenceEncoded:
    """A MASt3R-interface model whose encoding of the reference image is computed once: ``encode`` of that
    very tensor returns it (each query then costs one encoder pass, not two); everything else is the
    model's.

    Args:
        model: the front-end's model (``encode``, ``infer``).
        reference: [1,3,H,W] the reference's network tensor (``preprocess_array``).
    """

    def __init__(self, model, reference):
        self.model, self._reference = model, reference
        self._encoding = model.encode(reference)

    def encode(self, images):
        if images.shape == self._reference.shape and bool((images == self._reference).all()):
            return self._encoding
        return self.model.encode(images)

    def infer(self, enc1, enc2, heads1=None, heads2=None):
        kw = {k: v for k, v in (("heads1", heads1), ("heads2", heads2)) if v is not None}
        return self.model.infer(enc1, enc2, **kw)
