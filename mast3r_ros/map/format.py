"""On-disk format of a keyframe map (version 1): types, SQLite schema, ``map.yaml`` metadata,
keyframe validation/encoding and sha256-verified reads. The transactional store that uses them
is :mod:`mast3r_ros.map.store`; the array names are in :mod:`mast3r_ros.map.keys`.

Conventions: ``T_map_cam`` is [4,4] float64 camera-to-map, camera = OpenCV optical frame (x right,
y down, z forward), metres; ``K`` is [3,3] float64 pixels, pixel-centre convention.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from mast3r_ros.geometry.transforms import rigid_problem
from mast3r_ros.map.keys import RESERVED_NAMES

FORMAT_VERSION = 1
MAP_YAML, MAP_SQLITE, LOCK_FILE = "map.yaml", "map.sqlite", "map.lock"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
SCHEMA = """
CREATE TABLE keyframes (id INTEGER PRIMARY KEY, frame_index INTEGER NOT NULL, timestamp REAL NOT NULL,
    T_map_cam BLOB NOT NULL, K BLOB NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL);
CREATE TABLE arrays (kf_id INTEGER NOT NULL REFERENCES keyframes(id), name TEXT NOT NULL,
    file TEXT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (kf_id, name));
CREATE TABLE globals (name TEXT PRIMARY KEY, file TEXT NOT NULL, sha256 TEXT NOT NULL);
"""


class MapError(ValueError):
    """The map directory is missing, corrupt, of another format version or another checkpoint."""


@dataclass
class Keyframe:
    """One keyframe. Arrays: image [H,W,3] uint8 RGB; K [3,3] float64 pixels; T_map_cam [4,4]
    float64 camera-to-map (OpenCV optical frame, metres); depth [H,W] float32 metres (0 = invalid);
    ``arrays``: front-end data by name (any non-object dtype), e.g. features, encodings."""

    id: int | None
    frame_index: int
    timestamp: float
    image: np.ndarray | None
    K: np.ndarray
    T_map_cam: np.ndarray
    depth: np.ndarray | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class MapMeta:
    """Map-level metadata stored in ``map.yaml``. ``image_size`` is (W, H) of keyframe images."""

    frontend: str
    checkpoint_sha256: str | None = None
    image_size: tuple[int, int] | None = None
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)


def check_name(name: str) -> str:
    """Array names become file names: allow only a safe character set."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.endswith(".tmp"):
        raise MapError(f"invalid array name {name!r}: use letters, digits, '_', '-', '.' (max 100 chars)")
    return name


def npy_bytes(arr: np.ndarray, what: str) -> bytes:
    """.npy bytes of an array (no pickling: object arrays are refused)."""
    arr = np.asarray(arr)
    if arr.dtype == object:
        raise MapError(f"{what}: object arrays cannot be stored")
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def meta_to_yaml(meta: MapMeta) -> dict:
    """The ``map.yaml`` document of a map (adds units, frame conventions, creation time)."""
    return {
        "format_version": int(meta.format_version), "units": "m",
        "frames": {"pose": "T_map_cam: camera-to-map 4x4",
                   "camera": "OpenCV optical (x right, y down, z forward)",
                   "pixels": "pixel-centre convention (integer u,v = pixel centre)"},
        "frontend": meta.frontend, "checkpoint_sha256": meta.checkpoint_sha256,
        "image_size": list(meta.image_size) if meta.image_size else None,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "extra": dict(meta.extra),
    }


