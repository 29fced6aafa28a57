"""Which files of a map folder belong to the map store, and the one-writer lock.

Why: a map folder is user-supplied data. A file name read from its SQLite rows could point
anywhere (``../../victim.txt``), a user may keep their own files next to a map, and two processes
writing one map corrupt it. So every file name the store reads or deletes must have the shape
the store writes and resolve inside its own folder; the store deletes only entries of those
shapes; and a writer holds ``map.lock`` (flock, released by the kernel when the process dies) for
as long as it writes, naming itself in the file so that a refused second writer can say who holds it.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import os
import re
import shutil
import socket
import sys
from pathlib import Path

from mast3r_ros.map.format import LOCK_FILE, MAP_SQLITE, MAP_YAML, MapError

# Files the store (and the map writers around it) put at the top of a map folder.
OWNED_TOP_FILES = frozenset({MAP_YAML, MAP_SQLITE, f"{MAP_SQLITE}-journal", LOCK_FILE, "trajectory_tum.txt",
                             "trajectory_chain_tum.txt", "cloud.ply"})
OWNED_DIRS = ("keyframes", "globals")
# Keyframe and global array files: '<name>.npy', '<name>-<8 hex>.npy', 'image.png' (see write_fresh_file).
_ARRAY_FILE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,120}\.(npy|png)$")
_KF_DIR_RE = re.compile(r"^[0-9]{6,12}$")
# atomic_write_bytes temp files: '.<target name>.<8 random chars>.tmp' (tempfile.mkstemp).
_TMP_RE = re.compile(r"^\.([A-Za-z0-9_][A-Za-z0-9_.-]{0,120})\.[A-Za-z0-9_]{8}\.tmp$")
MAX_LISTED = 5


def _is_tmp_of(name: str, allowed) -> bool:
    m = _TMP_RE.match(name)
    return bool(m) and allowed(m.group(1))


def is_array_file(name: str) -> bool:
    """True for names the store gives keyframe/global files (or their temp files)."""
    return bool(_ARRAY_FILE_RE.match(name)) or _is_tmp_of(name, _ARRAY_FILE_RE.match)


def map_file(root: Path, sub: str, name: object, source: str) -> Path:
    """``root/sub/name`` after checking that ``name`` (read from the map's database) is a file name
    the store writes and that the path resolves inside ``root/sub``; MapError otherwise.

    ``sub``: 'globals' or 'keyframes/NNNNNN'. A symlinked folder or file leading out of the map is refused.
    """
    if not isinstance(name, str) or not _ARRAY_FILE_RE.match(name):
        raise MapError(f"{root / MAP_SQLITE}: {source} names the file {name!r}, which is not a map file "
                       "name; the database is damaged or hostile, refusing to use it")
    path = root / sub / name
    expected = root.resolve() / sub
    if path.resolve().parent != expected:
        raise MapError(f"{root / MAP_SQLITE}: {source} file {path} resolves to {path.resolve()}, outside "
                       f"{expected}; refusing to use it")
    return path


def _owned(rel: tuple[str, ...], entry: Path) -> bool:
    """Is ``entry`` (at ``rel`` parts below the map folder) of a shape the store writes? Symlinks never are."""
    if entry.is_symlink():
        return False
    name, depth = rel[-1], len(rel)
    if depth == 1:
        if entry.is_dir():
            return name in OWNED_DIRS
        return name in OWNED_TOP_FILES or _is_tmp_of(name, OWNED_TOP_FILES.__contains__)
    if rel[0] == "keyframes" and depth == 2:
        return entry.is_dir() and bool(_KF_DIR_RE.match(name))
    if (rel[0] == "globals" and depth == 2) or (rel[0] == "keyframes" and depth == 3):
        return entry.is_file() and is_array_file(name)
    return False


def _walk(path: Path, rel: tuple[str, ...] = ()):
    """(rel, entry, owned) for every entry below ``path``, children before their folder; the
    content of a foreign folder is not listed (the folder is)."""
    for entry in sorted(path.iterdir()):
        r = (*rel, entry.name)
        owned = _owned(r, entry)
        if owned and entry.is_dir():
            yield from _walk(entry, r)
        yield r, entry, owned


def foreign_entries(path: Path) -> list[str]:
    """Entries under a map folder that the store did not write (relative paths, sorted); symlinks
    are always foreign. Empty list = every entry is the store's own."""
    return ["/".join(r) for r, _, owned in _walk(path) if not owned]


def check_replaceable(path: Path) -> None:
    """MapError unless ``path`` is a map folder holding only files the store wrote (so replacing it
    deletes nothing of the user's)."""
    if path.is_symlink() or not path.is_dir():
        raise MapError(f"refusing to overwrite {path}: not a map folder")
    if not (path / MAP_YAML).is_file() or not (path / MAP_SQLITE).is_file():
        if any(path.iterdir()):
            raise MapError(f"refusing to overwrite {path}: not empty and not a map")
        return
    foreign = foreign_entries(path)
    if foreign:
        listed = ", ".join(foreign[:MAX_LISTED]) + (f" and {len(foreign) - MAX_LISTED} more"
                                                    if len(foreign) > MAX_LISTED else "")
        raise MapError(f"refusing to overwrite {path}: it holds files the map store did not write "
                       f"({listed}); move them away or choose another folder")


def remove_map_folder(path: Path) -> None:
    """Delete a map folder's own entries, then the folder if that emptied it (never a foreign file)."""
    for _, entry, owned in _walk(path):
        if not owned:
            continue
        if entry.is_dir():
            if not any(entry.iterdir()):
                entry.rmdir()
        else:
            entry.unlink()
    if not any(path.iterdir()):
        path.rmdir()


def enclosing_map(path: Path) -> Path | None:
    """The map folder that ``path`` lies inside (not ``path`` itself), or None."""
    for parent in Path(os.path.abspath(path)).parents:
        if (parent / MAP_YAML).is_file() and (parent / MAP_SQLITE).is_file():
            return parent
    return None


class WriterLock:
    """Exclusive, non-blocking writer lock on ``<folder>/map.lock``; MapError naming the holder when
    another process (or another open map object) writes the folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        try:
            self._fh = open(self.folder / LOCK_FILE, "a+b")
        except OSError as exc:
            raise MapError(f"map {self.folder} is not writable: {exc}") from None
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise MapError(f"map {self.folder} is being written by another writer ({holder(self.folder)}); "
                           "a map has one writer at a time: wait for it to finish or use another folder") from None
        cmd = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200]
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {now}: {cmd}".encode())
        self._fh.flush()

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def holder(folder: Path) -> str:
    """What the current writer wrote into ``map.lock`` (one line), or 'unknown'."""
    try:
        text = (Path(folder) / LOCK_FILE).read_bytes()[:400].decode("utf-8", "replace").strip()
    except OSError:
        return "unknown"
    return text.splitlines()[0] if text else "unknown"


def collect_garbage(root: Path, referenced: set[tuple[str, ...]]) -> list[str]:
    """Delete the store's own entries under ``root/keyframes`` and ``root/globals`` that no committed
    row references (``referenced``: ('keyframes', 'NNNNNN'), ('keyframes', 'NNNNNN', file),
    ('globals', file)), and the store's temp files; foreign entries are left alone. Call only while
    holding the writer lock. Returns the deleted relative paths."""
    deleted = []
    for sub in OWNED_DIRS:
        (root / sub).mkdir(exist_ok=True)
        for rel, entry, owned in _walk(root / sub, (sub,)):
            if not owned or rel in referenced:
                continue
            if entry.is_dir():
                if any(entry.iterdir()):  # a foreign file inside: keep the folder
                    continue
                entry.rmdir()
            else:
                entry.unlink()
            deleted.append("/".join(rel))
    for entry in root.iterdir():
        if entry.is_file() and not entry.is_symlink() and _is_tmp_of(entry.name, OWNED_TOP_FILES.__contains__):
            entry.unlink()
            deleted.append(entry.name)
    return deleted


def copy_map(src: Path, dst: Path, overwrite: bool = False) -> None:
    """Copy the map folder ``src`` to ``dst`` (temp copy + rename: ``dst`` is never half-written).
    ``overwrite`` replaces a map folder holding only the store's own files and held by no writer;
    a destination inside a map (``src`` included) is refused. MapError/OSError name the problem."""
    src, dst = Path(src), Path(dst)
    if os.path.abspath(dst) == os.path.abspath(src) or (dst.exists() and dst.resolve() == src.resolve()):
        raise MapError(f"the map is already stored at {dst}")
    outer = enclosing_map(dst)
    if outer is not None:
        raise MapError(f"{dst} is inside the map folder {outer}; choose a folder outside it")
    if not dst.parent.is_dir():
        raise MapError(f"parent folder of {dst} does not exist")
    lock = None
    if dst.exists() or dst.is_symlink():
        if not overwrite:
            raise MapError(f"{dst} already exists; set overwrite or choose a new folder")
        check_replaceable(dst)
        lock = WriterLock(dst)
    tmp = dst.parent / f".{dst.name}.{os.getpid()}.copy.tmp"
    old = dst.parent / f".{dst.name}.{os.getpid()}.copy.old"
    try:
        shutil.copytree(src, tmp, ignore=lambda d, names: [n for n in names if n == LOCK_FILE])
        if lock is not None:
            os.replace(dst, old)
        os.replace(tmp, dst)
        if lock is not None:
            remove_map_folder(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if lock is not None:
            lock.release()
