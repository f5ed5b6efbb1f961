"""``CandidateElector``: the candidate-side elector the standard Python one lacks.

It drives a :class:`MultiClusterLeaseLock` like ``kubernetes.leaderelection`` does (signal, then
wait for the controller's confirmation), and adds what that elector does not have:

- leadership bounded on the monotonic clock: a term ends ``renew_deadline`` after the start of its
  last confirmed call, enforced by a watchdog thread even if an API call hangs (the standard
  elector can act up to ``2C + P + R`` after it; both stay below ``D``, see docs/safety.md);
- the fencing token of each term (``LeadershipTerm.fencing_token``, from ``status.fencingToken``);
- an on-new-leader callback, fed from the global holder the controller publishes;
- re-campaigning after a loss, and release on stop: it ends the term first (the callback stops
  the work), then writes an empty holder so the controller frees the global lease at once;
- a follower that tries again the moment status says the global lease was freed (the lock's watch
  of its object tells it), not a retry period later: a graceful handoff takes a few API round
  trips instead of up to ``P``.

Not here: the controller, and the lock's protocol (``_lock``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any

from .._elector import ElectorCallbacks, LeadershipTerm
from .._watchdog import Term, TermKeeper, call_safely
from ._lock import MultiClusterLeaseLock

log = logging.getLogger("mclease.candidate")


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
        self._lock = threading.RLock()
        self._terms = TermKeeper(
            self.clock,
            self._lock,
            on_ended=self._stopped_leading,
            expire=self.check_deadline,
            watchdog_name="mclease-candidate-watchdog",
        )
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0
        self._reported: str | None = None
        self._stopping = threading.Event()
        self._wakeup = threading.Event()
        """Set by :meth:`stop`, and when status says the global lease was freed."""
        self._global_holder: str | None = None
        self._thread: threading.Thread | None = None
        if lock.watch is not None:
            lock.watch.listen(self._object_changed)

    # ----- state -----------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._terms.leading()

    @property
    def term(self) -> LeadershipTerm | None:
        """The current term; its ``fencing_token`` is the latest one (it grows when the controller
        re-acquires the global lease mid-term, say after a controller restart): read it before
        each fenced write rather than keeping the one ``on_started_leading`` got."""
        return self._terms.public()

    # ----- one attempt -----------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One attempt: signal if we lead, if nobody does, or if the leader's status has not
        changed for a lease duration; return whether we lead afterwards."""
        lock = self.lock
        self.check_deadline()  # a term past its deadline ends (with its callback) before anything
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
                self._terms.end_current("another candidate leads")
                return False
            confirmed = lock.update(lock.name, lock.namespace, None)
        if confirmed:
            self._confirmed()
        elif found and record.holder_identity not in (None, "", lock.identity):
            self._terms.end_current("another candidate leads")
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
        ended: tuple[Term, str] | None = None
        with self._lock:
            term = self._terms.current()
            if term is not None and 0 <= token < term.public.fencing_token:
                ended = (
                    term,
                    f"the fencing token went down ({term.public.fencing_token} to "
                    f"{token}): the global store lost writes",
                )
            elif term is not None and not self._terms.extend(
                term, deadline, sent=confirmation.signalled_at
            ):
                # signalled after its deadline (a paused process): it ends, and a later
                # confirmation starts a new term, so the work hears of the gap
                ended = (term, f"no confirmed renewal within {self.timing.renew_deadline:g}s")
            elif term is not None:
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
                self._terms.start(started, deadline)
        if ended is not None:
            self._terms.end(*ended)
            return
        if started is not None:
            log.info(
                "%s: started leading (fencing token %d)",
                self.lock.describe(),
                started.fencing_token,
            )
            self._call(self.callbacks.on_started_leading, started)

    def check_deadline(self) -> None:
        """End the current term if its renew deadline has passed (the watchdog calls this)."""
        self._terms.expire_if_due(f"no confirmed renewal within {self.timing.renew_deadline:g}s")

    def _stopped_leading(self, term: Term, reason: str, deliberate: bool) -> None:
        """The term ended (:class:`TermKeeper` runs this once per term)."""
        self.lock.end_term()
        log.warning("%s: stopped leading: %s", self.lock.describe(), reason)
        self._call(self.callbacks.on_stopped_leading, term.public, reason)

    # ----- the loop ------------------------------------------------------------------------------

    def _object_changed(self, obj: dict[str, Any] | None) -> None:
        """From the lock's watch: wake the loop when the global lease was just freed."""
        status = (obj or {}).get("status") or {}
        holder = status.get("globalHolderIdentity") if isinstance(status, dict) else None
        holder = holder if isinstance(holder, str) else ""
        freed = bool(self._global_holder) and holder == ""
        self._global_holder = holder
        if freed and not self.is_leader():
            self._wakeup.set()

    def run(self) -> None:
        self._terms.start_watchdog()
        try:
            while not self._stopping.is_set():
                self._wakeup.clear()
                if self._stopping.is_set():  # stop() between the check and the clear
                    break
                self.try_acquire_or_renew()
                self._wakeup.wait(self.timing.retry_period)
        finally:
            self._stopping.set()
            self._terms.stop_watchdog()
            self._terms.end_current("elector stopped")
            if self.release_on_stop:
                with self._terms.after_ending():  # the release says the work stopped: wait
                    self.lock.release()
            self.lock.close()  # its watch: a lock used again afterwards polls

    def start(self) -> CandidateElector:
        self._thread = threading.Thread(target=self.run, name="mclease-candidate", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """End the term now (the callback runs), then stop the loop and release."""
        self._stopping.set()
        self._wakeup.set()
        self._terms.end_current("elector stopped")
        if self._terms.in_callback():
            return  # called from on_stopped_leading: the loop waits for that callback to return
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def term_deadline(self) -> float | None:
        """The monotonic time the current term ends unless renewed; ``None`` when not leading."""
        return self._terms.deadline()

    def _call(self, callback: Callable[..., None] | None, *args: Any) -> None:
        call_safely(log, self.lock.describe(), callback, *args)
