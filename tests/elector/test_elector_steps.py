"""The elector driven one step at a time on the in-memory backend with a fake clock."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

import pytest

from mclease_core import (
    ConfigurationError,
    ElectorCallbacks,
    FakeClock,
    LeaderElector,
    LeadershipTerm,
    LeaseObject,
    LeaseTiming,
    StorageUnavailableError,
)
from mclease_core.backends import MemoryStorage
from mclease_core.plugin import Capabilities
from tests.elector.conftest import TIMING
from tests.support import Fault, FaultyStorage

MakeElector = Callable[..., LeaderElector]


def recording_stops(make_elector: MakeElector) -> tuple[LeaderElector, list[str]]:
    """Elector "a", and the reason of each term it ends, in order."""
    stopped: list[str] = []
    callbacks = ElectorCallbacks(on_stopped_leading=lambda term, why: stopped.append(why))
    return make_elector("a", callbacks=callbacks), stopped


def recording_terms(make_elector: MakeElector) -> tuple[LeaderElector, list[LeadershipTerm]]:
    """Elector "a", and each term it starts, in order."""
    terms: list[LeadershipTerm] = []
    return make_elector("a", callbacks=ElectorCallbacks(on_started_leading=terms.append)), terms


def lead_then_fault_the_next_renewal(
    elector: LeaderElector, clock: FakeClock, store: FaultyStorage, fault: Fault
) -> None:
    """``elector`` takes the lease; a retry period later its renewal is due and meets ``fault``."""
    elector.try_acquire_or_renew()
    clock.advance(2.0)
    store.fail_next["update"].append(fault)


def assert_a_second_term_with_a_greater_token(terms: list[LeadershipTerm]) -> None:
    assert len(terms) == 2
    assert terms[1].fencing_token > terms[0].fencing_token


class TestAcquireAndFollow:
    def test_first_elector_creates_the_record_and_leads(self, make_elector: MakeElector) -> None:
        a = make_elector("a")
        assert a.try_acquire_or_renew()
        assert a.is_leader()
        record = a.observed_record
        assert record is not None
        assert record.data.holder == ("east", "a")
        assert record.data.lease_transitions == 0

    def test_follower_waits_a_full_lease_duration_from_first_sight(
        self, make_elector: MakeElector, clock: FakeClock
    ) -> None:
        a, b = make_elector("a"), make_elector("b", cluster="west")
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()  # b first sees a's record now
        clock.advance(9.9)
        assert not b.try_acquire_or_renew()
        clock.advance(0.1)
        assert b.try_acquire_or_renew()
        assert b.observed_record is not None
        assert b.observed_record.data.lease_transitions == 1

    def test_a_renewing_leader_is_never_taken_over(
        self, make_elector: MakeElector, clock: FakeClock
    ) -> None:
        a, b = make_elector("a"), make_elector("b", cluster="west")
        a.try_acquire_or_renew()
        for _ in range(20):
            clock.advance(2.0)
            assert a.try_acquire_or_renew()
            assert not b.try_acquire_or_renew()
        assert a.is_leader()
        assert not b.is_leader()

    def test_follower_that_starts_late_still_waits_a_full_duration(
        self, make_elector: MakeElector, clock: FakeClock
    ) -> None:
        """Rule 1: the first sight after start is not evidence of age, however old renew_time is."""
        a = make_elector("a")
        a.try_acquire_or_renew()
        clock.advance(3600)  # a crashed an hour ago, b starts now
        b = make_elector("b", cluster="west")
        assert not b.try_acquire_or_renew()
        clock.advance(9.0)
        assert not b.try_acquire_or_renew()
        clock.advance(1.0)
        assert b.try_acquire_or_renew()

    def test_same_identity_in_two_clusters_is_two_candidates(
        self, make_elector: MakeElector
    ) -> None:
        east, west = make_elector("app-0", cluster="east"), make_elector("app-0", cluster="west")
        assert east.try_acquire_or_renew()
        assert not west.try_acquire_or_renew()


class TestSteadyStateCost:
    def test_leader_renewal_is_one_conditional_write(
        self, make_elector: MakeElector, clock: FakeClock
    ) -> None:
        a = make_elector("a")
        a.try_acquire_or_renew()
        before = a.storage.counts()
        for _ in range(10):
            clock.advance(2.0)
            assert a.try_acquire_or_renew()
        after = a.storage.counts()
        assert after["update"] - before["update"] == 10
        assert after["read"] == before["read"]
        assert after["create"] == before["create"]

    def test_follower_poll_is_one_read(self, make_elector: MakeElector, clock: FakeClock) -> None:
        a, b = make_elector("a"), make_elector("b")
        a.try_acquire_or_renew()
        b.try_acquire_or_renew()
        before = b.storage.counts()
        for _ in range(10):
            clock.advance(0.5)
            a.try_acquire_or_renew()
            b.try_acquire_or_renew()
        after = b.storage.counts()
        assert after["read"] - before["read"] == 10
        assert after["update"] == before["update"]
        assert after["create"] == before["create"]

    def test_conflict_on_the_fast_path_rereads(
        self, make_elector: MakeElector, clock: FakeClock, store: FaultyStorage
    ) -> None:
        a = make_elector("a")
        a.try_acquire_or_renew()
        record = a.observed_record
        assert record is not None
        store.inner.update("lease", record.data, version=record.version)  # someone touched it
        clock.advance(2.0)
        reads = a.storage.counts()["read"]
        assert a.try_acquire_or_renew()
        assert a.storage.counts()["read"] == reads + 1


class TestRenewDeadline:
    def test_leader_stops_when_renewals_fail_for_the_renew_deadline(
        self, make_elector: MakeElector, clock: FakeClock, store: FaultyStorage
    ) -> None:
        a, stopped = recording_stops(make_elector)
        a.try_acquire_or_renew()
        store.down = True
        clock.advance(2.0)
        assert a.try_acquire_or_renew()  # still within the deadline
        clock.advance(3.9)
        a.check_deadline()
        assert a.is_leader()
        assert not stopped
        clock.advance(0.1)
        assert not a.is_leader()
        a.check_deadline()
        assert len(stopped) == 1
        assert "renewal" in stopped[0]

    def test_deadline_counts_from_sending_the_write_not_from_its_answer(
        self, make_elector: MakeElector, clock: FakeClock, store: FaultyStorage
    ) -> None:
        a = make_elector("a")
        lead_then_fault_the_next_renewal(a, clock, store, 4.0)  # the renewal takes 4 s to answer
        sent = clock.monotonic()
        assert a.try_acquire_or_renew()
        term_deadline = sent + 6.0
        clock.advance(term_deadline - clock.monotonic() - 0.01)
        assert a.is_leader()
        clock.advance(0.01)
        assert not a.is_leader()

    def test_a_renewal_answering_after_the_deadline_does_not_revive_the_term(
        self, make_elector: MakeElector, clock: FakeClock, store: FaultyStorage
    ) -> None:
        a, terms = recording_terms(make_elector)
        lead_then_fault_the_next_renewal(a, clock, store, 7.0)  # slower than the 6 s deadline
        assert not a.try_acquire_or_renew()
        a.check_deadline()
        assert not a.is_leader()
        clock.advance(2.0)
        assert a.try_acquire_or_renew()  # a new term, with a new token
        assert_a_second_term_with_a_greater_token(terms)

    def test_a_term_ended_by_the_watchdog_mid_renewal_stays_ended(
        self, make_elector: MakeElector, clock: FakeClock, store: FaultyStorage
    ) -> None:
        """The renewal answers before its own deadline, but after the term's: no revival."""
        a, terms = recording_terms(make_elector)

        def watchdog_fires_meanwhile() -> None:
            clock.advance(5.0)  # t0 + 7: past the term's deadline, before this write's (t0 + 8)
            a.check_deadline()

        # Term deadline: t0 + 6; the renewal is sent at t0 + 2.
        lead_then_fault_the_next_renewal(a, clock, store, watchdog_fires_meanwhile)
        assert not a.try_acquire_or_renew()
        assert not a.is_leader()
        assert a.term is None
        clock.advance(0.5)
        assert a.try_acquire_or_renew()
        assert_a_second_term_with_a_greater_token(terms)

    def test_losing_the_record_to_another_holder_ends_the_term_at_once(
        self, make_elector: MakeElector, clock: FakeClock, store: FaultyStorage
    ) -> None:
        a, stopped = recording_stops(make_elector)
        a.try_acquire_or_renew()
        record = a.observed_record
        assert record is not None
        thief = LeaderElector(store, "lease", "thief", clock=clock, timing=a.timing)
        store.inner.update(
            "lease",
            record.data.__class__(
                **{**record.data.__dict__, "holder_identity": "thief", "holder_cluster": ""}
            ),
            version=record.version,
        )
        assert not a.try_acquire_or_renew()
        assert not a.is_leader()
        assert stopped == ["the lease record no longer names us"]
        assert thief.identity == "thief"


