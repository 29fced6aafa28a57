"""Windowed MASt3R mapping passes for :mod:`mast3r_ros.mapping.monocular_stream`: which keyframes a pass
maps, and the pair cache by keyframe id.

A pass re-optimises at most ``window`` keyframes, the newest; beyond that, up to :data:`FIXED` keyframes just
before the window join it to the map, held at their poses (so the map frame and its scale carry over),
and older keyframes keep the poses their last pass gave them. While the map holds at most ``window``
keyframes, a pass maps them all. Keyframes that no pass has posed yet (many came between passes) are
mapped by successive windows, each ending at most ``window // 2`` keyframes past the last posed one.
"""
from __future__ import annotations

from dataclasses import replace

FIXED = 3  # older keyframes held fixed in a windowed pass: enough overlap to carry pose and scale over


def next_window(posed: list[bool], window: int) -> tuple[int, int, int]:
    """(first fixed, first free, end) buffer positions of the next pass over keyframes whose ``posed`` flags
    are given in buffer order: free = [first free, end) is re-optimised, [first fixed, first free) is held
    fixed (empty when the window starts at the first keyframe)."""
    n = len(posed)
    if n <= window:
        return 0, 0, n
    unposed = next((k for k, p in enumerate(posed) if not p), n)
    end = n if unposed >= n - window // 2 else max(window, min(n, unposed + max(1, window // 2)))
    start = max(0, end - window)
    return max(0, start - FIXED), start, end


class IdPairCache:
    """``map_monocular``'s ``pair_cache`` for one pass, stored by keyframe id: the pass's image positions
    (i, j) are translated to ids (``ids[i]``), and each cached :class:`PairData` carries ids in the store
    and positions when handed to the pass, so a pair predicted in one window is reused in the next."""

    def __init__(self, store: dict, ids: list[int]):
        self.store, self.ids = store, list(ids)
        self._pos = {k: p for p, k in enumerate(self.ids)}

    def get(self, key: tuple[int, int], default=None):
        got = self.store.get((self.ids[key[0]], self.ids[key[1]]))
        if got is None:
            return default
        return [replace(p, i=self._pos[p.i], j=self._pos[p.j]) for p in got]

    def __setitem__(self, key: tuple[int, int], value: list) -> None:
        self.store[(self.ids[key[0]], self.ids[key[1]])] = [replace(p, i=self.ids[p.i], j=self.ids[p.j])
                                                            for p in value]


def forget_pairs_before(store: dict, first_id: int) -> None:
    """Drop cached pairs of keyframes older than ``first_id``: windows only move on, they are never mapped
    again (until a load or reset clears the cache)."""
    for key in [k for k in store if min(k) < first_id]:
        del store[key]
