"""Newest-frame bounded queue and the worker thread that drains it (ROS-free).

Why: a localizer is slower than a 30 Hz camera. Callbacks must never block the executor, and
processing stale frames only adds latency, so the callback pushes into a small queue that drops
the *oldest* entry when full, and one worker thread processes whatever is newest.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Callable

log = logging.getLogger(__name__)


class NewestQueue:
    """Thread-safe bounded queue keeping the newest ``maxsize`` items (oldest dropped)."""

    def __init__(self, maxsize: int = 1):
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self.maxsize = int(maxsize)
        self._items: deque[Any] = deque()
        self._cond = threading.Condition()
        self.pushed = 0
        self.dropped = 0

    def put(self, item: Any) -> Any | None:
        """Add an item; returns the dropped oldest item when the queue was full, else None."""
        with self._cond:
            self.pushed += 1
            dropped = None
            if len(self._items) >= self.maxsize:
                dropped = self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()
            return dropped

    def get(self, timeout: float | None = None) -> Any | None:
        """Newest-first semantics come from dropping on put; get returns the oldest kept item
        (FIFO among the kept ones), or None after ``timeout`` seconds with nothing queued."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class FrameWorker:
    """One thread calling ``handler(item)`` for each item of a :class:`NewestQueue`.

    The handler's exceptions are logged and counted, never fatal: one bad frame must not stop
    the node. ``stop()`` returns once the current item is finished (or after ``timeout``).
    """

    def __init__(self, handler: Callable[[Any], None], maxsize: int = 1, name: str = "mast3r-frames"):
        self.queue = NewestQueue(maxsize)
        self._handler = handler
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.processed = 0
        self.failures = 0
        self.busy = threading.Event()

    def start(self) -> "FrameWorker":
        self._thread.start()
        return self

    def submit(self, item: Any) -> Any | None:
        """Queue an item; returns the item dropped to make room, if any."""
        return self.queue.put(item)

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the thread to finish; True when it has exited within ``timeout`` seconds."""
        self._stop.set()
        with self.queue._cond:
            self.queue._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.queue.get(timeout=0.1)
            if item is None:
                continue
            self.busy.set()
            try:
                self._handler(item)
                self.processed += 1
            except Exception:  # noqa: BLE001 - a failing frame is reported, the loop goes on
                self.failures += 1
                log.exception("frame handler failed")
            finally:
                self.busy.clear()
