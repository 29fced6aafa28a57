"""The read side of a keyframe map: every query of :class:`~mast3r_ros.map.store.KeyframeMap` that
changes nothing (keyframes, arrays, poses, globals, sha256 verification, TUM export).

Why a separate base class: reading never takes the writer lock nor deletes anything, so the
methods here touch only the SQLite connection (under the map's lock) and sha256-verified files.
"""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import cv2
import numpy as np

from mast3r_ros.datasets.tum import write_tum
from mast3r_ros.map.folder import map_file
from mast3r_ros.map.format import MAP_SQLITE, Keyframe, MapError, MapMeta, blob_matrix, load_npy, read_verified
from mast3r_ros.map.keys import RESERVED_NAMES


class KeyframeMapReader:
    """Read-only queries of an open map. The subclass (:class:`~mast3r_ros.map.store.KeyframeMap`) sets
    ``path`` (map folder), ``meta`` and ``_lock`` and owns ``_db`` (None once closed)."""

    path: Path
    meta: MapMeta
    _lock: threading.RLock
    _db: sqlite3.Connection | None

    def _require_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise MapError(f"map {self.path} is closed")
        return self._db

    def keyframe_ids(self) -> list[int]:
        """Ids of all committed keyframes, ascending."""
        with self._lock:
            return [i for (i,) in self._require_db().execute("SELECT id FROM keyframes ORDER BY id")]

    def __len__(self) -> int:
        return len(self.keyframe_ids())

    def array_names(self, kf_id: int) -> list[str]:
        """Names of the front-end arrays stored for a keyframe (excludes 'image' and 'depth')."""
        self._row(kf_id)
        with self._lock:
            rows = self._require_db().execute("SELECT name FROM arrays WHERE kf_id=? ORDER BY name", (kf_id,))
            return [n for (n,) in rows if n not in RESERVED_NAMES]

    def _row(self, kf_id: int) -> tuple:
        with self._lock:
            row = self._require_db().execute(
                "SELECT frame_index, timestamp, T_map_cam, K FROM keyframes WHERE id=?", (int(kf_id),)
            ).fetchone()
        if row is None:
            raise MapError(f"map {self.path}: no keyframe with id {kf_id}")
        return row

    def _file_entry(self, kf_id: int, name: str) -> tuple[str, str] | None:
        with self._lock:
            return self._require_db().execute(
                "SELECT file, sha256 FROM arrays WHERE kf_id=? AND name=?", (int(kf_id), name)).fetchone()

    def get_keyframe(self, kf_id: int, load_image: bool = True, arrays: list[str] | None = None,
                     load_depth: bool = True) -> Keyframe:
        """Load a keyframe. Only the front-end arrays named in ``arrays`` are loaded (None = none;
        list them with :meth:`array_names`). ``image`` is None when ``load_image`` is False and
        ``depth`` None when not stored or ``load_depth`` is False."""
        frame_index, ts, T_blob, K_blob = self._row(kf_id)
        image = None
        if load_image:
            entry = self._file_entry(kf_id, "image")
            if entry is None:
                raise MapError(f"map {self.path}: keyframe {kf_id} has no image row")
            path = self._kf_file(kf_id, "image", entry[0])
            bgr = cv2.imdecode(np.frombuffer(read_verified(path, entry[1]), np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise MapError(f"map file {path} is not a decodable PNG")
            image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        depth_entry = self._file_entry(kf_id, "depth") if load_depth else None
        depth = load_npy(self._kf_file(kf_id, "depth", depth_entry[0]), depth_entry[1]) if depth_entry else None
        return Keyframe(
            id=int(kf_id), frame_index=int(frame_index), timestamp=float(ts), image=image,
            K=blob_matrix(K_blob, 3, f"{self.path / MAP_SQLITE} keyframe {kf_id} K"),
            T_map_cam=blob_matrix(T_blob, 4, f"{self.path / MAP_SQLITE} keyframe {kf_id} T_map_cam"), depth=depth,
            arrays={n: self.get_array(kf_id, n) for n in (arrays or [])})

    def _kf_file(self, kf_id: int, name: str, file: object) -> Path:
        return map_file(self.path, f"keyframes/{int(kf_id):06d}", file, f"keyframe {kf_id} array {name!r}")

    def get_array(self, kf_id: int, name: str) -> np.ndarray:
        """Load one named array of a keyframe (sha256-verified)."""
        entry = self._file_entry(kf_id, name)
        if entry is None:
            self._row(kf_id)
            raise MapError(f"map {self.path}: keyframe {kf_id} has no array {name!r}")
        return load_npy(self._kf_file(kf_id, name, entry[0]), entry[1])

    def poses(self) -> dict[int, np.ndarray]:
        """id -> T_map_cam [4,4] float64 (camera-to-map, metres), read from SQLite only."""
        with self._lock:
            rows = self._require_db().execute("SELECT id, T_map_cam FROM keyframes ORDER BY id").fetchall()
        return {i: blob_matrix(b, 4, f"{self.path / MAP_SQLITE} keyframe {i} T_map_cam") for i, b in rows}

    def timestamps(self) -> dict[int, float]:
        """id -> timestamp (seconds)."""
        with self._lock:
            rows = self._require_db().execute("SELECT id, timestamp FROM keyframes ORDER BY id")
            return dict(rows.fetchall())

    def get_global(self, name: str) -> np.ndarray | None:
        """A map-level array, or None when it was never stored."""
        with self._lock:
            entry = self._require_db().execute(
                "SELECT file, sha256 FROM globals WHERE name=?", (name,)).fetchone()
        if entry is None:
            return None
        return load_npy(map_file(self.path, "globals", entry[0], f"global array {name!r}"), entry[1])

    def verify(self) -> None:
        """Check every referenced file's sha256; MapError naming the first bad file."""
        with self._lock:
            db = self._require_db()
            entries = [(self._kf_file(k, n, f), s)
                       for k, n, f, s in db.execute("SELECT kf_id, name, file, sha256 FROM arrays")]
            entries += [(map_file(self.path, "globals", f, f"global array {n!r}"), s)
                        for n, f, s in db.execute("SELECT name, file, sha256 FROM globals")]
        for path, sha in entries:
            read_verified(path, sha)

    def write_trajectory_tum(self, path: str | Path | None = None) -> Path:
        """Write keyframe poses T_map_cam as TUM lines, ordered by timestamp; default
        ``<map>/trajectory_tum.txt``."""
        poses, stamps = self.poses(), self.timestamps()
        order = sorted(poses, key=lambda i: (stamps[i], i))
        T = np.stack([poses[i] for i in order]) if order else np.zeros((0, 4, 4))
        return write_tum(Path(path) if path else self.path / "trajectory_tum.txt",
                         np.array([stamps[i] for i in order]), T)
