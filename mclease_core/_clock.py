"""Clocks: a monotonic one for every duration and deadline, a wall one only for timestamps.

Safety rules 1 and 5 (docs/safety.md): nothing in mclease compares a timestamp written by another
machine with the local clock. Durations are measured with :meth:`Clock.monotonic`;
:meth:`Clock.now` exists only to fill the ``renew_time`` and ``acquire_time`` fields people read.

:class:`FakeClock` lets tests move time by hand instead of sleeping.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences are meaningful."""

    def now(self) -> dt.datetime:
        """The wall-clock time in UTC, for timestamps written into records."""


class SystemClock:
    """The machine's clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FakeClock:
    """A clock that moves only when :meth:`advance` is called."""

    def __init__(self, start: float = 1000.0, wall: dt.datetime | None = None):
        self._lock = threading.Lock()
        self._monotonic = start
        self._wall = wall or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def now(self) -> dt.datetime:
        with self._lock:
            return self._wall

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        with self._lock:
            self._monotonic += seconds
            self._wall += dt.timedelta(seconds=seconds)


SYSTEM_CLOCK = SystemClock()
