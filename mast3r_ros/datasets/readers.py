"""Readers for RGB-D sequences with ground-truth poses (7-Scenes layout, TUM RGB-D layout).

Conventions shared by every reader (they are what the localization core and evaluation assume):

* ``K`` is the [3,3] float64 pinhole intrinsics of the RGB image in pixels, pixel-centre
  convention: integer pixel (u, v) is the centre of that pixel, so a point at camera
  coordinates (X, Y, Z) projects to ``u = fx X/Z + cx``, ``v = fy Y/Z + cy``.
* ``Frame.T_world_cam`` is the [4,4] float64 camera-to-world transform (``X_w = T @ X_c``),
  camera frame = OpenCV optical frame (x right, y down, z forward), metres.
* Depth is returned as [H,W] float32 metres, with 0.0 meaning "invalid" (raw 0, raw 65535
  and NaN are all mapped to 0).
* A frame spec ``START:STOP[:STEP]`` selects the frames with START <= index < STOP and
  (index - START) % STEP == 0; indices absent on disk are skipped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mast3r_ros.datasets.image_files import open_image
from mast3r_ros.datasets.tum import tum_to_T
from mast3r_ros.geometry.transforms import rigid_problem

INTRINSICS_FILE = "camera-intrinsics.txt"
_SEVEN_SCENES_COLOR = re.compile(r"^frame-(\d+)\.color\.(jpg|jpeg|png)$")
TUM_DEFAULT_K = np.array([[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]])


class DatasetError(ValueError):
    """A dataset folder or file is missing, unreadable or malformed (message names the file)."""


@dataclass(frozen=True)
class FrameSpec:
    """Half-open, strided range of frame indices: START <= i < STOP, (i - START) % STEP == 0."""

    start: int
    stop: int
    step: int = 1

    def __post_init__(self) -> None:
        if self.start < 0:
            raise ValueError(f"frame spec start must be >= 0, got {self.start}")
        if self.stop <= self.start:
            raise ValueError(f"frame spec stop ({self.stop}) must be greater than start ({self.start})")
        if self.step < 1:
            raise ValueError(f"frame spec step must be >= 1, got {self.step}")

    def contains(self, i: int) -> bool:
        return self.start <= i < self.stop and (i - self.start) % self.step == 0

    def __str__(self) -> str:
        return f"{self.start}:{self.stop}:{self.step}"


def parse_frame_spec(spec: str) -> FrameSpec:
    """Parse ``"START:STOP[:STEP]"`` (e.g. ``"0:600:6"``) into a :class:`FrameSpec`."""
    if not isinstance(spec, str):
        raise ValueError(f"frame spec must be a string 'START:STOP[:STEP]', got {type(spec).__name__}")
    parts = spec.strip().split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"frame spec {spec!r} must look like 'START:STOP' or 'START:STOP:STEP'")
    names = ("START", "STOP", "STEP")
    values = []
    for name, part in zip(names, parts):
        try:
            values.append(int(part))
        except ValueError:
            raise ValueError(f"frame spec {spec!r}: {name} {part!r} is not an integer") from None
    try:
        return FrameSpec(*values)
    except ValueError as exc:
        raise ValueError(f"frame spec {spec!r}: {exc}") from None


def _as_spec(spec: FrameSpec | str | None) -> FrameSpec | None:
    if spec is None or isinstance(spec, FrameSpec):
        return spec
    return parse_frame_spec(spec)


@dataclass
class Frame:
    """One RGB-D frame of a sequence (paths only; pixels are loaded by the dataset on demand)."""

    index: int                       # frame index in the sequence
    timestamp: float                 # seconds; the frame index when the dataset has no timestamps
    rgb_path: Path
    depth_path: Path | None
    T_world_cam: np.ndarray | None   # [4,4] float64 camera-to-world, OpenCV optical frame, metres


def _read_matrix(path: Path, n: int, what: str) -> np.ndarray:
    """A whitespace-separated n x n text matrix -> [n,n] float64; DatasetError naming the ``what`` file."""
    try:
        M = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {what} file {path}: {exc}") from None
    if M.shape != (n, n):
        raise DatasetError(f"{what} file {path} must hold a {n}x{n} matrix, got shape {M.shape}")
    return M


def read_intrinsics(path: Path) -> np.ndarray:
    """Read a whitespace-separated 3x3 K file -> [3,3] float64 pixels; DatasetError if malformed."""
    K = _read_matrix(path, 3, "intrinsics")
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise DatasetError(f"intrinsics file {path} has non-finite or non-positive focal lengths")
    return K


def _check_K(K, source: str) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise DatasetError(f"{source}: K must be 3x3, got shape {K.shape}")
    return K


def read_pose_matrix(path: Path) -> np.ndarray | None:
    """Read a 4x4 camera-to-world text matrix; None when it holds non-finite values (no GT)."""
    T = _read_matrix(path, 4, "pose")
    if not np.all(np.isfinite(T)):
        return None
    why = rigid_problem(T)
    if why:
        raise DatasetError(f"pose file {path} {why}; poses must be rigid camera-to-world transforms")
    return T


class RgbdDataset:
    """Base class: an indexed RGB-D sequence with intrinsics and (optionally) GT poses.

    Subclasses fill ``root``, ``K``, ``image_size``, ``depth_scale`` (raw units per metre) and
    implement :meth:`_frame_index_map` and :meth:`_make_frame`.
    """

    root: Path
    K: np.ndarray                 # [3,3] float64 RGB intrinsics, pixels, pixel-centre convention
    image_size: tuple[int, int]   # (W, H)
    depth_scale: float            # raw depth units per metre

    def _frame_indices(self) -> list[int]:
        raise NotImplementedError

    def _make_frame(self, index: int) -> Frame:
        raise NotImplementedError

    def frames(self, spec: FrameSpec | str | None = None) -> list[Frame]:
        """Frames selected by ``spec`` (all when None), in increasing index order."""
        fspec = _as_spec(spec)
        return [self._make_frame(i) for i in self._frame_indices() if fspec is None or fspec.contains(i)]

    def __len__(self) -> int:
        return len(self._frame_indices())

    def load_rgb(self, frame: Frame) -> np.ndarray:
        """[H,W,3] uint8 RGB image of ``frame`` (16-bit files scaled to 8 bits)."""
        _image_size(frame.rgb_path, "colour image")  # the pixel count is bounded before decoding
        bgr = cv2.imread(str(frame.rgb_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"cannot read colour image {frame.rgb_path}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def load_depth(self, frame: Frame) -> np.ndarray | None:
        """[H,W] float32 depth in metres (0.0 = invalid), or None when the frame has no depth."""
        if frame.depth_path is None:
            return None
        _image_size(frame.depth_path, "depth image")
        raw = cv2.imread(str(frame.depth_path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise DatasetError(f"cannot read depth image {frame.depth_path}")
        if raw.ndim != 2:
            raise DatasetError(f"depth image {frame.depth_path} must be single-channel, "
                               f"got shape {raw.shape}")
        if raw.dtype == np.uint16:
            depth = raw.astype(np.float32) / np.float32(self.depth_scale)
            depth[raw == 65535] = 0.0
        elif raw.dtype == np.float32:  # already metres (some converted datasets)
            depth = raw.copy()
        else:
            raise DatasetError(f"depth image {frame.depth_path} has dtype {raw.dtype}, expected uint16")
        depth[~np.isfinite(depth)] = 0.0
        return depth


def _image_size(path: Path, what: str = "colour image") -> tuple[int, int]:
    try:
        with open_image(path, what) as im:  # reads the header only; the pixel count is bounded
            return im.size  # (W, H)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None


class SevenScenesDataset(RgbdDataset):
    """7-Scenes layout: ``camera-intrinsics.txt`` + ``frame-NNNNNN.{color.jpg|color.png,depth.png,
    pose.txt}`` directly in ``root`` or in ``root/data``. Depth uint16 millimetres; poses
    camera-to-world 4x4 metres; no timestamps (the frame index is used as timestamp).

    Args:
        root: dataset folder.
        K: optional [3,3] intrinsics overriding ``camera-intrinsics.txt``.
    """

    depth_scale = 1000.0

    def __init__(self, root: str | Path, K: np.ndarray | None = None):
        self.root = Path(root)
        self.data_dir = _seven_scenes_data_dir(self.root)
        if self.data_dir is None:
            raise DatasetError(f"{self.root}: no frame-NNNNNN.color.(jpg|png) files here "
                               f"or in {self.root}/data")
        self._color: dict[int, Path] = {}
        for p in self.data_dir.iterdir():
            m = _SEVEN_SCENES_COLOR.match(p.name)
            if m:
                self._color[int(m.group(1))] = p
        self._indices = sorted(self._color)
        if K is not None:
            self.K = _check_K(K, str(self.root))
        else:
            kfile = self.data_dir / INTRINSICS_FILE
            if not kfile.exists():
                raise DatasetError(f"{self.root}: missing {kfile} (3x3 intrinsics); pass K= to override")
            self.K = read_intrinsics(kfile)
        self.image_size = _image_size(self._color[self._indices[0]])

    def _frame_indices(self) -> list[int]:
        return self._indices

    def _make_frame(self, index: int) -> Frame:
        stem = self.data_dir / f"frame-{index:06d}"
        depth = stem.with_name(stem.name + ".depth.png")
        pose = stem.with_name(stem.name + ".pose.txt")
        T = read_pose_matrix(pose) if pose.exists() else None
        return Frame(index=index, timestamp=float(index), rgb_path=self._color[index],
                     depth_path=depth if depth.exists() else None, T_world_cam=T)


def _seven_scenes_data_dir(root: Path) -> Path | None:
    for d in (root, root / "data"):
        if d.is_dir() and any(_SEVEN_SCENES_COLOR.match(p.name) for p in d.iterdir()):
            return d
    return None


def _read_tum_list(path: Path, n_values: int) -> list[tuple[float, list[str]]]:
    """Parse a TUM list file (``timestamp value...``) -> [(timestamp, [values])]."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    for lineno, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != n_values + 1:
            raise DatasetError(f"{path}:{lineno}: expected {n_values + 1} fields, got {len(parts)}")
        try:
            rows.append((float(parts[0]), parts[1:]))
        except ValueError:
            raise DatasetError(f"{path}:{lineno}: timestamp {parts[0]!r} is not a number") from None
    return rows


