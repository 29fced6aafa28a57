"""Keyframes held in memory while localizing: a least-recently-used cache bounded in bytes.

Why bytes and not a keyframe count: a MASt3R keyframe at the released size holds its encoder tokens
([768, 1024] float32, 3.1 MB) and, with stored depth, its network-resolution points ([384, 512, 3]
float32, 2.4 MB), a classical one a few hundred kB of SIFT arrays; a count bounds neither. Every
keyframe's arrays are separate, sha256-recorded ``.npy`` files of the map folder
(:mod:`mast3r_ros.map.store`), so a keyframe that was dropped is read back (and verified again) the
next time a query needs it: results do not depend on the budget, only the number of reads does.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

from mast3r_ros.map import Keyframe


def keyframe_nbytes(kf: Keyframe) -> int:
    """Bytes of the arrays a keyframe holds (image, depth, front-end arrays; K and pose excluded)."""
    arrays = [kf.image, kf.depth, *kf.arrays.values()]
    return int(sum(a.nbytes for a in arrays if a is not None))


class KeyframeCache:
    """LRU cache of keyframes loaded on demand by ``load(kf_id)``, holding at most ``budget_bytes``
    of arrays (:func:`keyframe_nbytes`; ``math.inf`` = unbounded, 0 = nothing kept). A keyframe larger
    than the whole budget is returned but not kept. The caller may hold the keyframes it got for one
    query; the cache's own bound is on what stays resident between queries."""

    def __init__(self, load: Callable[[int], Keyframe], budget_bytes: float):
        if not budget_bytes >= 0:  # also refuses NaN
            raise ValueError(f"keyframe cache budget must be >= 0 bytes, got {budget_bytes!r}")
        self._load = load
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[int, tuple[Keyframe, int]] = OrderedDict()
        self._bytes = 0
        self.loads = 0  # keyframes read from the map so far (hits are not counted)

    def get(self, kf_id: int) -> Keyframe:
        """The keyframe ``kf_id`` with its arrays; read from the map when it is not resident
        (errors of the read, e.g. a MapError naming a corrupt file, propagate unchanged)."""
        item = self._items.get(kf_id)
        if item is not None:
            self._items.move_to_end(kf_id)
            return item[0]
        kf = self._load(kf_id)
        self.loads += 1
        size = keyframe_nbytes(kf)
        if size <= self.budget_bytes:
            while self._bytes + size > self.budget_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped
            self._items[kf_id] = (kf, size)
            self._bytes += size
        return kf

    @property
    def resident_bytes(self) -> int:
        """Bytes of the keyframes kept now (<= ``budget_bytes``)."""
        return self._bytes

    def resident_ids(self) -> list[int]:
        """Ids of the keyframes kept now, least recently used first."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)