class TestOutcomeUnknown:
    def test_a_lost_response_to_a_committed_write_is_resolved_as_success(
        self, make_elector: MakeElector, store: FaultyStorage
    ) -> None:
        store.fail_next["create"].append("lost-response")
        a = make_elector("a")
        assert a.try_acquire_or_renew()
        assert a.is_leader()

    def test_a_write_that_did_not_commit_is_not_success(
        self, make_elector: MakeElector, store: FaultyStorage
    ) -> None:
        store.fail_next["create"].append("unknown-not-applied")
        a = make_elector("a")
        assert not a.try_acquire_or_renew()
        assert not a.is_leader()

    def test_a_lost_renewal_response_is_resolved_by_rereading(
        self, make_elector: MakeElector, clock: FakeClock, store: FaultyStorage
    ) -> None:
        a = make_elector("a")
        lead_then_fault_the_next_renewal(a, clock, store, "lost-response")
        assert a.try_acquire_or_renew()
        clock.advance(2.0)
        assert a.try_acquire_or_renew()  # and the cached version is the committed one


class TestRelease:
    def test_release_lets_another_elector_take_over_at_once(
        self, make_elector: MakeElector, clock: FakeClock
    ) -> None:
        a, b = make_elector("a"), make_elector("b", cluster="west")
        a.try_acquire_or_renew()
        b.try_acquire_or_renew()
        assert a.release()
        assert not a.is_leader()
        assert b.try_acquire_or_renew()

    def test_release_of_a_lease_someone_else_holds_changes_nothing(
        self, make_elector: MakeElector, clock: FakeClock
    ) -> None:
        a, b = make_elector("a"), make_elector("b")
        a.try_acquire_or_renew()
        before = a.observed_record
        assert not b.release()
        b.try_acquire_or_renew()
        assert b.observed_record == before

    def test_release_after_a_takeover_changes_nothing(
        self, make_elector: MakeElector, store: FaultyStorage
    ) -> None:
        """A release racing with a takeover must not clear the new holder's record."""
        a = make_elector("a")
        a.try_acquire_or_renew()
        seen = store.inner.read("lease")
        store.inner.update(
            "lease", dataclasses.replace(seen.data, holder_identity="b"), version=seen.version
        )
        assert not a.release()
        assert store.inner.read("lease").data.holder_identity == "b"

    def test_release_is_bound_to_the_version_it_judged_not_a_fresh_read(
        self, make_elector: MakeElector, store: FaultyStorage
    ) -> None:
        """Two writers for the same holder (two controller replicas, one paused past its term):
        the other one renewed since this one last saw the record. A release on a fresh read would
        free the lease the other just renewed for a live candidate."""
        paused = make_elector("app-0")
        paused.try_acquire_or_renew()
        active = make_elector("app-0")
        assert active.step().wrote
        renewed = store.inner.read("lease")
        assert not paused.release()
        assert store.inner.read("lease") == renewed
        assert not renewed.data.is_released