def read_meta(path: Path) -> tuple[MapMeta, dict]:
    """Parse and check ``<path>/map.yaml`` -> (MapMeta, raw document); MapError naming the problem."""
    ypath = path / MAP_YAML
    if not ypath.exists():
        raise MapError(f"{path} is not a map: missing {ypath}")
    try:
        doc = yaml.safe_load(ypath.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MapError(f"cannot parse {ypath}: {exc}") from None
    if not isinstance(doc, dict) or "format_version" not in doc or "frontend" not in doc:
        raise MapError(f"{ypath} lacks 'format_version'/'frontend'; not a map or corrupt")
    if doc["format_version"] != FORMAT_VERSION:
        raise MapError(f"{ypath}: map format version {doc['format_version']!r}, this code reads "
                       f"version {FORMAT_VERSION}; rebuild the map")
    size, sha, extra = doc.get("image_size"), doc.get("checkpoint_sha256"), doc.get("extra") or {}
    if size is not None and not (isinstance(size, list) and len(size) == 2
                                 and all(type(v) is int and 0 < v <= 1 << 16 for v in size)):
        raise MapError(f"{ypath}: image_size must be [width, height] in pixels, got {size!r}")
    if not isinstance(doc["frontend"], str) or not (sha is None or isinstance(sha, str)):
        raise MapError(f"{ypath}: 'frontend' and 'checkpoint_sha256' must be strings")
    if not isinstance(extra, dict):
        raise MapError(f"{ypath}: 'extra' must be a mapping, got {type(extra).__name__}")
    meta = MapMeta(frontend=doc["frontend"], checkpoint_sha256=sha,
                   image_size=tuple(size) if size else None, format_version=FORMAT_VERSION, extra=dict(extra))
    return meta, doc


def validate_keyframe(kf: Keyframe, image_size: tuple[int, int] | None) -> tuple[int, int]:
    """Check a keyframe's arrays (shapes, dtypes, names) before anything is written -> (W, H)."""
    img = kf.image
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise MapError(f"keyframe {kf.frame_index}: image must be [H,W,3] uint8 RGB, got "
                       f"{getattr(img, 'shape', None)} {getattr(img, 'dtype', type(img).__name__)}")
    h, w = img.shape[:2]
    if image_size is not None and tuple(image_size) != (w, h):
        raise MapError(f"keyframe {kf.frame_index}: image is {w}x{h}, map image_size is "
                       f"{image_size[0]}x{image_size[1]}")
    for what, arr, shape in (("K", kf.K, (3, 3)), ("T_map_cam", kf.T_map_cam, (4, 4))):
        a = np.asarray(arr, dtype=np.float64)
        if a.shape != shape or not np.all(np.isfinite(a)):
            raise MapError(f"keyframe {kf.frame_index}: {what} must be a finite {shape} matrix")
    why = rigid_problem(kf.T_map_cam)
    if why:
        raise MapError(f"keyframe {kf.frame_index}: T_map_cam {why}")
    if kf.depth is not None and np.shape(kf.depth) != (h, w):
        raise MapError(f"keyframe {kf.frame_index}: depth shape {np.shape(kf.depth)} != image {(h, w)}")
    for name in kf.arrays:
        if name in RESERVED_NAMES:
            raise MapError(f"keyframe {kf.frame_index}: array name {name!r} is reserved")
        check_name(name)
    return w, h

def encode_keyframe(kf: Keyframe) -> list[tuple[str, str, bytes]]:
    """Serialise a keyframe's files in memory -> [(name, suffix, bytes)], so that encoding errors
    happen before any file is written."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(kf.image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise MapError(f"keyframe {kf.frame_index}: PNG encoding failed")
    out = [("image", ".png", png.tobytes())]
    if kf.depth is not None:
        out.append(("depth", ".npy", npy_bytes(np.asarray(kf.depth, dtype=np.float32), "depth")))
    out += [(name, ".npy", npy_bytes(arr, f"keyframe {kf.frame_index} array {name!r}"))
            for name, arr in kf.arrays.items()]
    return out


def blob_matrix(blob: object, n: int, what: str) -> np.ndarray:
    """[n,n] float64 matrix from a SQLite blob; MapError when the blob has the wrong size."""
    if not isinstance(blob, bytes) or len(blob) != 8 * n * n:
        raise MapError(f"{what}: expected {8 * n * n} bytes of float64, got "
                       f"{len(blob) if isinstance(blob, bytes) else type(blob).__name__}; the database is damaged")
    return np.frombuffer(blob, np.float64).reshape(n, n).copy()


def read_verified(path: Path, sha: str) -> bytes:
    """A map file's bytes, after checking them against the sha256 recorded in the database."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MapError(f"map file {path} is missing or unreadable: {exc}") from None
    if hashlib.sha256(data).hexdigest() != sha:
        raise MapError(f"map file {path} is corrupt: sha256 does not match the one recorded in {MAP_SQLITE}")
    return data

def load_npy(path: Path, sha: str) -> np.ndarray:
    """A sha256-verified .npy array (never unpickles)."""
    try:
        return np.load(io.BytesIO(read_verified(path, sha)), allow_pickle=False)
    except ValueError as exc:
        raise MapError(f"map file {path} is not a valid .npy array: {exc}") from None
