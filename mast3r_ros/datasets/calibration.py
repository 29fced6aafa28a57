"""RGB-D rig calibration: colour vs depth intrinsics, depth-to-colour extrinsics, pose frame.

Why: on Kinect v1 data such as 7-Scenes the depth image is not registered to the colour image
(different intrinsics, ~2.5 cm baseline) and the ground-truth poses describe the *depth*
camera. Sampling raw depth at colour pixels then biases the map (logged in ``benchmarks/README.md``).
With no calibration everything is the identity: depth is assumed registered to colour and
poses describe the colour camera.

YAML form (all keys optional)::

    K_rgb: [fx, fy, cx, cy]        # colour intrinsics (default: the dataset's K)
    K_depth: [fx, fy, cx, cy]      # depth intrinsics; presence means depth is NOT registered
    T_rgb_depth: [[...4x4...]]     # depth-camera -> colour-camera transform (metres)
    poses_frame: depth             # which camera the dataset poses describe: rgb | depth
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mast3r_ros.geometry.camera import check_intrinsics, register_depth
from mast3r_ros.geometry.transforms import invert

# Kinect v1 as recorded in Microsoft 7-Scenes: colour focal 525 (the DSAC*/ACE convention),
# depth focal 585 (7-Scenes page), depth->colour extrinsics of the LIRIS Kinect calibration (the
# values the pseudo-GT study of Brachmann et al., ICCV 2021, uses to register 7-Scenes depth);
# 7-Scenes poses are the depth camera's (KinectFusion).
PRESETS: dict[str, dict] = {
    "7scenes": {
        "K_rgb": [525.0, 525.0, 320.0, 240.0], "K_depth": [585.0, 585.0, 320.0, 240.0],
        "T_rgb_depth": [[0.99996518, 0.00267651, -0.00790410, -0.02555894],
                        [-0.00274093, 0.99996303, -0.00815045, 0.00010110],
                        [0.00788199, 0.00817183, 0.99993555, 0.00203183], [0.0, 0.0, 0.0, 1.0]],
        "poses_frame": "depth"},
}


def _K(v) -> np.ndarray | None:
    if v is None:
        return None
    a = np.asarray(v, dtype=np.float64)
    if a.shape == (4,):
        a = np.array([[a[0], 0, a[2]], [0, a[1], a[3]], [0, 0, 1.0]])
    return check_intrinsics(a)


@dataclass
class RgbdCalibration:
    """Colour/depth relation of an RGB-D sensor (see module doc).

    K_rgb: [3,3] colour intrinsics or None (= the dataset's K).
    K_depth: [3,3] depth intrinsics or None (= depth already registered to colour).
    T_rgb_depth: [4,4] depth-camera to colour-camera transform, metres.
    poses_frame: 'rgb' or 'depth': which camera the dataset's T_world_cam describes.
    """
    K_rgb: np.ndarray | None = None
    K_depth: np.ndarray | None = None
    T_rgb_depth: np.ndarray = field(default_factory=lambda: np.eye(4))
    poses_frame: str = "rgb"

    def __post_init__(self) -> None:
        self.K_rgb, self.K_depth = _K(self.K_rgb), _K(self.K_depth)
        self.T_rgb_depth = np.asarray(self.T_rgb_depth, dtype=np.float64).reshape(4, 4)
        if self.poses_frame not in ("rgb", "depth"):
            raise ValueError(f"poses_frame must be 'rgb' or 'depth', got {self.poses_frame!r}")

    @classmethod
    def load(cls, name_or_path: str | Path) -> "RgbdCalibration":
        """A preset by name (e.g. '7scenes') or a YAML file."""
        if str(name_or_path) in PRESETS:
            return cls.from_dict(PRESETS[str(name_or_path)])
        return cls.from_yaml(name_or_path)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "RgbdCalibration":
        import yaml

        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read RGB-D calibration {path}: {exc}") from None
        unknown = set(doc) - {"K_rgb", "K_depth", "T_rgb_depth", "poses_frame"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: dict | None) -> "RgbdCalibration":
        """Inverse of :meth:`to_dict` (None -> identity calibration)."""
        doc = doc or {}
        return cls(doc.get("K_rgb"), doc.get("K_depth"), doc.get("T_rgb_depth", np.eye(4)),
                   doc.get("poses_frame", "rgb"))

    def to_dict(self) -> dict:
        return {"K_rgb": None if self.K_rgb is None else self.K_rgb.tolist(),
                "K_depth": None if self.K_depth is None else self.K_depth.tolist(),
                "T_rgb_depth": self.T_rgb_depth.tolist(), "poses_frame": self.poses_frame}

    def colour_K(self, dataset_K: np.ndarray) -> np.ndarray:
        """[3,3] intrinsics of the colour images."""
        return self.K_rgb if self.K_rgb is not None else np.asarray(dataset_K, dtype=np.float64)

    def depth_in_colour(self, depth: np.ndarray | None, dataset_K: np.ndarray,
                        rgb_size: tuple[int, int]) -> np.ndarray | None:
        """Depth registered to the colour image ([H,W] float32 metres), unchanged if already so."""
        if depth is None or self.K_depth is None:
            return depth
        return register_depth(depth, self.K_depth, self.colour_K(dataset_K), self.T_rgb_depth, rgb_size)

    @property
    def T_pose_rgb(self) -> np.ndarray:
        """[4,4] colour camera expressed in the dataset-pose camera frame."""
        return invert(self.T_rgb_depth) if self.poses_frame == "depth" else np.eye(4)

    def colour_pose(self, T_world_posecam: np.ndarray) -> np.ndarray:
        """Dataset pose -> colour camera pose ``T_world_rgb``."""
        return np.asarray(T_world_posecam, dtype=np.float64) @ self.T_pose_rgb

    def dataset_pose(self, T_map_rgb: np.ndarray) -> np.ndarray:
        """Colour camera pose -> pose of the camera the dataset's poses describe."""
        return np.asarray(T_map_rgb, dtype=np.float64) @ invert(self.T_pose_rgb)
