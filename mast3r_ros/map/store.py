"""Crash-safe keyframe map store: ``map.yaml`` + ``map.sqlite`` + immutable per-keyframe files.

Layout of a map directory::

    map.yaml                      format version, units, frame conventions, front-end, checkpoint
    map.sqlite                    keyframes (pose, K, size) + arrays/globals (file name, sha256)
    keyframes/000012/image.png    keyframe RGB image
    keyframes/000012/depth.npy    [H,W] float32 metres (0 = invalid), optional
    keyframes/000012/<name>.npy   front-end arrays (names in mast3r_ros.map.keys)
    globals/<name>.npy            map-level arrays (retrieval index, ...)

Why it is crash-safe: a file referenced by a committed SQLite row is never modified. Every
write goes to a fresh file (temp file + fsync + ``os.replace``), and only then is the row that
references it committed in one SQLite transaction (rollback journal => all-or-nothing). A
process killed at any point leaves, at worst, unreferenced files, which are deleted when a
writer next takes the map (its first write, or ``open(writer=True)``); opening to read deletes
nothing. Replacing an array writes a new file name and deletes the old file after the commit.
The read-only queries are in :mod:`mast3r_ros.map.store_read`; this module creates, opens and writes.

Hostile or careless folders: file names read from the database are used only when they have the
shape the store writes and resolve inside the map (:func:`~mast3r_ros.map.folder.map_file`);
the store deletes only entries of its own shapes; one writer at a time holds ``map.lock`` (a second
one is refused at once, naming the holder).

Poses are ``T_map_cam``: [4,4] float64 camera-to-map, camera = OpenCV optical frame (x right,
y down, z forward), metres. ``K`` is [3,3] float64 pixels, pixel-centre convention.
"""
from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import threading
from pathlib import Path

import numpy as np
import yaml

from mast3r_ros.files.atomic_io import atomic_write_bytes, fsync_dir, write_fresh_file
from mast3r_ros.geometry.transforms import rigid_problem
from mast3r_ros.map.check import damage_line, quick_problems
from mast3r_ros.map.folder import (
    WriterLock,
    check_replaceable,
    collect_garbage,
    enclosing_map,
    map_file,
    remove_map_folder,
)
from mast3r_ros.map.format import (
    FORMAT_VERSION,
    MAP_SQLITE,
    MAP_YAML,
    SCHEMA,
    Keyframe,
    MapError,
    MapMeta,
    check_name,
    encode_keyframe,
    meta_to_yaml,
    npy_bytes,
    read_meta,
    validate_keyframe,
)
from mast3r_ros.map.keys import PARTIAL_KEY, RESERVED_NAMES
from mast3r_ros.map.store_read import KeyframeMapReader


