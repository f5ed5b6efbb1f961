"""A work queue keyed by lease: deduplicated, delayed, and never two workers on one key.

Like client-go's rate-limited work queue, reduced to what the controller needs: ``add(key, delay)``
keeps the earliest due time of a key; ``get()`` hands out a due key that no other worker holds;
``done(key)`` releases it, re-queueing it if it was added meanwhile.
"""

from __future__ import annotations

import heapq
import threading
import time


class WorkQueue:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._active: set[str] = set()
        self._dirty: dict[str, float] = {}
        self._closed = False

    def add(self, key: str, delay: float = 0.0) -> None:
        with self._cond:
            due = time.monotonic() + max(0.0, delay)
            if key in self._active:
                self._dirty[key] = min(due, self._dirty.get(key, due))
                return
            self._schedule(key, due)

    def get(self, timeout: float | None = None) -> tuple[str, float] | None:
        """Block until a key is due; returns ``(key, seconds it waited since due)``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded entry
                if self._heap and self._heap[0][0] <= now:
                    due, key = heapq.heappop(self._heap)
                    del self._due[key]
                    self._active.add(key)
                    return key, now - due
                wait = self._heap[0][0] - now if self._heap else None
                if deadline is not None:
                    left = deadline - now
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)
            return None

    def done(self, key: str) -> None:
        with self._cond:
            self._active.discard(key)
            if key in self._dirty:
                self._schedule(key, self._dirty.pop(key))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _schedule(self, key: str, due: float) -> None:
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, key))
        self._cond.notify()
