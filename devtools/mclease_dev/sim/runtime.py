"""The simulated machine room: one true clock, processes with their own clocks, cooperative threads.

Every simulated thread is a greenlet; exactly one runs at a time and it runs until it blocks (a
sleep, a wait on a lock, an event or a condition, a request on the simulated network). Blocking
parks the greenlet on the *hub*, which keeps one heap of wake-ups ordered by (true time, sequence
number) and resumes them one by one. Nothing depends on the host's clock or scheduler, so a seed
fixes the whole run.

A :class:`SimProcess` has its own monotonic clock (an origin and a rate, within the margin the
safety rules assume) and its own wall clock (an offset that faults step). Pausing a process
(SIGSTOP) defers every wake-up of its threads until it resumes; crashing it (kill -9) drops them
for good. Product code reads clocks and makes threads through module attributes (``time``,
``threading``, ``random``), which :func:`patched` points at the shims here for the duration of a
run: the product runs unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import heapq
import itertools
import random as _random
import time as _time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import SimpleNamespace
from typing import Any

import greenlet  # type: ignore[import-untyped]

EPOCH = dt.datetime(2026, 6, 1, tzinfo=dt.UTC).timestamp()
"""True time 0 on the wall clocks of correct machines."""


class Halted(BaseException):
    """Raised in a simulated thread whose process died or whose world ended: unwinds it."""


_TIMEOUT = object()


class World:
    """True time, the wake-up heap, the processes and the trace of one simulated run."""

    current: World | None = None

    def __init__(self, seed: int, *, trace_limit: int = 4000):
        self.seed = seed
        self.rng = _random.Random(seed)
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.processes: list[SimProcess] = []
        self.trace: list[str] = []
        self.trace_limit = trace_limit
        self.closed = False
        self.thread_errors: list[str] = []
        self.steps = 0
        self.stop_at = float("inf")
        """Set by a probe once everything the checkers need has happened."""
        self._hub: greenlet.greenlet | None = None

    # ----- scheduling ---------------------------------------------------------------------------

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` on the hub at true time ``when`` (never before now)."""
        heapq.heappush(self._heap, (max(when, self.now), next(self._seq), action))

    def after(self, seconds: float, action: Callable[[], None]) -> None:
        self.at(self.now + seconds, action)

    def run_until(self, end: float) -> None:
        """Run the heap up to true time ``end`` or an earlier :attr:`stop_at`."""
        self._hub = greenlet.getcurrent()
        while self._heap and self._heap[0][0] <= min(end, self.stop_at):
            when, _, action = heapq.heappop(self._heap)
            self.now = when
            self.steps += 1
            action()
        self.now = max(self.now, min(end, self.stop_at))

    def close(self) -> None:
        """Unwind every thread still parked, so no frame of this world outlives it."""
        self.closed = True
        for process in self.processes:
            process.alive = False
            for thread in process.threads:
                if thread.glet is not None and not thread.glet.dead:
                    with suppress(Halted):
                        thread.glet.throw(Halted)
        self._heap.clear()

    def note(self, text: str) -> None:
        if not self.closed and len(self.trace) < self.trace_limit:
            self.trace.append(f"{self.now:10.3f}  {text}")

    # ----- the running thread -------------------------------------------------------------------

    def hub(self) -> greenlet.greenlet:
        assert self._hub is not None
        return self._hub


def world() -> World:
    assert World.current is not None, "not inside a simulated run"
    return World.current


def current_thread() -> SimThread:
    glet = greenlet.getcurrent()
    thread = getattr(glet, "sim_thread", None)
    if thread is None:
        raise RuntimeError("product code ran outside a simulated thread")
    return thread  # type: ignore[no-any-return]


def current_process() -> SimProcess:
    return current_thread().process


class Wakeup:
    """One parked thread's ticket: the first of its timer or a notification resumes it."""

    __slots__ = ("fired", "thread")

    def __init__(self, thread: SimThread):
        self.thread = thread
        self.fired = False

    def fire(self, value: Any = None) -> None:
        if self.fired:
            return
        self.fired = True
        w = self.thread.process.world
        if not w.closed:
            w.at(w.now, lambda: self.thread.resume(value))


def park(until: float | None = None) -> Any:
    """Block the current thread until a notification (its value) or true time ``until``
    (``_TIMEOUT``); the caller registered the ticket wherever notifications come from."""
    thread = current_thread()
    ticket = thread.ticket = Wakeup(thread)
    return _switch_out(thread, ticket, until)


def _switch_out(thread: SimThread, ticket: Wakeup, until: float | None) -> Any:
    w = thread.process.world
    if w.closed or not thread.process.alive:
        raise Halted
    if until is not None:
        w.at(until, lambda: ticket.fire(_TIMEOUT))
    value = w.hub().switch()
    if w.closed or not thread.process.alive:
        raise Halted
    return value


def sleep_true(seconds: float) -> None:
    """Sleep ``seconds`` of true time."""
    w = current_process().world
    park(w.now + max(0.0, seconds))