class KeyframeMap(KeyframeMapReader):
    """A keyframe map directory (see module docstring). Use :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, meta: MapMeta, _token: object = None, _writer: WriterLock | None = None):
        if _token is not _PRIVATE:
            raise TypeError("use KeyframeMap.create(...) or KeyframeMap.open(...)")
        self.path = Path(path)
        self.meta = meta
        self._lock = threading.RLock()
        self._writer = _writer
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            raise MapError(f"{self.path / MAP_SQLITE} is corrupt or not a map database: {exc}") from None

    # ---------------------------------------------------------------- lifecycle
    @classmethod
    def create(cls, path: str | Path, meta: MapMeta, overwrite: bool = False) -> "KeyframeMap":
        """Create an empty map at ``path`` (built in a temp dir, then renamed into place) and hold it
        as its writer. ``overwrite`` replaces a map folder that holds only the store's own files and
        that no other writer holds; anything else is refused and left untouched."""
        path = Path(path)
        if meta.format_version != FORMAT_VERSION:
            raise MapError(f"cannot create a map of format version {meta.format_version}")
        outer = enclosing_map(path)
        if outer is not None:
            raise MapError(f"{path} is inside the map folder {outer}; choose a folder outside it")
        old_lock = None
        if path.exists() or path.is_symlink():
            if not overwrite:
                raise MapError(f"{path} already exists; use --overwrite (overwrite=True) to replace it")
            check_replaceable(path)
            old_lock = WriterLock(path)  # refused while another process writes this map
        try:
            return cls._create_in_place(path, meta, old_lock is not None)
        finally:
            if old_lock is not None:
                old_lock.release()

    @classmethod
    def _create_in_place(cls, path: Path, meta: MapMeta, replace: bool) -> "KeyframeMap":
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        tmp.mkdir()
        writer = None
        try:
            (tmp / "keyframes").mkdir()
            (tmp / "globals").mkdir()
            with sqlite3.connect(tmp / MAP_SQLITE) as db:
                db.executescript(SCHEMA)
                db.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
            db.close()
            atomic_write_bytes(tmp / MAP_YAML, yaml.safe_dump(meta_to_yaml(meta), sort_keys=False).encode())
            writer = WriterLock(tmp)  # the lock file moves with the folder: held from the first instant
            old = tmp.with_name(tmp.name[:-4] + ".old") if replace else None
            if old is not None:  # a crash from here on leaves the previous map at `old`, intact
                os.replace(path, old)
            os.replace(tmp, path)
            fsync_dir(path.parent)
            if old is not None:
                remove_map_folder(old)
        except BaseException:
            if writer is not None:
                writer.release()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(path, meta, _PRIVATE, writer)

    @classmethod
    def open(cls, path: str | Path, expect_checkpoint_sha256: str | None = None,
             writer: bool = False, check: bool = True) -> "KeyframeMap":
        """Open an existing map; checks format version, checkpoint (when given) and the SQLite file.

        Reading deletes nothing. The first write takes the writer lock (MapError when another writer
        holds it) and clears what a killed writer left; ``writer=True`` does both at once.
        ``check``: refuse a damaged map (partial build, missing files or rows, non-finite or non-rigid
        poses: :func:`~mast3r_ros.map.check.quick_problems`) with one MapError listing it."""
        path = Path(path)
        if not path.is_dir():
            raise MapError(f"map directory {path} does not exist")
        meta, _ = read_meta(path)
        if expect_checkpoint_sha256 is not None and meta.checkpoint_sha256 != expect_checkpoint_sha256:
            raise MapError(f"{path / MAP_YAML}: map was built with checkpoint sha256 "
                           f"{meta.checkpoint_sha256}, but the loaded checkpoint is "
                           f"{expect_checkpoint_sha256}; rebuild the map")
        if not (path / MAP_SQLITE).is_file():
            raise MapError(f"{path}: missing {MAP_SQLITE}")
        kmap = cls(path, meta, _PRIVATE)
        try:
            kmap._check_db()
            problems = quick_problems(kmap) if check else []
            if problems:
                raise MapError(damage_line(path, problems))
            if writer:
                kmap._ensure_writer()
        except BaseException:
            kmap.close()
            raise
        return kmap

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path / MAP_SQLITE, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA synchronous = FULL")
        return db

    def _check_db(self) -> None:
        sq = self.path / MAP_SQLITE
        try:
            ok = self._db.execute("PRAGMA quick_check").fetchone()[0]
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            self._db.execute("SELECT count(*) FROM keyframes").fetchone()
            self._db.execute("SELECT count(*) FROM arrays").fetchone()
            self._db.execute("SELECT count(*) FROM globals").fetchone()
        except sqlite3.DatabaseError as exc:
            raise MapError(f"{sq} is corrupt or not a map database: {exc}") from None
        if ok != "ok":
            raise MapError(f"{sq} failed the SQLite integrity check: {ok}")
        if version != FORMAT_VERSION:
            raise MapError(f"{sq}: database format version {version}, expected {FORMAT_VERSION}")

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._writer is not None:
                self._writer.release()
                self._writer = None

    def __enter__(self) -> "KeyframeMap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- write helpers
    def _ensure_writer(self) -> None:
        """Become this map's one writer (kept until close); the first time, delete what a killed
        writer left (nobody else can be writing now)."""
        with self._lock:
            if self._writer is None:
                self._require_db()
                self._writer = WriterLock(self.path)
                self._collect_garbage()

    def _transaction(self, fn):
        """Run ``fn(db)`` inside BEGIN IMMEDIATE ... COMMIT, rolling back on any error."""
        db = self._require_db()
        db.execute("BEGIN IMMEDIATE")
        try:
            out = fn(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return out

    def _collect_garbage(self) -> None:
        """Delete the store's own files/dirs that no committed row references (left by a killed writer)."""
        db = self._require_db()
        ref = {("keyframes", f"{i:06d}") for (i,) in db.execute("SELECT id FROM keyframes")}
        ref |= {("keyframes", f"{k:06d}", f) for k, f in db.execute("SELECT kf_id, file FROM arrays")}
        ref |= {("globals", f) for (f,) in db.execute("SELECT file FROM globals")}
        collect_garbage(self.path, ref)

    # ---------------------------------------------------------------- keyframes
    def _write_keyframe_files(self, kf_id: int, payload: list[tuple[str, str, bytes]]) -> list[tuple]:
        folder = self.path / "keyframes" / f"{kf_id:06d}"
        rows = [(name, *write_fresh_file(folder, name, suffix, data)) for name, suffix, data in payload]
        fsync_dir(folder)
        return rows

    def add_keyframe(self, kf: Keyframe) -> int:
        """Store one keyframe (files first, then one transaction); returns its new id."""
        return self.add_keyframes([kf])[0]

    def add_keyframes(self, kfs: list[Keyframe]) -> list[int]:
        """Store keyframes atomically together (one SQLite transaction); returns their ids."""
        sizes = [validate_keyframe(kf, self.meta.image_size) for kf in kfs]
        payloads = [encode_keyframe(kf) for kf in kfs]
        with self._lock:
            self._ensure_writer()
            row = self._require_db().execute("SELECT max(id) FROM keyframes").fetchone()[0]
            first = 1 if row is None else row + 1
            ids = list(range(first, first + len(kfs)))
            written = []
            try:
                files = []
                for i, p in zip(ids, payloads):
                    folder = self.path / "keyframes" / f"{i:06d}"
                    if folder.exists() or folder.is_symlink():  # not ours (garbage was collected)
                        raise MapError(f"{folder} exists but is no keyframe of this map; move it away")
                    written.append(i)
                    files.append(self._write_keyframe_files(i, p))

                def insert(db):
                    for i, kf, (w, h), rows in zip(ids, kfs, sizes, files):
                        db.execute("INSERT INTO keyframes VALUES (?,?,?,?,?,?,?)",
                                   (i, int(kf.frame_index), float(kf.timestamp),
                                    np.asarray(kf.T_map_cam, np.float64).tobytes(),
                                    np.asarray(kf.K, np.float64).tobytes(), w, h))
                        db.executemany("INSERT INTO arrays VALUES (?,?,?,?)",
                                       [(i, n, f, s) for n, f, s in rows])
                self._transaction(insert)
            except BaseException:  # nothing was committed: drop the folders this call created
                for i in written:
                    shutil.rmtree(self.path / "keyframes" / f"{i:06d}", ignore_errors=True)
                raise
        return ids

    def put_array(self, kf_id: int, name: str, arr: np.ndarray) -> None:
        """Add or replace a named array of an existing keyframe (atomic; old file removed after commit)."""
        check_name(name)
        if name in RESERVED_NAMES:
            raise MapError(f"array name {name!r} is reserved")
        self._row(kf_id)
        self._put(f"keyframes/{int(kf_id):06d}", "arrays", "kf_id=? AND name=?", (int(kf_id), name),
                  "INSERT OR REPLACE INTO arrays VALUES (?,?,?,?)", (int(kf_id), name), name, arr)

    def _put(self, sub: str, table: str, where: str, key: tuple, insert: str, prefix: tuple,
             name: str, arr: np.ndarray) -> None:
        data = npy_bytes(arr, name)
        with self._lock:
            self._ensure_writer()
            old = self._require_db().execute(f"SELECT file FROM {table} WHERE {where}", key).fetchone()
            old_path = None if old is None else map_file(self.path, sub, old[0], f"{sub} array {name!r}")
            folder = self.path / sub
            file, sha = write_fresh_file(folder, name, ".npy", data)
            fsync_dir(folder)
            self._transaction(lambda db: db.execute(insert, (*prefix, file, sha)))
            if old_path is not None and old_path.name != file:
                old_path.unlink(missing_ok=True)

    def set_partial(self, reason: str | None) -> None:
        """Mark the map as partial (``reason``: why, e.g. a build in progress) or, with None, as
        complete; rewrites ``map.yaml`` atomically. Opening a partial map is refused."""
        extra = {k: v for k, v in self.meta.extra.items() if k != PARTIAL_KEY}
        if reason is not None:
            extra[PARTIAL_KEY] = str(reason)
        with self._lock:
            self._ensure_writer()
            meta = MapMeta(self.meta.frontend, self.meta.checkpoint_sha256, self.meta.image_size,
                           self.meta.format_version, extra)
            atomic_write_bytes(self.path / MAP_YAML, yaml.safe_dump(meta_to_yaml(meta), sort_keys=False).encode())
            self.meta = meta

    # ---------------------------------------------------------------- poses, globals
    def update_poses(self, poses: dict[int, np.ndarray],
                     intrinsics: dict[int, np.ndarray] | None = None) -> None:
        """Replace T_map_cam (and optionally K [3,3]) of the given keyframes in one transaction
        (all or nothing)."""
        blobs, kblobs = [], []
        for i, T in poses.items():
            T = np.asarray(T, dtype=np.float64)
            if rigid_problem(T):
                raise MapError(f"pose of keyframe {i} {rigid_problem(T)}; nothing was updated")
            blobs.append((T.tobytes(), int(i)))
        for i, K in (intrinsics or {}).items():
            K = np.asarray(K, dtype=np.float64)
            if K.shape != (3, 3) or not np.all(np.isfinite(K)):
                raise MapError(f"K of keyframe {i} must be a finite 3x3 matrix")
            kblobs.append((K.tobytes(), int(i)))

        def update(db):
            for col, rows in (("T_map_cam", blobs), ("K", kblobs)):
                for blob, i in rows:
                    if db.execute(f"UPDATE keyframes SET {col}=? WHERE id=?", (blob, i)).rowcount != 1:
                        raise MapError(f"map {self.path}: no keyframe with id {i}; nothing was updated")
        with self._lock:
            self._ensure_writer()
            self._transaction(update)

    def put_global(self, name: str, arr: np.ndarray) -> None:
        """Store or replace a map-level array (e.g. a retrieval index), atomically."""
        check_name(name)
        self._put("globals", "globals", "name=?", (name,),
                  "INSERT OR REPLACE INTO globals VALUES (?,?,?)", (name,), name, arr)


_PRIVATE = object()