class TestFencingToken:
    def test_tokens_grow_with_every_term_and_survive_record_deletion(
        self, make_elector: MakeElector, clock: FakeClock, store: FaultyStorage
    ) -> None:
        terms: list[LeadershipTerm] = []
        callbacks = ElectorCallbacks(on_started_leading=terms.append)
        a = make_elector("a", callbacks=callbacks)
        b = make_elector("b", cluster="west", callbacks=callbacks)
        a.try_acquire_or_renew()
        for _ in range(3):
            clock.advance(2.0)
            a.try_acquire_or_renew()  # renewals do not change the token
        a.release()
        b.try_acquire_or_renew()
        record = store.inner.read("lease")
        store.inner.delete("lease", version=record.version)  # an operator deletes the record
        clock.advance(10.0)
        b.check_deadline()
        a.try_acquire_or_renew()
        tokens = [term.fencing_token for term in terms]
        assert len(tokens) == 3
        assert tokens == sorted(tokens)
        assert len(set(tokens)) == 3

    def test_the_token_is_published_in_the_record(
        self, make_elector: MakeElector, clock: FakeClock
    ) -> None:
        a = make_elector("a")
        a.try_acquire_or_renew()
        term = a.term
        assert term is not None
        clock.advance(2.0)
        a.try_acquire_or_renew()
        record = a.observed_record
        assert record is not None
        assert record.fencing_token == term.fencing_token