class SimThread:
    """``threading.Thread`` for simulated processes."""

    _ids = itertools.count(1)

    def __init__(
        self,
        group: Any = None,
        target: Callable[..., Any] | None = None,
        name: str | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        daemon: bool | None = None,
        process: SimProcess | None = None,
    ):
        self._target = target
        self._args = args
        self._kwargs = kwargs or {}
        self.ident = next(self._ids)
        self.name = name or f"Thread-{self.ident}"
        self.daemon = bool(daemon)
        self.process = process if process is not None else current_process()
        self.glet: greenlet.greenlet | None = None
        self.ticket: Wakeup | None = None
        self._started = False
        self._finished = False
        self._joiners: list[Wakeup] = []

    def start(self) -> None:
        if self._started:
            raise RuntimeError("threads can only be started once")
        self._started = True
        process = self.process
        if not process.alive:
            return
        self.glet = greenlet.greenlet(self._bootstrap, parent=process.world.hub())
        self.glet.sim_thread = self
        process.threads.append(self)
        process.world.at(process.world.now, lambda: self.resume(None))

    def run(self) -> None:
        if self._target is not None:
            self._target(*self._args, **self._kwargs)

    def _bootstrap(self, _: Any) -> None:
        try:
            self.run()
        except Halted:
            pass
        except BaseException:
            w = self.process.world
            if w.closed or not self.process.alive:
                return  # unwinding a killed process or a finished world
            text = traceback.format_exc(limit=8)
            w.thread_errors.append(f"{self.process.name}/{self.name}: {text}")
            w.note(f"{self.process.name}: thread {self.name} died: {text.splitlines()[-1]}")
        finally:
            self._finished = True
            for joiner in self._joiners:
                joiner.fire(True)

    def resume(self, value: Any) -> None:
        """On the hub: continue this thread, unless its process is paused (later) or dead."""
        process = self.process
        if not process.alive or self.glet is None or self.glet.dead:
            return
        if process.paused:
            process.deferred.append((self, value))
            return
        self.glet.switch(value)

    def is_alive(self) -> bool:
        return self._started and not self._finished and self.process.alive

    def join(self, timeout: float | None = None) -> None:
        if self._finished or not self._started:
            return
        thread = current_thread()
        ticket = thread.ticket = Wakeup(thread)
        self._joiners.append(ticket)
        until = None if timeout is None else thread.process.true_after(timeout)
        _switch_out(thread, ticket, until)

    @property
    def native_id(self) -> int:
        return self.ident


