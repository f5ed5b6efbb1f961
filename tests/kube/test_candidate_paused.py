"""A candidate paused past its renew deadline never resumes the old term (safety rule 2).

The schedule (found by an adversarial review): the process is paused (SIGSTOP, a long GC, a
frozen VM) past ``signalled_at + R``, so its watchdog never ran; another pod led meanwhile. On
resume, the first thing the loop sees is a late confirmation naming this pod again. Extending the
old term would make the pod lead again without ``on_stopped_leading`` ever having stopped its
work, nor ``on_started_leading`` having restarted it. The term must end (its callback runs) and
only a new term may follow. The lock's confirmations are set by hand and the clock is fake: the
elector's rule needs no API server.
"""

from __future__ import annotations

from mclease_core import ElectorCallbacks, FakeClock, LeadershipTerm
from mclease_core.kube import CandidateElector, MultiClusterLeaseLock
from mclease_core.kube._lock import Confirmation

RENEW_DEADLINE = 2.0


def paused_elector() -> tuple[CandidateElector, FakeClock, list[str], list[LeadershipTerm]]:
    clock = FakeClock()
    lock = MultiClusterLeaseLock(
        "job", "ns", "pod-a", lease_duration=6, renew_deadline=2, retry_period=1, clock=clock
    )
    started: list[LeadershipTerm] = []
    stopped: list[str] = []
    callbacks = ElectorCallbacks(
        on_started_leading=started.append,
        on_stopped_leading=lambda term, reason: stopped.append(reason),
    )
    elector = CandidateElector(lock, callbacks=callbacks)
    lock.last_confirmation = Confirmation(1, 5, clock.monotonic())
    elector._confirmed()
    assert elector.is_leader()
    clock.advance(RENEW_DEADLINE + 0.5)  # paused: no watchdog ran
    assert not elector.is_leader()
    return elector, clock, stopped, started


def test_a_late_confirmation_ends_the_lapsed_term_instead_of_reviving_it() -> None:
    elector, clock, stopped, started = paused_elector()
    elector.lock.last_confirmation = Confirmation(2, 5, clock.monotonic())
    elector._confirmed()
    assert stopped, "the lapsed term was revived without on_stopped_leading"
    assert "no confirmed renewal within 2s" in stopped[0]
    assert not elector.is_leader()
    assert len(started) == 1


def test_the_next_confirmation_after_the_gap_starts_a_new_term() -> None:
    elector, clock, stopped, started = paused_elector()
    elector.check_deadline()  # what try_acquire_or_renew now does first
    assert len(stopped) == 1
    elector.lock.last_confirmation = Confirmation(3, 5, clock.monotonic())
    elector._confirmed()
    assert elector.is_leader()
    assert len(started) == 2, "the work must hear on_started_leading again after the gap"