class TestCallbacks:
    def test_new_leader_is_reported_once_per_change(
        self, make_elector: MakeElector, clock: FakeClock
    ) -> None:
        seen: list[tuple[str, str]] = []
        a = make_elector("a")
        b = make_elector(
            "b",
            cluster="west",
            callbacks=ElectorCallbacks(on_new_leader=lambda i, c: seen.append((c, i))),
        )
        a.try_acquire_or_renew()
        for _ in range(3):
            b.try_acquire_or_renew()
        a.release()
        b.try_acquire_or_renew()
        assert seen == [("east", "a"), ("west", "b")]

    def test_a_failing_callback_does_not_break_the_elector(self, make_elector: MakeElector) -> None:
        def explode(term: LeadershipTerm) -> None:
            raise RuntimeError("boom")

        a = make_elector("a", callbacks=ElectorCallbacks(on_started_leading=explode))
        assert a.try_acquire_or_renew()
        assert a.is_leader()


class TestConfiguration:
    def test_retry_period_below_the_backends_write_interval_is_refused(self) -> None:
        class SlowWrites(MemoryStorage):
            @property
            def capabilities(self) -> Capabilities:
                return Capabilities(min_write_interval=1.0)

        with pytest.raises(ConfigurationError, match="minimum write interval"):
            LeaderElector(SlowWrites("cfg"), "lease", "a", timing=LeaseTiming(3.0, 2.0, 0.5))

    def test_an_empty_identity_is_refused(self) -> None:
        with pytest.raises(ValueError, match="identity"):
            LeaderElector(MemoryStorage("cfg"), "lease", "")

    def test_an_invalid_lease_name_is_refused(self) -> None:
        with pytest.raises(ValueError, match="empty"):
            LeaderElector(MemoryStorage("cfg"), "", "a")


