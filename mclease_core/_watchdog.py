"""The thread that ends a leadership term on time, whatever the election loop is doing.

Both electors (the global :class:`LeaderElector` and the candidate-side ``CandidateElector``)
decide leadership in a loop that may be stuck in an I/O call; their terms must still end at their
deadline. :class:`TermWatchdog` sleeps until the current deadline (``deadline()``), calls
``expire()``, and is woken with :meth:`wake` whenever the term changes.

Also here: :class:`TermEnding`, which keeps a release from overtaking the end of a term whose
``on_stopped_leading`` is still running on another thread, and :func:`call_safely`, how both run
user callbacks (a failing callback is logged, never propagated into the election loop).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
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


class TermEnding:
    """The end of a term (``on_stopped_leading``, which stops the work) happens before anything
    that must follow it, whichever threads they run on.

    ``stop()`` ends the term on the caller's thread while the election loop's thread, woken by the
    same stop, goes on to release: without this, the release (which tells the controller, or the
    other electors, that the work has stopped) could be written while the callback still stops
    the work.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._owner: int | None = None

    @contextlib.contextmanager
    def ending(self) -> Iterator[None]:
        """Hold while deciding that the term ends and while its callback runs."""
        with self._lock:
            outer = self._owner is None
            if outer:
                self._owner = threading.get_ident()
            try:
                yield
            finally:
                if outer:
                    self._owner = None

    @contextlib.contextmanager
    def after(self) -> Iterator[None]:
        """Hold for what must follow any ending in progress (a release)."""
        with self._lock:
            yield

    def in_callback(self) -> bool:
        """True on the thread running an ending (a callback that calls ``stop()``): it must not
        wait for the loop, which waits for it."""
        return self._owner == threading.get_ident()


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
