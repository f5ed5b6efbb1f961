"""``CandidateElector``: the candidate-side elector the standard Python one lacks.

It drives a :class:`MultiClusterLeaseLock` like ``kubernetes.leaderelection`` does (signal, then
wait for the controller's confirmation), and adds what that elector does not have:

- leadership bounded on the monotonic clock: a term ends ``renew_deadline`` after the start of its
  last confirmed call, enforced by a watchdog thread even if an API call hangs (the standard
  elector can act up to ``2C + P + R`` after it; both stay below ``D``, see docs/safety.md);
- the fencing token of each term (``LeadershipTerm.fencing_token``, from ``status.fencingToken``);
- an on-new-leader callback, fed from the global holder the controller publishes;
- re-campaigning after a loss, and release on stop: it ends the term first (the callback stops
  the work), then writes an empty holder so the controller frees the global lease at once.

Not here: the controller, and the lock's protocol (``_lock``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any

from .._elector import ElectorCallbacks, LeadershipTerm
from .._watchdog import TermEnding, TermWatchdog, call_safely
from ._lock import MultiClusterLeaseLock

log = logging.getLogger("mclease.candidate")


@dataclasses.dataclass
class _Term:
    public: LeadershipTerm
    deadline: float


class CandidateElector:
    """Campaigns with ``lock`` until :meth:`stop`, leading whenever the controller confirms it."""

    def __init__(
        self,
        lock: MultiClusterLeaseLock,
        *,
        callbacks: ElectorCallbacks | None = None,
        release_on_stop: bool = True,
    ):
        self.lock = lock
        lock.bind_elector()
        self.timing = lock.timing
        self.clock = lock.clock
        self.callbacks = callbacks or ElectorCallbacks()
        self.release_on_stop = release_on_stop
        self._lock = threading.Lock()
        self._term: _Term | None = None
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0
        self._reported: str | None = None
        self._stopping = threading.Event()
        self._ending = TermEnding()
        self._watchdog = TermWatchdog(
            self.term_deadline, self.check_deadline, self.clock, "mclease-candidate-watchdog"
        )
        self._thread: threading.Thread | None = None

    # ----- state -----------------------------------------------------------------------------

    def is_leader(self) -> bool:
        with self._lock:
            term = self._term
        return term is not None and self.clock.monotonic() < term.deadline

    @property
    def term(self) -> LeadershipTerm | None:
        """The current term; its ``fencing_token`` is the latest one (it grows when the controller
        re-acquires the global lease mid-term, say after a controller restart): read it before
        each fenced write rather than keeping the one ``on_started_leading`` got."""
        with self._lock:
            term = self._term
        return term.public if term is not None and self.is_leader() else None

    # ----- one attempt -----------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One attempt: signal if we lead, if nobody does, or if the leader's status has not
        changed for a lease duration; return whether we lead afterwards."""
        lock = self.lock
        if not self.is_leader():
            lock.end_term()  # a campaign: a term the lock confirmed but we never started is over
        found, record = lock.get(lock.name, lock.namespace)
        now = self.clock.monotonic()
        if not found:
            if getattr(record, "status", None) != 404:
                return self.is_leader()
            confirmed = lock.create(lock.name, lock.namespace, None)
        else:
            holder = record.holder_identity or ""
            self._observe(holder, record.renew_time or "", now)
            if not self._may_signal(holder, now):
                self._end_if_leading("another candidate leads")
                return False
            confirmed = lock.update(lock.name, lock.namespace, None)
        if confirmed:
            self._confirmed()
        elif found and record.holder_identity not in (None, "", lock.identity):
            self._end_if_leading("another candidate leads")
        return self.is_leader()

    def _may_signal(self, holder: str, now: float) -> bool:
        if holder in ("", self.lock.identity):
            return True
        return now - self._observed_at >= self.timing.lease_duration

    def _observe(self, holder: str, renew_time: str, now: float) -> None:
        if (holder, renew_time) != self._observed:
            self._observed = (holder, renew_time)
            self._observed_at = now
        if holder and holder != self._reported:
            self._reported = holder
            view = self.lock.last_status
            cluster = view.global_holder_cluster if view is not None else ""
            identity = holder.rsplit("/", 1)[-1]
            self._call(self.callbacks.on_new_leader, identity, cluster)

    def _confirmed(self) -> None:
        confirmation = self.lock.last_confirmation
        if confirmation is None:
            return
        deadline = confirmation.signalled_at + self.timing.renew_deadline
        token = confirmation.fencing_token if confirmation.fencing_token is not None else -1
        started: LeadershipTerm | None = None
        ended: tuple[_Term, str] | None = None
        with self._lock:
            term = self._term
            if term is not None and 0 <= token < term.public.fencing_token:
                ended = (
                    term,
                    f"the fencing token went down ({term.public.fencing_token} to "
                    f"{token}): the global store lost writes",
                )
            elif term is not None:
                term.deadline = max(term.deadline, deadline)
                if token != term.public.fencing_token and token >= 0:
                    log.info(
                        "%s: the controller re-acquired the global lease; the term goes on "
                        "with fencing token %d (was %d)",
                        self.lock.describe(),
                        token,
                        term.public.fencing_token,
                    )
                    term.public = dataclasses.replace(term.public, fencing_token=token)
            elif self.clock.monotonic() < deadline:
                started = LeadershipTerm(
                    self.lock.name, self.lock.identity, "", token, confirmation.signalled_at
                )
                self._term = _Term(started, deadline)
            self._watchdog.wake()
        if ended is not None:
            self._end(*ended)
            return
        if started is not None:
            log.info(
                "%s: started leading (fencing token %d)",
                self.lock.describe(),
                started.fencing_token,
            )
            self._call(self.callbacks.on_started_leading, started)

    def check_deadline(self) -> None:
        with self._lock:
            term = self._term
        if term is not None and self.clock.monotonic() >= term.deadline:
            self._end(term, f"no confirmed renewal within {self.timing.renew_deadline:g}s")

    def _end_if_leading(self, reason: str) -> None:
        with self._lock:
            term = self._term
        if term is not None:
            self._end(term, reason)

    def _end(self, term: _Term, reason: str) -> None:
        with self._ending.ending():
            with self._lock:
                if self._term is not term:
                    return
                self._term = None
                self._watchdog.wake()
            self.lock.end_term()
            log.warning("%s: stopped leading: %s", self.lock.describe(), reason)
            self._call(self.callbacks.on_stopped_leading, term.public, reason)

    # ----- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        self._watchdog.start()
        try:
            while not self._stopping.is_set():
                self.try_acquire_or_renew()
                self._stopping.wait(self.timing.retry_period)
        finally:
            self._stopping.set()
            self._watchdog.stop()
            self._end_if_leading("elector stopped")
            if self.release_on_stop:
                with self._ending.after():  # the release says the work has stopped: wait for it
                    self.lock.release()

    def start(self) -> CandidateElector:
        self._thread = threading.Thread(target=self.run, name="mclease-candidate", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """End the term now (the callback runs), then stop the loop and release."""
        self._stopping.set()
        self._end_if_leading("elector stopped")
        if self._ending.in_callback():
            return  # called from on_stopped_leading: the loop waits for that callback to return
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def term_deadline(self) -> float | None:
        """The monotonic time the current term ends unless renewed; ``None`` when not leading."""
        with self._lock:
            return self._term.deadline if self._term is not None else None

    def _call(self, callback: Callable[..., None] | None, *args: Any) -> None:
        call_safely(log, self.lock.describe(), callback, *args)