@dataclasses.dataclass(eq=False)
class SimProcess:
    """A process on its own machine: its clocks, its threads, whether it runs."""

    world: World
    name: str
    rate: float = 1.0
    """Monotonic seconds per true second (the machine's clock rate)."""
    mono_origin: float = 1000.0
    wall_offset: float = 0.0
    """Seconds the wall clock is ahead of true time."""
    alive: bool = True
    paused: bool = False
    threads: list[SimThread] = dataclasses.field(default_factory=list)
    deferred: list[tuple[SimThread, Any]] = dataclasses.field(default_factory=list)
    abandoned: Any = None
    """This process's ``_client._abandoned`` semaphore (it is per OS process in real life)."""
    on_crash: list[Callable[[], None]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.world.processes.append(self)
        self.abandoned = SimBoundedSemaphore(16, process=self)

    def monotonic(self) -> float:
        return self.mono_origin + self.world.now * self.rate

    def wall(self) -> float:
        return EPOCH + self.world.now + self.wall_offset

    def true_after(self, seconds: float) -> float:
        """The true time at which ``seconds`` will have passed on this process's clock."""
        return self.world.now + max(0.0, seconds) / self.rate

    def true_of(self, monotonic: float) -> float:
        """The true time this process's monotonic clock reads ``monotonic``."""
        return (monotonic - self.mono_origin) / self.rate

    def spawn(self, target: Callable[[], Any], name: str) -> SimThread:
        thread = SimThread(target=target, name=name, daemon=True, process=self)
        thread.start()
        return thread

    def pause(self) -> None:
        self.paused = True
        self.world.note(f"{self.name}: paused")

    def resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        deferred, self.deferred = self.deferred, []
        self.world.note(f"{self.name}: resumed")
        for thread, value in deferred:
            self.world.at(self.world.now, functools.partial(thread.resume, value))

    def crash(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self.deferred.clear()
        self.world.note(f"{self.name}: killed")
        for hook in self.on_crash:
            hook()


# ----- synchronization primitives ---------------------------------------------------------------


class SimLock:
    """``threading.Lock``: handed to the first waiter on release."""

    _reentrant = False

    def __init__(self) -> None:
        self._owner: SimThread | None = None
        self._count = 0
        self._waiters: list[Wakeup] = []

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        thread = current_thread()
        if self._owner is None:
            self._owner, self._count = thread, 1
            return True
        if self._reentrant and self._owner is thread:
            self._count += 1
            return True
        if not blocking:
            return False
        ticket = thread.ticket = Wakeup(thread)
        self._waiters.append(ticket)
        until = None if timeout is None or timeout < 0 else thread.process.true_after(timeout)
        got = _switch_out(thread, ticket, until)
        if got is _TIMEOUT:
            if ticket in self._waiters:
                self._waiters.remove(ticket)
            return self._owner is thread  # handed over in the same instant as the timeout
        return True

    def release(self) -> None:
        if self._owner is None:
            raise RuntimeError("release unlocked lock")
        self._count -= 1
        if self._count:
            return
        self._owner = None
        while self._waiters:
            ticket = self._waiters.pop(0)
            if ticket.fired or not ticket.thread.process.alive:
                continue
            self._owner, self._count = ticket.thread, 1
            ticket.fire(True)
            return

    def locked(self) -> bool:
        return self._owner is not None

    def _is_owned(self) -> bool:
        try:
            return self._owner is current_thread()
        except RuntimeError:
            return False

    def _release_all(self) -> int:
        count, self._count = self._count, 1
        self.release()
        return count

    def _reacquire(self, count: int) -> None:
        self.acquire()
        self._count = count

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class SimRLock(SimLock):
    _reentrant = True


class SimCondition:
    def __init__(self, lock: SimLock | None = None):
        self._lock = lock if lock is not None else SimRLock()
        self._waiters: list[Wakeup] = []

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        thread = current_thread()
        ticket = thread.ticket = Wakeup(thread)
        self._waiters.append(ticket)
        count = self._lock._release_all()
        until = None if timeout is None else thread.process.true_after(timeout)
        try:
            got = _switch_out(thread, ticket, until)
        finally:
            if ticket in self._waiters:
                self._waiters.remove(ticket)
        self._lock._reacquire(count)
        return got is not _TIMEOUT

    def notify(self, n: int = 1) -> None:
        while n and self._waiters:
            ticket = self._waiters.pop(0)
            if not ticket.fired:
                ticket.fire(True)
                n -= 1

    def notify_all(self) -> None:
        self.notify(len(self._waiters))


class SimEvent:
    def __init__(self) -> None:
        self._flag = False
        self._waiters: list[Wakeup] = []

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        waiters, self._waiters = self._waiters, []
        for ticket in waiters:
            ticket.fire(True)

    def clear(self) -> None:
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        thread = current_thread()
        ticket = thread.ticket = Wakeup(thread)
        self._waiters.append(ticket)
        until = None if timeout is None else thread.process.true_after(timeout)
        try:
            _switch_out(thread, ticket, until)
        finally:
            if ticket in self._waiters:
                self._waiters.remove(ticket)
        return self._flag


class SimBoundedSemaphore:
    def __init__(self, value: int = 1, *, process: SimProcess | None = None):
        self._value = self._initial = value
        self._waiters: list[Wakeup] = []

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        if self._value > 0:
            self._value -= 1
            return True
        if not blocking:
            return False
        thread = current_thread()
        ticket = thread.ticket = Wakeup(thread)
        self._waiters.append(ticket)
        until = None if timeout is None else thread.process.true_after(timeout)
        got = _switch_out(thread, ticket, until)
        if got is _TIMEOUT:
            if ticket in self._waiters:
                self._waiters.remove(ticket)
            return False
        return True

    def release(self) -> None:
        while self._waiters:
            ticket = self._waiters.pop(0)
            if not ticket.fired:
                ticket.fire(True)
                return
        if self._value >= self._initial:
            raise ValueError("semaphore released too many times")
        self._value += 1


class _PerProcessSemaphore:
    """``_client._abandoned``: one semaphore per simulated process."""

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        return bool(current_process().abandoned.acquire(blocking, timeout))

    def release(self) -> None:
        current_process().abandoned.release()


# ----- the module shims -------------------------------------------------------------------------


def _sleep(seconds: float) -> None:
    process = current_process()
    park(process.true_after(seconds))


def _monotonic() -> float:
    return current_process().monotonic()


def _wall() -> float:
    return current_process().wall()


TIME = SimpleNamespace(
    monotonic=_monotonic,
    perf_counter=_monotonic,
    time=_wall,
    sleep=_sleep,
    gmtime=_time.gmtime,
    strftime=_time.strftime,
)

THREADING = SimpleNamespace(
    Thread=SimThread,
    Lock=SimLock,
    RLock=SimRLock,
    Event=SimEvent,
    Condition=SimCondition,
    BoundedSemaphore=SimBoundedSemaphore,
    current_thread=current_thread,
    get_ident=lambda: current_thread().ident,
)


def _draw() -> float:
    return world().rng.random()


RANDOM = SimpleNamespace(
    random=_draw,
    uniform=lambda a, b: world().rng.uniform(a, b),
    Random=lambda seed=None: _random.Random(world().rng.getrandbits(64)),
)


def wall_datetime() -> dt.datetime:
    return dt.datetime.fromtimestamp(current_process().wall(), dt.UTC)


@contextmanager
def patched(targets: dict[Any, dict[str, Any]]) -> Iterator[None]:
    """Set ``attribute = value`` on each target for the duration; restore them afterwards."""
    saved: list[tuple[Any, str, Any]] = []
    try:
        for target, attributes in targets.items():
            for name, value in attributes.items():
                saved.append((target, name, getattr(target, name)))
                setattr(target, name, value)
        yield
    finally:
        for target, name, value in reversed(saved):
            setattr(target, name, value)