class TestStepAndObserve:
    """What the controller builds on: a confirmation needs this step's own write."""

    def test_a_failed_renewal_is_not_a_write_even_while_still_leading(
        self, make_elector: MakeElector, clock: FakeClock, store: FaultyStorage
    ) -> None:
        a = make_elector("a")
        assert a.step().wrote
        clock.advance(2.0)
        store.fail_next["update"].append("unavailable")
        outcome = a.step()
        assert outcome.leading
        assert not outcome.wrote
        assert outcome.error is not None

    def test_waiting_is_not_a_write(self, make_elector: MakeElector) -> None:
        a, b = make_elector("a"), make_elector("b", cluster="west")
        a.step()
        outcome = b.step()
        assert not outcome.wrote
        assert not outcome.leading

    def test_observe_reads_without_writing_and_tracks_expiry(
        self, make_elector: MakeElector, clock: FakeClock
    ) -> None:
        a, watcher = make_elector("a"), make_elector("watcher", cluster="west")
        a.step()
        before = watcher.storage.counts()
        observation = watcher.observe()
        assert observation is not None
        assert observation.record.data.holder_identity == "a"
        assert not watcher.holder_expired()
        clock.advance(10.0)
        watcher.observe()
        assert watcher.holder_expired()
        after = watcher.storage.counts()
        assert after["read"] - before["read"] == 2
        assert after["update"] == before["update"]

    def test_a_released_record_counts_as_expired(self, make_elector: MakeElector) -> None:
        a, watcher = make_elector("a"), make_elector("watcher")
        a.step()
        a.release()
        watcher.observe()
        assert watcher.holder_expired()


class TestUnexpectedBackendErrors:
    """Issue 8 item 13: an exception a backend did not map killed the elector's thread, and
    ``mclease elect`` then hung forever."""

    class Broken(MemoryStorage):
        def __init__(self, error: Exception):
            super().__init__("broken-" + uuid.uuid4().hex[:8])
            self.error = error

        def read(self, key: str) -> LeaseObject:
            raise self.error

    def test_an_unmapped_exception_is_retried_as_unavailable(self, clock: FakeClock) -> None:
        elector = LeaderElector(
            self.Broken(TypeError("bug in a backend")), "lease", "a", clock=clock
        )
        outcome = elector.step()
        assert isinstance(outcome.error, StorageUnavailableError)
        assert "TypeError: bug in a backend" in str(outcome.error)
        assert elector.fatal_error is None
        assert elector.step().error is not None, "the next attempt runs as usual"

    def test_a_configuration_error_ends_the_loop_with_the_error(self) -> None:
        error = ConfigurationError("no credentials for the store")
        elector = LeaderElector(self.Broken(error), "lease", "a", timing=TIMING).start()
        assert elector._thread is not None
        elector._thread.join(5)
        assert not elector._thread.is_alive()
        assert elector.fatal_error is error
        assert not elector.running()


def test_the_elector_warns_at_start_on_a_store_that_can_lose_writes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 8 item 16: a Redis restart from its snapshot, or a failover, loses acknowledged
    writes; fencing tokens can then repeat."""

    class Forgetful(MemoryStorage):
        @property
        def capabilities(self) -> Capabilities:
            return Capabilities(may_lose_writes=True, shared_across_processes=False)

    with caplog.at_level("WARNING", logger="mclease.elector"):
        LeaderElector(Forgetful("forgetful-" + uuid.uuid4().hex[:8]), "lease", "a")
    assert any("can lose acknowledged writes" in message for message in caplog.messages)


def test_a_term_past_its_deadline_is_never_revived_by_a_late_renewal(
    make_elector: MakeElector, clock: FakeClock
) -> None:
    """Found in review: a controller replica paused past its renew deadline resumed, and its
    loop renewed from the cached version before the watchdog ran: the same term went on, so the
    replica neither exited nor noticed it had not been leading."""
    elector, stopped = recording_stops(make_elector)
    elector.step()
    first = elector.term
    assert first is not None
    clock.advance(TIMING.renew_deadline + 0.1)  # no watchdog ran: the process was paused
    elector.step()
    assert stopped, "the expired term was not ended"
    assert elector.term is not None
    assert elector.term.fencing_token > first.fencing_token, "a new term, not the old one revived"
