"""A small TF buffer (ROS-free): a tree of time-stamped transforms with interpolated lookups.

Why our own: tf2_ros is not installable as a wheel here. The node feeds it the TFMessages it
receives on ``/tf`` and ``/tf_static`` (and uses ``tf2_ros.Buffer`` instead where importable).
Transforms are ``T_parent_child`` [4,4] float64 (maps child-frame points into the parent frame,
metres); stamps are integer nanoseconds; ``stamp_ns=0`` asks for the latest common time.
"""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from mast3r_ros.geometry.transforms import invert


class TfLookupError(LookupError):
    """The transform is unknown, not connected, or not available at the requested time."""


@dataclass
class _Edge:
    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    transforms: list[np.ndarray] = field(default_factory=list)


class TfTree:
    """Time-stamped transform tree. Thread-safe.

    Args:
        cache_s: dynamic samples older than the newest minus this are forgotten.
    """

    def __init__(self, cache_s: float = 10.0):
        self.cache_ns = int(cache_s * 1e9)
        self._edges: dict[str, _Edge] = {}
        self._lock = threading.Lock()

    def set_transform(self, parent: str, child: str, stamp_ns: int, T_parent_child: np.ndarray,
                      static: bool = False) -> None:
        parent, child = parent.lstrip("/"), child.lstrip("/")
        if not parent or not child or parent == child:
            raise ValueError(f"bad transform frames {parent!r} -> {child!r}")
        T = np.asarray(T_parent_child, dtype=np.float64).reshape(4, 4)
        with self._lock:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or edge.static != static:
                edge = self._edges[child] = _Edge(parent, static)
            if static:
                edge.stamps, edge.transforms = [0], [T]
                return
            i = bisect.bisect_left(edge.stamps, stamp_ns)
            if i < len(edge.stamps) and edge.stamps[i] == stamp_ns:
                edge.transforms[i] = T
            else:
                edge.stamps.insert(i, stamp_ns)
                edge.transforms.insert(i, T)
            cut = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.cache_ns)
            del edge.stamps[:cut], edge.transforms[:cut]

    def frames(self) -> set[str]:
        with self._lock:
            return set(self._edges) | {e.parent for e in self._edges.values()}

    def lookup(self, target: str, source: str, stamp_ns: int = 0) -> np.ndarray:
        """``T_target_source`` at ``stamp_ns`` (0 = latest available). Raises TfLookupError."""
        target, source = target.lstrip("/"), source.lstrip("/")
        if target == source:
            return np.eye(4)
        with self._lock:
            up_s = self._chain(source)
            up_t = self._chain(target)
            common = next((f for f in (c for c, _ in up_s) if f in {c for c, _ in up_t}), None)
            if common is None:
                raise TfLookupError(f"no TF path between {target!r} and {source!r} "
                                    f"(known frames: {sorted(self.frames_unlocked())})")
            T_common_source = self._compose(up_s, common, stamp_ns)
            T_common_target = self._compose(up_t, common, stamp_ns)
        return invert(T_common_target) @ T_common_source

    def frames_unlocked(self) -> set[str]:
        return set(self._edges) | {e.parent for e in self._edges.values()}

    def _chain(self, frame: str) -> list[tuple[str, _Edge | None]]:
        """[(frame, edge to its parent), (parent, ...), ..., (root, None)]."""
        out, seen = [], set()
        while frame not in seen:
            seen.add(frame)
            edge = self._edges.get(frame)
            out.append((frame, edge))
            if edge is None:
                break
            frame = edge.parent
        return out

    def _compose(self, chain, common: str, stamp_ns: int) -> np.ndarray:
        T = np.eye(4)
        for frame, edge in chain:
            if frame == common:
                return T
            T = self._sample(frame, edge, stamp_ns) @ T
        return T

    @staticmethod
    def _sample(child: str, edge: _Edge, stamp_ns: int) -> np.ndarray:
        if edge.static:
            return edge.transforms[0]
        s = edge.stamps
        if stamp_ns == 0:
            return edge.transforms[-1]
        if stamp_ns < s[0] or stamp_ns > s[-1]:
            raise TfLookupError(f"TF {edge.parent} -> {child} not available at {stamp_ns / 1e9:.3f} s "
                                f"(have {s[0] / 1e9:.3f} .. {s[-1] / 1e9:.3f} s)")
        i = bisect.bisect_left(s, stamp_ns)
        if s[i] == stamp_ns:
            return edge.transforms[i]
        a, b = edge.transforms[i - 1], edge.transforms[i]
        w = (stamp_ns - s[i - 1]) / (s[i] - s[i - 1])
        return interpolate_T(a, b, w)


