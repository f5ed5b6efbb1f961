"""The global leader elector: one lease name, one identity, any :class:`Storage`.

It follows client-go's ``tools/leaderelection``: followers read the record once per retry period
and take it over only after seeing it unchanged for a lease duration on their own monotonic clock;
the leader renews with one conditional write from its cached version (the fast path) and re-reads
only when that write conflicts; a holder change bumps ``lease_transitions``; release is a
compare-and-swap that clears the holder.

Leadership is bounded by time, not by the loop: a term ends ``renew_deadline`` after the *sending*
of its last successful write, enforced by a watchdog thread even when a storage call hangs. Since
every other elector measures expiry from when it first *saw* that write, which is later, nobody can
take the lease over before ``lease_duration`` after that sending, and ``renew_deadline <
lease_duration`` keeps the two terms apart.

With a :class:`ChangeTracker` of the store (``changes``), a follower decides to wait from the record
the store's change feed reports instead of reading it, and wakes as soon as another writer changes
it (a release is taken at once, not a retry period later); a decision to write still reads first.
Then ``storage`` must be the tracker's :class:`TrackedStorage`, so the tracker knows this elector's
own writes.

What to do next is decided by the pure functions of ``_decisions``; this module does the I/O, the
waiting and the callbacks. For unit tests, :meth:`LeaderElector.try_acquire_or_renew` and
:meth:`LeaderElector.check_deadline` run one step each with an injected clock; :meth:`run` is the
loop that production uses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ._changes import ChangeTracker
from ._clock import SYSTEM_CLOCK, Clock
from ._decisions import (
    ElectorAction,
    Holder,
    LeaseTiming,
    Observation,
    decide,
    new_record,
    observe,
    released_record,
)
from ._errors import (
    ConfigurationError,
    LeaseAlreadyExistsError,
    LeaseConflictError,
    LeaseNotFoundError,
    MCLeaseError,
    OutcomeUnknownError,
    StorageError,
    StorageUnavailableError,
)
from ._instrumented import CountingStorage
from ._limits import excerpt
from ._storage import LeaseData, LeaseObject, Storage, validate_key
from ._watchdog import Term, TermKeeper, call_safely

log = logging.getLogger("mclease.elector")


@dataclasses.dataclass(frozen=True)
class LeadershipTerm:
    """One uninterrupted period of leadership.

    ``fencing_token`` grows with every term of a lease and is never reused: pass it with every
    write the leader makes to a shared resource, and have the resource refuse tokens lower than the
    highest it has seen (see docs/safety.md).
    """

    lease_name: str
    identity: str
    cluster: str
    fencing_token: int
    started_at: float
    """Monotonic time of the write that started the term."""


@dataclasses.dataclass
class ElectorCallbacks:
    """What the elector calls. They run on the elector's threads and must return promptly.

    ``on_stopped_leading`` runs before the lease is released, so stopping the work there (and only
    then returning) keeps the next leader from starting while this one still acts.
    """

    on_started_leading: Callable[[LeadershipTerm], None] | None = None
    on_stopped_leading: Callable[[LeadershipTerm, str], None] | None = None
    on_new_leader: Callable[[str, str], None] | None = None
    """Called with ``(identity, cluster)`` whenever the observed holder changes (also to us)."""


@dataclasses.dataclass(frozen=True)
class StepResult:
    """The result of one :meth:`LeaderElector.step`."""

    wrote: bool
    """This step's own compare-and-swap succeeded and started or extended the term."""
    leading: bool
    error: StorageError | None = None


