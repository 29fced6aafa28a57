"""The incremental mapper's re-optimisation, ROS-free: one windowed or global sparse-alignment pass
over a copy of the keyframes (warm-started from their current poses), and the background worker that
runs the passes one at a time while frames keep arriving. Used by :mod:`mast3r_ros.mapping.incremental`.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from mast3r_ros.mapping.sparse_ga import AlignmentConfig, sparse_global_alignment
from mast3r_ros.mapping.types import ViewData


def align_keyframes(kfs: dict, T0: dict[int, np.ndarray], pairs: dict, mode: str, window_size: int,
                    alignment: AlignmentConfig) -> dict[int, np.ndarray] | None:
    """One pass: the optimised poses of the keyframes in the problem.

    Args:
        kfs: {keyframe id: keyframe} with ``image`` [H,W,3] uint8, ``K`` [3,3] float64 (pixels) and
            ``depth`` [H,W] float32 metres (0 = invalid).
        T0: {keyframe id: [4,4] float64 T_map_cam}, the warm start (a copy: the keyframes may move meanwhile).
        pairs: {(id_a, id_b): PairData} SIFT matches between keyframes (pixels of a and b).
        mode: 'global' (every keyframe but the first free) or 'window' (the last ``window_size``
            keyframes free, the first never; their pair partners join the problem fixed).
        alignment: the sparse global alignment settings.
    Returns:
        {keyframe id: [4,4] float64 T_map_cam} for every keyframe in the problem (free and fixed), or
        None when there is nothing to optimise (fewer than two keyframes, none free, no pair).
    Raises:
        MappingError from the alignment.
    """
    ids = sorted(kfs)
    if len(ids) < 2:
        return None
    free = set(ids[1:]) if mode == "global" else set(ids[-window_size:]) - {ids[0]}
    use = set(free) | {b for a, b in pairs if a in free} | {a for a, b in pairs if b in free}
    use |= {ids[0]} if mode == "global" else set()
    order = sorted(use)
    pos = {k: v for v, k in enumerate(order)}
    views = [ViewData((kfs[k].image.shape[1], kfs[k].image.shape[0]), kfs[k].image, kfs[k].K,
                      kfs[k].depth, name=str(k)) for k in order]
    plist = []
    for (a, b), p in pairs.items():
        if a in pos and b in pos and (a in free or b in free):
            plist.append(type(p)(pos[a], pos[b], p.xy_i, p.xy_j, p.conf))
    fixed = np.array([k not in free for k in order])
    if fixed.all() or not plist:
        return None
    res = sparse_global_alignment(views, plist, alignment,
                                  init_T_world_cam=np.stack([T0[k] for k in order]), fixed=fixed)
    return {k: res.T_world_cam[pos[k]] for k in order}


class PassWorker:
    """Runs ``run_pass(mode)`` on a background thread, one pass at a time. Requests made during a
    pass are coalesced into the next one ('global' wins over 'window')."""

    def __init__(self, run_pass: Callable[[str], bool], name: str = "mast3r-mapper"):
        self._run_pass = run_pass
        self._name = name
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = False

    @property
    def running(self) -> bool:
        return self._thread is not None

    def request(self, mode: str) -> None:
        """Ask for a pass ('global' or 'window'); returns at once."""
        with self._lock:
            self._pending = "global" if "global" in (mode, self._pending) else mode
            self._wake.notify()

    def start(self) -> None:
        """Start the thread (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return
            self._stop = False
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread after its current pass."""
        with self._lock:
            t, self._thread = self._thread, None
            self._stop = True
            self._wake.notify_all()
        if t is not None:
            t.join()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while self._pending is None and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                mode, self._pending = self._pending, None
            self._run_pass(mode)