def _nearest(query: np.ndarray, stamps: np.ndarray, max_dt: float) -> np.ndarray:
    """For each query time, the index of the nearest stamp (sorted) within max_dt, else -1."""
    if stamps.size == 0:
        return np.full(query.shape, -1, dtype=np.int64)
    pos = np.clip(np.searchsorted(stamps, query), 1, max(stamps.size - 1, 1))
    left = np.clip(pos - 1, 0, stamps.size - 1)
    right = np.clip(pos, 0, stamps.size - 1)
    best = np.where(np.abs(stamps[left] - query) <= np.abs(stamps[right] - query), left, right)
    return np.where(np.abs(stamps[best] - query) <= max_dt, best, -1)


class TumRgbdDataset(RgbdDataset):
    """TUM RGB-D layout: ``rgb.txt``, ``depth.txt`` (``timestamp path``), optional
    ``groundtruth.txt`` (``timestamp tx ty tz qx qy qz qw``, camera-to-world of the colour
    camera's optical frame). Depth uint16, 5000 units per metre. Depth and GT are associated to
    each RGB frame by nearest timestamp within ``max_dt`` seconds (frames with no match get
    ``depth_path=None`` / ``T_world_cam=None``). Frame index = line order in ``rgb.txt``.

    Intrinsics: the ``K`` argument, else ``camera-intrinsics.txt`` in ``root``, else the TUM
    default fx = fy = 525, cx = 319.5, cy = 239.5 (the fr1/fr2/fr3 calibrated values are not
    known here; pass K for accurate results).
    """

    depth_scale = 5000.0

    def __init__(self, root: str | Path, K: np.ndarray | None = None, max_dt: float = 0.02):
        self.root = Path(root)
        rgb_txt = self.root / "rgb.txt"
        if not rgb_txt.exists():
            raise DatasetError(f"{self.root}: missing rgb.txt (TUM RGB-D layout)")
        rgb = _read_tum_list(rgb_txt, 1)
        if not rgb:
            raise DatasetError(f"{rgb_txt} lists no images")
        depth_txt, gt_txt = self.root / "depth.txt", self.root / "groundtruth.txt"
        depth = _read_tum_list(depth_txt, 1) if depth_txt.exists() else []
        gt = _read_tum_list(gt_txt, 7) if gt_txt.exists() else []
        t_rgb = np.array([r[0] for r in rgb])
        d_order = sorted(range(len(depth)), key=lambda k: depth[k][0])
        g_order = sorted(range(len(gt)), key=lambda k: gt[k][0])
        d_idx = _nearest(t_rgb, np.array([depth[k][0] for k in d_order]), max_dt)
        g_idx = _nearest(t_rgb, np.array([gt[k][0] for k in g_order]), max_dt)
        self._frames: list[Frame] = []
        for i, (t, (rel,)) in enumerate(rgb):
            dpath = self.root / depth[d_order[d_idx[i]]][1][0] if d_idx[i] >= 0 else None
            T = None
            if g_idx[i] >= 0:
                vals = gt[g_order[g_idx[i]]][1]
                try:
                    T = tum_to_T([float(v) for v in vals])
                except ValueError as exc:
                    raise DatasetError(f"{gt_txt}: bad pose at t={gt[g_order[g_idx[i]]][0]}: {exc}") from None
            self._frames.append(Frame(index=i, timestamp=t, rgb_path=self.root / rel,
                                      depth_path=dpath, T_world_cam=T))
        if K is not None:
            self.K = _check_K(K, str(self.root))
        elif (self.root / INTRINSICS_FILE).exists():
            self.K = read_intrinsics(self.root / INTRINSICS_FILE)
        else:
            self.K = TUM_DEFAULT_K.copy()
        self.image_size = _image_size(self._frames[0].rgb_path)

    def _frame_indices(self) -> list[int]:
        return list(range(len(self._frames)))

    def _make_frame(self, index: int) -> Frame:
        f = self._frames[index]
        T = None if f.T_world_cam is None else f.T_world_cam.copy()
        return Frame(f.index, f.timestamp, f.rgb_path, f.depth_path, T)


def open_dataset(path: str | Path, **kw) -> RgbdDataset:
    """Open an RGB-D dataset folder, detecting its layout.

    ``rgb.txt`` -> :class:`TumRgbdDataset`; ``frame-NNNNNN.color.*`` (directly or in ``data/``)
    -> :class:`SevenScenesDataset`. Keyword arguments go to the reader (e.g. ``K=``).
    """
    root = Path(path)
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"dataset path {root} is not a folder")
    if (root / "rgb.txt").exists():
        return TumRgbdDataset(root, **kw)
    if _seven_scenes_data_dir(root) is not None:
        return SevenScenesDataset(root, **kw)
    raise DatasetError(
        f"{root}: unrecognised dataset layout; expected rgb.txt (TUM RGB-D) or "
        f"frame-NNNNNN.color.(jpg|png) + {INTRINSICS_FILE} (7-Scenes), directly or in {root}/data")
