"""Crash-safe file primitives shared by the map store, TUM writer and dataset renderer.

Why: readers must only ever see a complete old file or a complete new one. Every write goes to a
temp file in the destination folder, is fsync'ed, then renamed over the target (``os.replace`` is
atomic on POSIX); content hashes let readers detect files damaged after the fact.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the complete new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_fresh_file(folder: Path, stem: str, suffix: str, data: bytes) -> tuple[str, str]:
    """Atomically write ``data`` to a file name that does not exist yet in ``folder`` (files that
    may be referenced elsewhere are never overwritten). Returns (file name, sha256 hex)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{stem}{suffix}"
    if (folder / name).exists():
        name = f"{stem}-{secrets.token_hex(4)}{suffix}"
    atomic_write_bytes(folder / name, data)
    return name, hashlib.sha256(data).hexdigest()


def fsync_dir(path: str | Path) -> None:
    """Flush a directory entry table (makes preceding renames in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
