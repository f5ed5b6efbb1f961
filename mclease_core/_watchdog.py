"""A leadership term and its end on time, whatever the election loop is doing.

Both electors (the global :class:`LeaderElector` and the candidate-side ``CandidateElector``)
keep their current term in a :class:`TermKeeper`: it starts and is extended after a successful
(for a candidate: confirmed) call, with a deadline ``renew_deadline`` after that call was sent,
and leadership ends at that deadline on the monotonic clock. The electors decide leadership in a
loop that may be stuck in an I/O call, so the keeper's :class:`TermWatchdog` thread sleeps until
the current deadline and ends the term then; it is woken whenever the term changes.

:class:`TermEnding` makes the end of a term happen once, on whichever thread gets there first
(the loop, ``stop()``, the watchdog), and keeps a release from overtaking an
``on_stopped_leading`` still running on another thread. :func:`call_safely` is how both run user
callbacks (a failing callback is logged, never propagated into the election loop).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._clock import Clock

if TYPE_CHECKING:
    from ._elector import LeadershipTerm


@dataclasses.dataclass
class Term:
    """The current term: what the elector shows (``public``) and when it ends unless extended
    (``deadline``, monotonic)."""

    public: LeadershipTerm
    deadline: float


class TermKeeper:
    """The current term of one elector, ended by its deadline whatever the loop is doing.

    ``lock`` is the elector's own (reentrant) lock, so the elector can change the term together
    with the rest of its state. ``on_ended(term, reason, deliberate)`` runs once per term, on the
    thread that ends it: it calls ``on_stopped_leading``, which stops the work. What tells others
    that the work stopped (a release) runs inside :meth:`after_ending`, which waits for it.
    ``expire`` is what the watchdog calls when the deadline may have passed: the elector's
    ``check_deadline``, which calls :meth:`expire_if_due` with its reason.
    """

    def __init__(
        self,
        clock: Clock,
        lock: threading.RLock,
        *,
        on_ended: Callable[[Term, str, bool], None],
        expire: Callable[[], None],
        watchdog_name: str,
    ):
        self._clock = clock
        self._lock = lock
        self._on_ended = on_ended
        self._term: Term | None = None
        self._ending = TermEnding()
        self._watchdog = TermWatchdog(self.deadline, expire, clock, watchdog_name)

    def current(self) -> Term | None:
        """The term not yet ended (its deadline may have passed: see :meth:`leading`)."""
        with self._lock:
            return self._term

    def leading(self) -> bool:
        """True while a term is active and its deadline has not passed."""
        term = self.current()
        return term is not None and self._clock.monotonic() < term.deadline

    def public(self) -> LeadershipTerm | None:
        """The current term as users see it, while leading."""
        term = self.current()
        return term.public if term is not None and self.leading() else None

    def deadline(self) -> float | None:
        """The monotonic time the current term ends unless extended; ``None`` when there is
        none."""
        with self._lock:
            return self._term.deadline if self._term is not None else None

    def start(self, public: LeadershipTerm, deadline: float) -> Term:
        with self._lock:
            self._term = Term(public, deadline)
            self._watchdog.wake()
            return self._term

    def extend(self, term: Term, deadline: float, *, sent: float) -> bool:
        """Move ``term``'s deadline to ``deadline`` (never earlier), earned by a call sent at
        monotonic time ``sent``. False if ``term`` has ended meanwhile, or if its deadline had
        passed before ``sent`` (a process paused past it, so no watchdog ended it yet): the
        term was not covered in between, so only a new term can follow, never a revived one,
        and ``on_stopped_leading`` and ``on_started_leading`` run in between."""
        with self._lock:
            if self._term is not term or sent >= term.deadline:
                return False
            term.deadline = max(term.deadline, deadline)
            self._watchdog.wake()
            return True

    def end(self, term: Term, reason: str, *, deliberate: bool = False) -> None:
        """End ``term`` unless it has ended already, and run ``on_ended`` for it."""
        with self._ending.ending():
            with self._lock:
                if self._term is not term:
                    return
                self._term = None
                self._watchdog.wake()
            self._on_ended(term, reason, deliberate)

    def end_current(self, reason: str, *, deliberate: bool = False) -> None:
        term = self.current()
        if term is not None:
            self.end(term, reason, deliberate=deliberate)

    def expire_if_due(self, reason: str) -> None:
        """End the current term if its deadline has passed."""
        term = self.current()
        if term is not None and self._clock.monotonic() >= term.deadline:
            self.end(term, reason)

    def after_ending(self) -> contextlib.AbstractContextManager[None]:
        """Hold for what must follow any ending in progress (a release)."""
        return self._ending.after()

    def in_callback(self) -> bool:
        """True on the thread running ``on_ended`` (a callback that calls ``stop()``)."""
        return self._ending.in_callback()

    def start_watchdog(self) -> None:
        self._watchdog.start()

    def stop_watchdog(self) -> None:
        self._watchdog.stop()


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
