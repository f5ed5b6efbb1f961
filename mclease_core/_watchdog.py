"""The thread that ends a leadership term on time, whatever the election loop is doing.

Both electors (the global :class:`LeaderElector` and the candidate-side ``CandidateElector``)
decide leadership in a loop that may be stuck in an I/O call; their terms must still end at their
deadline. :class:`TermWatchdog` sleeps until the current deadline (``deadline()``), calls
``expire()``, and is woken with :meth:`wake` whenever the term changes.

Also here: :func:`call_safely`, how both run user callbacks (a failing callback is logged, never
propagated into the election loop).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ._clock import Clock


class TermWatchdog:
    def __init__(
        self,
        deadline: Callable[[], float | None],
        expire: Callable[[], None],
        clock: Clock,
        name: str,
    ):
        self._deadline = deadline
        self._expire = expire
        self._clock = clock
        self._name = name
        self._changed = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """The term changed: recompute when to wake up."""
        self._changed.set()

    def stop(self) -> None:
        self._stopping.set()
        self._changed.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            deadline = self._deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._clock.monotonic())
            self._changed.wait(timeout)
            self._changed.clear()
            self._expire()


def call_safely(
    log: logging.Logger, what: str, callback: Callable[..., Any] | None, *args: Any
) -> None:
    """Run a user callback; log its exception instead of raising it."""
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:
        log.exception("%s: callback %s failed", what, getattr(callback, "__name__", callback))
