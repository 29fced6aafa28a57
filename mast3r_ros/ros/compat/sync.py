"""Approximate time synchroniser for image + camera_info (+ depth), ROS-free.

Why our own: message_filters is not installable as a wheel. The policy is simpler than
message_filters' ApproximateTime and suited to one camera driver: the *image* topic is the
pivot; a set for an image stamp is final as soon as every other topic holds either a message
with exactly that stamp or a message newer than it (messages on one topic arrive in stamp
order, so no closer partner can come later). The nearest partner on each topic must then lie
within ``max_interval_s`` of the image stamp, otherwise the image is rejected with a reason.

An image older than the last synchronised one is rejected at once ("stamp went backwards"):
its partners may already be discarded, and ordering per topic no longer holds.

Stamps are integer nanoseconds (``sec * 10**9 + nanosec``) so equal stamps compare exactly.
Messages are opaque here: the caller passes ``(stamp_ns, msg)``.

Frames lost before the node (DDS, a slow publisher) never reach the sync, so it counts what does
arrive per topic (:class:`TopicCounter`): arrival rate, and gaps in the stamp sequence. An image
rate below the camera_info rate, or image stamp gaps, mean images are lost on the way in.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

GAP_FACTOR = 1.5   # a stamp step longer than this many typical periods is a gap (frames missing)
_RATE_WINDOW_S = 5.0


class TopicCounter:
    """Arrivals on one topic: count, arrival rate, and stamp gaps against the typical period.

    The typical period is the shortest of the last 31 stamp steps (header stamps of one camera are
    multiples of its period, and when more than half of the frames are lost a median would be a
    multiple too), so it follows the publisher's rate. A step of ``k`` periods (k > ``GAP_FACTOR``)
    counts one gap and ``round(k) - 1`` missing messages. Steps backwards (a bag loop) restart the
    sequence without counting.
    """

    def __init__(self):
        self.received = 0
        self.gaps = 0
        self.missing = 0
        self._arrivals: deque[float] = deque(maxlen=600)  # monotonic s
        self._steps: deque[int] = deque(maxlen=31)        # recent stamp steps, ns
        self._last_stamp: int | None = None

    def add(self, stamp_ns: int, arrival_s: float) -> None:
        self.received += 1
        self._arrivals.append(arrival_s)
        last, self._last_stamp = self._last_stamp, stamp_ns
        if last is None or stamp_ns <= last:
            return
        step = stamp_ns - last
        if len(self._steps) >= 5:
            period = min(self._steps)
            if step > GAP_FACTOR * period:
                self.gaps += 1
                self.missing += max(int(round(step / period)) - 1, 1)
                return  # a gap is not a period: keep the estimate clean
        self._steps.append(step)

    def rate_hz(self, now_s: float, window_s: float = _RATE_WINDOW_S) -> float:
        """Arrivals per second over the last ``window_s`` seconds (0 with fewer than 2)."""
        recent = [t for t in self._arrivals if now_s - t <= window_s]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])


@dataclass
class SyncResult:
    """What one ``add`` produced.

    sets: complete sets, oldest first; each maps topic key -> message (the image stamp is
        ``stamps[i]``).
    stamps: [len(sets)] image stamps in ns.
    rejected: (image stamp ns, human-readable reason) for images that can never be synchronised.
    """
    sets: list[dict[str, Any]] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


class ApproximateSync:
    """Pairs each image with the nearest message on every other topic (see module doc).

    Args:
        keys: topic keys, the first is the pivot (image), e.g. ``("image", "camera_info")``.
        topic_names: key -> topic name, only used in messages (defaults to the keys).
        max_interval_s: largest |partner stamp - image stamp| accepted.
        queue_size: messages kept per topic; an image pushed out unsynchronised is rejected.
    """

    def __init__(self, keys: tuple[str, ...], max_interval_s: float = 0.02, queue_size: int = 10,
                 topic_names: dict[str, str] | None = None):
        if len(keys) < 1 or len(set(keys)) != len(keys):
            raise ValueError(f"sync keys must be distinct and non-empty, got {keys}")
        if max_interval_s < 0 or queue_size < 1:
            raise ValueError("max_interval_s must be >= 0 and queue_size >= 1")
        self.keys = tuple(keys)
        self.pivot = keys[0]
        self.max_interval_ns = int(round(max_interval_s * 1e9))
        self.queue_size = int(queue_size)
        self.names = {k: (topic_names or {}).get(k, k) for k in keys}
        self._queues: dict[str, deque[tuple[int, Any]]] = {k: deque() for k in keys}
        self._lock = threading.Lock()  # subscription callbacks may run on several threads
        self._last_emitted: int | None = None
        self.counters = {k: TopicCounter() for k in keys}
        self.synced = 0
        self.rejected = 0

    def add(self, key: str, stamp_ns: int, msg: Any, arrival_s: float | None = None) -> SyncResult:
        """Queue one message; return the sets that became complete and any rejections.

        ``arrival_s``: time.monotonic() of reception (for the input rates; default now)."""
        if key not in self._queues:
            raise KeyError(f"unknown sync key {key!r}; expected one of {self.keys}")
        out = SyncResult()
        with self._lock:
            self.counters[key].add(int(stamp_ns), time.monotonic() if arrival_s is None else arrival_s)
            out = self._add_locked(key, stamp_ns, msg, out)
            self.synced += len(out.sets)
            self.rejected += len(out.rejected)
        return out

    def input_stats(self, now_s: float | None = None) -> dict[str, str]:
        """What reached the sync, for /diagnostics: per topic key ``<key>_received``, ``<key>_hz``
        (arrivals per second over 5 s), ``<key>_stamp_gaps`` and ``<key>_missing`` (messages the
        gaps stand for), plus ``synced`` and ``unsynchronised`` sets."""
        now_s = time.monotonic() if now_s is None else now_s
        out = {}
        with self._lock:
            for k, c in self.counters.items():
                out.update({f"{k}_received": str(c.received), f"{k}_hz": f"{c.rate_hz(now_s):.2f}",
                            f"{k}_stamp_gaps": str(c.gaps), f"{k}_missing": str(c.missing)})
            out.update({"synced": str(self.synced), "unsynchronised": str(self.rejected)})
        return out

    def _add_locked(self, key: str, stamp_ns: int, msg: Any, out: SyncResult) -> SyncResult:
        q = self._queues[key]
        if key == self.pivot and self._last_emitted is not None and stamp_ns < self._last_emitted:
            # partners may already be gone, and their ordering assumption is broken: say so
            out.rejected.append((int(stamp_ns), f"image stamp went backwards: {stamp_ns / 1e9:.3f} s "
                                 f"after {self._last_emitted / 1e9:.3f} s (call reset after a bag loop)"))
            return out
        q.append((int(stamp_ns), msg))
        while len(q) > self.queue_size:
            old_stamp, _ = q.popleft()
            if key == self.pivot:
                out.rejected.append((old_stamp, self._why_unsynced(old_stamp)))
        self._drain(out)
        return out

    def reset(self) -> None:
        with self._lock:
            for q in self._queues.values():
                q.clear()
            self._last_emitted = None

    def _drain(self, out: SyncResult) -> None:
        """Emit or reject pivot messages, oldest first, while their set is final."""
        images = self._queues[self.pivot]
        while images:
            stamp, image = images[0]
            partners = {}
            for key in self.keys[1:]:
                best = self._final_partner(key, stamp)
                if best is None:
                    return  # not final yet: a closer partner may still arrive
                partners[key] = best
            images.popleft()
            far = [k for k, (s, _) in partners.items() if abs(s - stamp) > self.max_interval_ns]
            if far:
                out.rejected.append((stamp, self._why_far(stamp, far, partners)))
                continue
            out.sets.append({self.pivot: image, **{k: m for k, (_, m) in partners.items()}})
            out.stamps.append(stamp)
            self._last_emitted = stamp
            for key in self.keys[1:]:  # partners older than this image can no longer be used
                q = self._queues[key]
                while len(q) > 1 and q[0][0] < stamp:
                    q.popleft()

    def _final_partner(self, key: str, stamp: int) -> tuple[int, Any] | None:
        q = self._queues[key]
        if not q:
            return None
        if not any(s >= stamp for s, _ in q):
            return None
        return min(q, key=lambda sm: abs(sm[0] - stamp))

    def _why_far(self, stamp: int, far: list[str], partners: dict) -> str:
        parts = [f"{self.names[k]} nearest at {abs(partners[k][0] - stamp) / 1e9:.3f} s" for k in far]
        return (f"{self.names[self.pivot]} at {stamp / 1e9:.3f} s has no partner within "
                f"{self.max_interval_ns / 1e9:.3f} s ({'; '.join(parts)})")

    def _why_unsynced(self, stamp: int) -> str:
        missing = [self.names[k] for k in self.keys[1:] if not self._queues[k]]
        if missing:
            return (f"{self.names[self.pivot]} at {stamp / 1e9:.3f} s dropped: nothing received on "
                    f"{', '.join(missing)}")
        return (f"{self.names[self.pivot]} at {stamp / 1e9:.3f} s dropped: no synchronised partner "
                f"arrived (queue of {self.queue_size} full)")
