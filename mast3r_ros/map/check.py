"""Damage reports of a keyframe map: what ``mast3r-ros map check`` prints and what opening a map refuses.

Why: a map whose files were deleted or corrupted, whose poses are NaN or not rigid, or whose build
stopped half-way localizes nothing ("0/2 localized") without saying why. :func:`quick_problems` costs
one SQLite scan and a ``stat`` per file (run on every open); :func:`check_map` also reads every file
(sha256, .npy parse, non-finite values in descriptors).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from mast3r_ros.geometry.transforms import rigid_problem
from mast3r_ros.map.folder import map_file
from mast3r_ros.map.format import MAP_SQLITE, MapError, read_verified
from mast3r_ros.map.keys import PARTIAL_KEY

MAX_LISTED = 3
# Arrays that must be finite: descriptors, vocabularies, retrieval index. Others may hold NaN on purpose
# (e.g. sift_X: NaN = keypoint without depth).
FINITE_MARKERS = ("desc", "vocab", "retrieval")


def _rows(kmap):
    db = kmap._require_db()
    kfs = db.execute("SELECT id, T_map_cam, K FROM keyframes ORDER BY id").fetchall()
    arrays = db.execute("SELECT kf_id, name, file, sha256 FROM arrays ORDER BY kf_id, name").fetchall()
    globals_ = db.execute("SELECT name, file, sha256 FROM globals ORDER BY name").fetchall()
    return kfs, arrays, globals_


def _files(kmap, arrays, globals_, problems: list[str]) -> list[tuple[Path, str, str]]:
    """(path, sha, what) of every referenced file whose name is safe; unsafe names become problems."""
    out = []
    for k, name, file, sha in arrays:
        try:
            out.append((map_file(kmap.path, f"keyframes/{k:06d}", file, f"keyframe {k} array {name!r}"), sha,
                        f"keyframe {k} {name}"))
        except MapError as exc:
            problems.append(str(exc))
    for name, file, sha in globals_:
        try:
            out.append((map_file(kmap.path, "globals", file, f"global array {name!r}"), sha, f"global {name}"))
        except MapError as exc:
            problems.append(str(exc))
    return out


def quick_problems(kmap) -> list[str]:
    """Damage visible without reading file contents (one line each, naming the keyframe or file)."""
    problems = []
    if PARTIAL_KEY in kmap.meta.extra:
        problems.append(f"partial map: {kmap.meta.extra[PARTIAL_KEY]}; rebuild it (map build --overwrite)")
    kfs, arrays, globals_ = _rows(kmap)
    ids = {k for k, _, _ in kfs}
    with_image = {k for k, name, _, _ in arrays if name == "image"}
    for k, T_blob, K_blob in kfs:
        if k not in with_image:
            problems.append(f"keyframe {k}: no image row in {MAP_SQLITE}")
        if not isinstance(T_blob, bytes) or len(T_blob) != 128:
            problems.append(f"keyframe {k}: T_map_cam is not 16 float64 values")
        else:
            why = rigid_problem(np.frombuffer(T_blob, np.float64).reshape(4, 4))
            if why:
                problems.append(f"keyframe {k}: T_map_cam {why}")
        K = np.frombuffer(K_blob, np.float64) if isinstance(K_blob, bytes) and len(K_blob) == 72 else None
        if K is None or not np.all(np.isfinite(K)) or K[0] <= 0 or K[4] <= 0:
            problems.append(f"keyframe {k}: K is not a finite 3x3 matrix with positive focal lengths")
    problems += [f"{MAP_SQLITE}: array {name!r} belongs to keyframe {k}, which has no row"
                 for k, name, _, _ in arrays if k not in ids]
    for path, _, what in _files(kmap, arrays, globals_, problems):
        if not path.is_file():
            problems.append(f"{what}: file {path} is missing")
    return problems


def check_map(kmap) -> list[str]:
    """Every problem found, reading every file: :func:`quick_problems` plus corrupt files (sha256), files
    that are not valid .npy, and NaN/Inf values in descriptor arrays (keyframe descriptors, vocabulary,
    retrieval index)."""
    problems = quick_problems(kmap)
    _, arrays, globals_ = _rows(kmap)
    for path, sha, what in _files(kmap, arrays, globals_, []):
        if not path.is_file():
            continue  # already reported
        try:
            data = read_verified(path, sha)
        except MapError as exc:
            problems.append(f"{what}: {exc}")
            continue
        if path.suffix != ".npy":
            continue
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            problems.append(f"{what}: {path} is not a valid .npy array: {exc}")
            continue
        must_be_finite = any(m in what for m in FINITE_MARKERS)
        if must_be_finite and arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            problems.append(f"{what}: {path} holds {int((~np.isfinite(arr)).sum())} NaN/Inf values")
    return problems


def damage_line(path: Path, problems: list[str]) -> str:
    """One line: the first problems and how to list them all."""
    more = f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return (f"map {path} is damaged ({len(problems)} problem{'s' * (len(problems) != 1)}): "
            f"{'; '.join(problems[:MAX_LISTED])}{more}; `mast3r-ros map check {path}` lists them all")
