"""TUM trajectory format I/O: one pose per line, ``timestamp tx ty tz qx qy qz qw``.

The pose written on a line is whatever camera-to-reference transform the caller passes
(e.g. ``T_world_cam`` or ``T_map_cam``): translation in metres, unit quaternion in scalar-last
order (qx qy qz qw), as in the TUM RGB-D benchmark tools. Lines starting with ``#`` and blank
lines are ignored when reading.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from mast3r_ros.files.atomic_io import atomic_write_bytes

__all__ = ["T_to_tum_line", "tum_to_T", "read_tum", "write_tum"]


def T_to_tum_line(timestamp: float, T: np.ndarray) -> str:
    """Format one pose as a TUM line.

    Args:
        timestamp: seconds.
        T: [4,4] float homogeneous transform (camera-to-reference), metres.
    """
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"pose must be a 4x4 matrix, got shape {T.shape}")
    q = Rotation.from_matrix(T[:3, :3]).as_quat()  # x y z w
    t = T[:3, 3]
    vals = [timestamp, *t.tolist(), *q.tolist()]
    return " ".join(f"{v:.9f}" if i == 0 else f"{v:.9g}" for i, v in enumerate(vals))


def tum_to_T(values) -> np.ndarray:
    """Convert ``[tx ty tz qx qy qz qw]`` (7 numbers) to a [4,4] float64 transform (metres)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.shape != (7,):
        raise ValueError(f"TUM pose needs 7 numbers (tx ty tz qx qy qz qw), got {v.shape[0]}")
    q = v[3:]
    norm = np.linalg.norm(q)
    if not np.all(np.isfinite(v)) or not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"TUM pose has non-finite values or a degenerate quaternion {v.tolist()}")
    if abs(norm - 1.0) > 1e-2:  # files written with 9 digits are unit to ~1e-8; a scaled one is an error
        raise ValueError(f"TUM pose quaternion {q.tolist()} has norm {norm:.4g}, not 1")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(q / norm).as_matrix()
    T[:3, 3] = v[:3]
    return T


def read_tum(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a TUM trajectory file.

    Returns:
        timestamps: [N] float64 seconds, in file order.
        T: [N,4,4] float64 camera-to-reference transforms, metres.
    Raises:
        ValueError naming the file and line for malformed content; FileNotFoundError if absent.
    """
    path = Path(path)
    stamps: list[float] = []
    poses: list[np.ndarray] = []
    with open(path, "r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.replace(",", " ").split()
            if len(parts) != 8:
                raise ValueError(f"{path}:{lineno}: expected 8 numbers "
                                 f"'timestamp tx ty tz qx qy qz qw', got {len(parts)}")
            try:
                nums = [float(p) for p in parts]
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: not a number ({exc})") from None
            try:
                poses.append(tum_to_T(nums[1:]))
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None
            stamps.append(nums[0])
    T = np.stack(poses) if poses else np.zeros((0, 4, 4))
    return np.asarray(stamps, dtype=np.float64), T


def write_tum(path: str | Path, timestamps, T) -> Path:
    """Atomically write a TUM trajectory (temp file + fsync + rename).

    Args:
        timestamps: [N] seconds.
        T: [N,4,4] camera-to-reference transforms, metres.
    """
    path = Path(path)
    stamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 3 or T.shape[1:] != (4, 4) or T.shape[0] != stamps.shape[0]:
        raise ValueError(f"need [N] timestamps and [N,4,4] poses, got {stamps.shape} and {T.shape}")
    text = "# timestamp tx ty tz qx qy qz qw\n"
    text += "".join(T_to_tum_line(s, P) + "\n" for s, P in zip(stamps, T))
    atomic_write_bytes(path, text.encode("utf-8"))
    return path
