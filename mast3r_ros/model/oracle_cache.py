"""Disk memo of the stand-in's per-dataset work, so that a node given ``oracle_dataset`` starts in about a
second after its first start instead of ~10 s (7-Scenes redkitchen, 334 frames, 2-core CPU).

Two things are kept, each in one ``.npz`` under ``cache_dir()/oracle`` (``mast3r_ros.paths``):

* a frame's **registration** (the content key of its network image and the hashes of its crop-index
  patches), named by the colour image file (real path, size, modification time) and the network size;
* the **retrieval anchors** of a dataset, named by everything they are computed from: the sampled frames'
  depth files and poses, the dataset's intrinsics and image size, the calibration and the network size.

Both names also hold a hash of the source files that compute them (and numpy's / faiss's versions), so an
edit of that code never serves an old result. A cached value is the computed value, byte for byte.
Files are written whole (``files.atomic_io.atomic_write_bytes``); a file that cannot be read or written is
recomputed or skipped: the cache never makes the stand-in fail.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from mast3r_ros.files.atomic_io import atomic_write_bytes
from mast3r_ros.paths import cache_dir

FORMAT = 1
# the code a cached value comes from (package-relative); an edit of any of them renames every entry
_SOURCES = ("model/oracle_scene.py", "model/oracle_crops.py", "model/oracle_cache.py", "model/preprocess.py",
            "datasets/readers.py", "datasets/calibration.py", "geometry/camera.py")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Hash of the computing code and library versions (see module doc)."""
    import faiss

    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(f"{FORMAT}:{np.__version__}:{getattr(faiss, '__version__', '?')}".encode())
    for rel in _SOURCES:
        h.update((root / rel).read_bytes())
    return h.hexdigest()[:16]


def file_id(path: Path | None) -> list | None:
    """[real path, size, mtime ns] of a file: a changed or replaced file gets a new id. None for no path or
    a file that cannot be read (the computation then raises the reader's own error; nothing is stored)."""
    if path is None:
        return None
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return [real, st.st_size, st.st_mtime_ns]


def entry_name(kind: str, parts) -> str:
    """``<kind>-<hash>`` of the JSON of ``parts`` and :func:`code_version`."""
    text = json.dumps([kind, code_version(), parts], sort_keys=True, default=_jsonable)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(x).tobytes() + str(x.dtype).encode()).hexdigest()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not a cache key part: {type(x).__name__}")


def memo(name: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays stored under ``name``, or ``compute()``'s (then stored). ``MAST3R_ROS_ORACLE_CACHE=0``
    turns the memo off (always computed, nothing written)."""
    if os.environ.get("MAST3R_ROS_ORACLE_CACHE", "1") == "0":
        return compute()
    try:
        path = cache_dir() / "oracle" / f"{name}.npz"
    except OSError:
        return compute()
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError):  # absent, or unreadable: computed again
        pass
    arrays = compute()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError:  # a read-only or full disk: the value is still right, just not kept
        pass
    return arrays