def interpolate_T(T_a: np.ndarray, T_b: np.ndarray, w: float) -> np.ndarray:
    """Pose between ``T_a`` (w=0) and ``T_b`` (w=1): linear translation, slerp rotation."""
    rots = Rotation.from_matrix(np.stack([T_a[:3, :3], T_b[:3, :3]]))
    T = np.eye(4)
    T[:3, :3] = Slerp([0.0, 1.0], rots)([w]).as_matrix()[0]
    T[:3, 3] = (1 - w) * T_a[:3, 3] + w * T_b[:3, 3]
    return T


ODOM_GRACE_S = 2.0  # 'auto': seconds of frames without odom->base on TF before the identity is used


class OdomSource:
    """Where odom->base comes from, per ``publish_odom_tf`` ('auto' | 'true' | 'false').

    'true': the node's own identity (camera-only rig). 'false': TF only; without it there is no
    map->odom (the pose is still published). 'auto': TF while it has odom->base; once frames have
    come for ``grace_s`` seconds (monotonic time of arrival) with no odom->base on TF, the node's
    own identity from then on (TF would echo our own identity back, so the choice is final until
    :meth:`reset`). ``identity`` says whether the node publishes odom->base.
    """

    def __init__(self, mode: str, grace_s: float = ODOM_GRACE_S):
        if mode not in ("auto", "true", "false"):
            raise ValueError(f"publish_odom_tf must be auto, true or false, got {mode!r}")
        self.mode, self.grace_s = mode, grace_s
        self.identity = mode == "true"
        self.missing_since: float | None = None
        self.last_missing = False   # the last lookup found no odom->base (and no identity)

    def T_odom_base(self, lookup, now_s: float, connected=None) -> tuple[np.ndarray | None, str]:
        """([4,4] T_odom_base or None, note). ``lookup()`` -> (T or None, reason) from TF at the
        image stamp; ``connected()`` -> whether TF links odom and base at all (any time): then
        odometry exists and is only late or early for this stamp, so 'auto' keeps waiting for it."""
        if self.identity:
            return np.eye(4), ""
        T, why = lookup()
        if T is not None:
            self.missing_since, self.last_missing = None, False
            return T, ""
        if connected is not None and connected():
            self.missing_since, self.last_missing = None, True
            return None, f"no odometry at the image stamp ({why}): pose published, map->odom not"
        if self.mode == "auto":
            self.missing_since = now_s if self.missing_since is None else self.missing_since
            if now_s - self.missing_since >= self.grace_s:
                self.identity, self.last_missing = True, False
                return np.eye(4), (f"no odom->base on TF for {self.grace_s:.0f} s: publishing identity "
                                   f"odom->base from now on (publish_odom_tf auto)")
        self.last_missing = True
        return None, f"no odometry ({why}): pose published, map->odom not"

    def describe(self) -> str:
        """One line for diagnostics."""
        if self.identity:
            return "identity odom->base published by this node" + (" (auto: TF had none)"
                                                                   if self.mode == "auto" else "")
        return "missing on TF" if self.last_missing else "from TF"

    def reset(self) -> None:
        self.identity, self.missing_since, self.last_missing = self.mode == "true", None, False
