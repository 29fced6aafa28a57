"""An in-memory one-frame dataset, so a posed reference image becomes a map via ``build_map``.

Why: map-free localization (the ``set_reference`` service) reuses the whole keyframe-map path
(front-end arrays, retrieval index, localizer gates) with a map of exactly one keyframe.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mast3r_ros.datasets.readers import Frame, RgbdDataset


class SingleFrameDataset(RgbdDataset):
    """Frame index 0: ``image`` [H,W,3] uint8 RGB, ``K`` [3,3], ``depth`` [H,W] float32 m or None,
    ``T_world_cam`` [4,4] camera (optical) to map pose."""

    def __init__(self, image: np.ndarray, K: np.ndarray, depth: np.ndarray | None, T_world_cam: np.ndarray,
                 timestamp: float = 0.0):
        self.root = Path("<reference>")
        self.K = np.asarray(K, dtype=np.float64)
        self.image_size = (int(image.shape[1]), int(image.shape[0]))
        self.depth_scale = 1.0
        self._image, self._depth = image, depth
        self._frame = Frame(0, float(timestamp), Path("<reference image>"),
                            None if depth is None else Path("<reference depth>"),
                            np.asarray(T_world_cam, dtype=np.float64))

    def _frame_indices(self) -> list[int]:
        return [0]

    def _make_frame(self, index: int) -> Frame:
        return self._frame

    def load_rgb(self, frame: Frame) -> np.ndarray:
        return self._image

    def load_depth(self, frame: Frame) -> np.ndarray | None:
        return self._depth