class LeaderElector:
    """Elects one leader for ``name`` among all electors sharing ``storage``."""

    def __init__(
        self,
        storage: Storage,
        name: str,
        identity: str,
        *,
        cluster: str = "",
        timing: LeaseTiming | None = None,
        callbacks: ElectorCallbacks | None = None,
        release_on_stop: bool = True,
        clock: Clock = SYSTEM_CLOCK,
        jitter: float = 0.2,
        rng: random.Random | None = None,
        changes: ChangeTracker | None = None,
    ):
        if not identity:
            raise ValueError("an elector needs a non-empty identity")
        validate_key(name)
        self.timing = timing or LeaseTiming()
        _check_capabilities(storage, self.timing)
        self.storage = CountingStorage(storage)
        self.name = name
        self.identity = identity
        self.cluster = cluster
        self.callbacks = callbacks or ElectorCallbacks()
        self.release_on_stop = release_on_stop
        self.clock = clock
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.changes = changes
        self.reads_saved = 0
        """Decisions to wait taken from the change feed instead of a read."""

        self._lock = threading.RLock()
        self._terms = TermKeeper(
            clock,
            self._lock,
            on_ended=self._stopped_leading,
            expire=self.check_deadline,
            watchdog_name=f"mclease-watchdog-{name}",
        )
        self._cached: LeaseObject | None = None
        self._observation: Observation | None = None
        self._reported_leader: Holder | None = None
        self._next_wait = 0.0
        self._last_attempt: float | None = None
        self.last_error: StorageError | None = None
        self.fatal_error: ConfigurationError | None = None
        """Set when the store refused the configuration (say, no credentials): retrying cannot
        help, so :meth:`run` ends the term and returns; the caller reports it and exits."""
        self._reported_unexpected = False

        self._stopping = threading.Event()
        self._wakeup = threading.Event()
        """Set by :meth:`stop` and by a change of the record by another writer."""
        self._running = False
        self._thread: threading.Thread | None = None

    @property
    def me(self) -> Holder:
        return (self.cluster, self.identity)

    # ----- state -----------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """True while a term is active and its renew deadline has not passed."""
        return self._terms.leading()

    @property
    def term(self) -> LeadershipTerm | None:
        """The current term, if leading."""
        return self._terms.public()

    @property
    def observed_record(self) -> LeaseObject | None:
        with self._lock:
            return self._observation.record if self._observation else None

    def healthy(self) -> bool:
        """False when the loop has not completed an attempt for far longer than it should."""
        with self._lock:
            last = self._last_attempt
        if not self._running or last is None:
            return True
        allowed = 2 * self.timing.retry_period + self.storage.capabilities.operation_timeout + 1.0
        return self.clock.monotonic() - last <= allowed

    # ----- one step ------------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """Make one attempt to become or stay leader; return whether we lead afterwards."""
        return self.step().leading

    def step(self) -> StepResult:
        """Make one attempt to become or stay leader, and say whether this attempt's own
        compare-and-swap started or extended the term (``wrote``). A term whose deadline
        passed (say the process was paused before the watchdog could run) ends first: it is
        never revived by a late renewal."""
        self.check_deadline()
        with self._lock:
            term = self._terms.current()
            cached = self._cached
        try:
            with self._contained():
                wrote = None
                if term is not None and cached is not None and cached.data.holder == self.me:
                    wrote = self._renew_fast(term, cached)
                if wrote is None:
                    wrote = self._read_and_decide(term)
            return StepResult(wrote=wrote, leading=self.is_leader())
        except StorageError as exc:
            self._note_error(exc)
            return StepResult(wrote=False, leading=self.is_leader(), error=exc)
        except ConfigurationError as exc:
            self._fail(exc)
            return StepResult(wrote=False, leading=False)
        finally:
            with self._lock:
                self._last_attempt = self.clock.monotonic()

    def adopt_observation(self, other: LeaderElector) -> None:
        """Start from what ``other``, an elector of the same lease for another local candidate,
        has observed. The expiry clock of a record is this reader's, whoever it contends for:
        a new elector per candidate started it afresh, so two local candidates signalling in
        turn restarted it with every signal, and a record another cluster had long given up
        was never seen expired (found by the chaos runner: 10 s from heal to a leader against
        the 8 s bound, rescued only by the other cluster's release)."""
        if other.name != self.name or other.storage.inner is not self.storage.inner:
            raise ValueError("an observation is only adopted from an elector of the same lease")
        with other._lock:
            observation = other._observation
        with self._lock:
            self._observation = observation

    def observe(self) -> Observation | None:
        """Look at the record without contending: from the change feed when it knows the record,
        else read. Keeps the expiry clock and the new-leader callback up to date. Raises
        :class:`StorageError` when the read fails."""
        known, observation = self._observe_known()
        return observation if known else self._observe_read()

    def _observe_known(self) -> tuple[bool, Observation | None]:
        """``(True, observation)`` folded from the record the change feed reports, if it knows
        it; ``(False, None)`` otherwise."""
        if self.changes is None:
            return False, None
        known, record = self.changes.known(self.name)
        if not known:
            return False, None
        with self._lock:
            seen = self._observation.record.version if self._observation else None
        if seen is not None and (record is None or record.version < seen):
            return False, None  # older than what this elector saw: the feed is behind, read
        return True, self._fold(record)

    def _observe_read(self) -> Observation | None:
        with self._contained():
            current = self._read()
        return self._fold(current)

    def _fold(self, current: LeaseObject | None) -> Observation | None:
        now = self.clock.monotonic()
        with self._lock:
            self._observation = observe(self._observation, current, now)
            observation = self._observation
        self._report_leader(current)
        return observation

    def holder_expired(self) -> bool:
        """True when the observed record is released, or held by someone else and unchanged
        for its lease duration as measured here; False while it looks alive or is ours."""
        with self._lock:
            observation = self._observation
        if observation is None:
            return True
        data = observation.record.data
        if data.is_released:
            return True
        if data.holder == self.me:
            return False
        return self.clock.monotonic() >= observation.expires_at()

    def _renew_fast(self, term: Term, cached: LeaseObject) -> bool | None:
        """Renew from the cached version; ``None`` means 'conflict: re-read and decide'."""
        data = new_record(
            ElectorAction.RENEW, cached, self.me, self.timing.lease_duration, self.clock.now()
        )
        sent = self.clock.monotonic()
        try:
            written = self.storage.update(self.name, data, version=cached.version)
        except LeaseConflictError:
            log.info("renewal of %r conflicted; re-reading", self.name)
            return None
        except OutcomeUnknownError as exc:
            resolved = self._resolve_unknown(exc, data)
            if resolved is None:
                return None
            written = resolved
        return self._written(written, sent, ElectorAction.RENEW, term)

    def _read_and_decide(self, term: Term | None) -> bool:
        if term is None and self._wait_on_known():
            return False
        observation = self._observe_read()
        current = observation.record if observation is not None else None
        now = self.clock.monotonic()
        if term is not None and (current is None or current.data.holder != self.me):
            self._terms.end(term, "the lease record no longer names us")
            term = None
        decision = decide(observation, self.me, term is not None, now)
        if decision.action is ElectorAction.WAIT:
            self._next_wait = decision.wait
            return False
        log.debug("lease %r: %s (%s)", self.name, decision.action.value, decision.reason)
        data = new_record(
            decision.action, current, self.me, self.timing.lease_duration, self.clock.now()
        )
        sent = self.clock.monotonic()
        try:
            if current is None:
                written = self.storage.create(self.name, data)
            else:
                written = self.storage.update(self.name, data, version=current.version)
        except (LeaseConflictError, LeaseAlreadyExistsError):
            log.info("lease %r: lost the race to %s it", self.name, decision.action.value)
            self._next_wait = 0.0
            return False
        except OutcomeUnknownError as exc:
            resolved = self._resolve_unknown(exc, data)
            if resolved is None:
                return False
            written = resolved
        return self._written(written, sent, decision.action, term)

    def _wait_on_known(self) -> bool:
        """Whether the record the change feed reports says to wait: then no read is needed
        (waiting is safe whatever changed since; the feed wakes us when something did)."""
        known, observation = self._observe_known()
        if not known:
            return False
        decision = decide(observation, self.me, False, self.clock.monotonic())
        if decision.action is not ElectorAction.WAIT:
            return False  # about to write: read first, the absence of a change proves nothing
        self._next_wait = decision.wait
        self.reads_saved += 1
        return True

    def _read(self) -> LeaseObject | None:
        try:
            return self.storage.read(self.name)
        except LeaseNotFoundError:
            return None

    def _resolve_unknown(self, exc: OutcomeUnknownError, intended: LeaseData) -> LeaseObject | None:
        """A write may have committed: it did if the stored record is exactly what we wrote."""
        log.warning("lease %r: write outcome unknown (%s); re-reading to resolve", self.name, exc)
        current = self._read()
        if current is not None and current.data == intended:
            return current
        return None

    def _written(
        self, written: LeaseObject, sent: float, action: ElectorAction, term: Term | None
    ) -> bool:
        """Account for a successful write sent at monotonic time ``sent``; True if it started
        or extended a term."""
        now = self.clock.monotonic()
        deadline = sent + self.timing.renew_deadline
        started: LeadershipTerm | None = None
        with self._lock:
            self._cached = written
            self._observation = Observation(written, now)
            self.last_error = None
            if now >= deadline:
                return False  # too slow to count; the watchdog ends the term
            if action is ElectorAction.RENEW:
                if term is None or not self._terms.extend(term, deadline, sent=sent):
                    return False  # the term ended meanwhile; the next attempt starts a new one
            else:
                started = LeadershipTerm(
                    self.name, self.identity, self.cluster, written.fencing_token, sent
                )
                self._terms.start(started, deadline)
        self._report_leader(written)
        if started is not None:
            log.info(
                "lease %r: started leading as %r (fencing token %d)",
                self.name,
                self.identity,
                started.fencing_token,
            )
            self._call(self.callbacks.on_started_leading, started)
        return True

    def check_deadline(self) -> None:
        """End the current term if its renew deadline has passed (the watchdog calls this)."""
        self._terms.expire_if_due(f"no successful renewal within {self.timing.renew_deadline:g}s")

    def _stopped_leading(self, term: Term, reason: str, deliberate: bool) -> None:
        """The term ended (:class:`TermKeeper` runs this once per term)."""
        level = logging.INFO if deliberate else logging.WARNING
        log.log(level, "lease %r: stopped leading: %s", self.name, reason)
        self._call(self.callbacks.on_stopped_leading, term.public, reason)

    def release(self) -> bool:
        """End our term and give the lease up; True if released.

        The release is a compare-and-swap on the version this elector last saw (read or wrote),
        never on a fresh read: whoever judged that the lease may be released judged *that*
        version, and a record anyone changed since (a renewal by another replica of the same
        holder, a takeover) is left alone.
        """
        self._terms.end_current("released", deliberate=True)
        with self._terms.after_ending():  # an end in progress on another thread (stop()) first
            with self._lock:
                observation = self._observation
            return self._release(observation)

    def _release(self, observation: Observation | None) -> bool:
        if observation is None or observation.record.data.holder != self.me:
            return False
        try:
            with self._contained():
                released = release_observed(
                    self.storage, self.name, observation.record, self.clock.now()
                )
        except StorageError as exc:
            self._note_error(exc)
            return False
        except ConfigurationError as exc:
            self._fail(exc)
            return False
        if released is None:
            log.warning("lease %r: not released: the record changed since it was read", self.name)
            return False
        now = self.clock.monotonic()
        with self._lock:
            self._cached = None
            self._observation = Observation(released, now)
        log.info("lease %r: released", self.name)
        return True

    # ----- the loop ------------------------------------------------------------------------------

    def next_wait(self) -> float:
        """Seconds until the next attempt: the retry period (jittered for followers), or sooner
        when the observed lease expires first."""
        period = self.timing.retry_period
        if self.is_leader():
            return period
        jittered = period * (1.0 + self.jitter * self._rng.random())
        if self._next_wait > 0:
            return min(jittered, self._next_wait + 0.001)
        return jittered

    def run(self) -> None:
        """Campaign and lead until :meth:`stop`; then end the term and, by default, release."""
        self._terms.start_watchdog()
        self._running = True
        unsubscribe = self.changes.subscribe(self._changed) if self.changes else None
        try:
            while not self._stopping.is_set() and self.fatal_error is None:
                self._next_wait = 0.0
                self._wakeup.clear()
                if self._stopping.is_set():  # stop() between the check and the clear
                    break
                self.try_acquire_or_renew()
                if self.fatal_error is None:
                    self._wakeup.wait(self.next_wait())
        finally:
            if unsubscribe is not None:
                unsubscribe()
            self._running = False
            self._stopping.set()
            self._terms.stop_watchdog()
            self._terms.end_current("elector stopped", deliberate=True)
            if self.release_on_stop and self.fatal_error is None:
                self.release()

    def _changed(self, key: str) -> None:
        if key == self.name and not self.is_leader():  # a leader renews on its own schedule
            self._wakeup.set()

    def start(self) -> LeaderElector:
        """Run :meth:`run` in a background thread."""
        if self._thread is not None:
            raise RuntimeError("this elector was already started")
        self._thread = threading.Thread(
            target=self.run, name=f"mclease-elector-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """End the term now, stop the loop, release if configured, and wait up to ``timeout``."""
        self._stopping.set()
        self._wakeup.set()
        self._terms.end_current("elector stopped", deliberate=True)
        if self._terms.in_callback():
            return  # called from on_stopped_leading: the loop waits for that callback to return
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def term_deadline(self) -> float | None:
        """The monotonic time the current term ends unless renewed, or ``None`` when not
        leading. Anything that acts for the leader must have stopped by then."""
        return self._terms.deadline()

    def running(self) -> bool:
        """True while :meth:`run` is campaigning or leading."""
        return self._running

    # ----- helpers -------------------------------------------------------------------------------

    def _report_leader(self, record: LeaseObject | None) -> None:
        if record is None or record.data.is_released:
            return
        holder = record.data.holder
        with self._lock:
            if holder == self._reported_leader:
                return
            self._reported_leader = holder
        self._call(self.callbacks.on_new_leader, holder[1], holder[0])

    @contextlib.contextmanager
    def _contained(self) -> Iterator[None]:
        """Errors a backend should have mapped but did not: retried as unavailable (the term ends
        at its deadline meanwhile), with the traceback logged once for the backend's authors."""
        try:
            yield
        except MCLeaseError:
            raise
        except Exception as exc:
            if not self._reported_unexpected:
                self._reported_unexpected = True
                log.error(
                    "lease %r: the storage backend raised an unexpected %s; treating the store as "
                    "unavailable (this is a bug in the backend: it should raise mclease errors)",
                    self.name,
                    type(exc).__name__,
                    exc_info=True,
                )
            raise StorageUnavailableError(
                f"unexpected error from the store: {type(exc).__name__}: {excerpt(str(exc))}",
                key=self.name,
            ) from exc

    def _fail(self, exc: ConfigurationError) -> None:
        """The store refused our configuration: end the term and stop campaigning."""
        log.error("lease %r: %s; stopping", self.name, exc)
        with self._lock:
            self.fatal_error = exc
            term = self._terms.current()
        if term is not None:
            self._terms.end(term, f"configuration error: {exc}")
        self._stopping.set()
        self._wakeup.set()

    def _note_error(self, exc: StorageError) -> None:
        with self._lock:
            self.last_error = exc
        log.warning("lease %r: storage error: %s", self.name, exc)

    def _call(self, callback: Callable[..., None] | None, *args: Any) -> None:
        call_safely(log, f"lease {self.name!r}", callback, *args)


def _check_capabilities(storage: Storage, timing: LeaseTiming) -> None:
    capabilities = storage.capabilities
    if timing.retry_period < capabilities.min_write_interval:
        raise ConfigurationError(
            f"retry_period {timing.retry_period:g}s is shorter than this backend's minimum "
            f"write interval of {capabilities.min_write_interval:g}s per record; a leader renews "
            "once per retry period, so raise retry_period"
        )
    if capabilities.may_lose_writes:
        log.warning(
            "this store can lose acknowledged writes (on a failover or restart, see its "
            "documentation): two leaders and repeated fencing tokens are possible after such a loss"
        )


def release_observed(
    storage: Storage, name: str, record: LeaseObject, wall_now: dt.datetime
) -> LeaseObject | None:
    """Give up ``record`` with a compare-and-swap on its version: the released record, or ``None``
    when the stored record is no longer that version (or the outcome is unknown; a release is
    never assumed)."""
    try:
        return storage.update(name, released_record(record, wall_now), version=record.version)
    except (LeaseConflictError, OutcomeUnknownError) as exc:
        log.info("lease %r: release did not happen: %s", name, exc)
        return None
