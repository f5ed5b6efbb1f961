"""The change tracker and a follower elector that decides from it, on the in-memory store with a
fake clock. The tracker is not started: each test pumps its feed by hand, so nothing sleeps."""

from __future__ import annotations

import uuid

import pytest

from mclease_core import FakeClock, LeaderElector, LeaseTiming
from mclease_core._changes import ChangeTracker, TrackedStorage
from mclease_core._instrumented import CountingStorage
from mclease_core.backends import MemoryStorage
from mclease_core.conformance import sample_lease_data
from mclease_core.plugin import RESYNC, Change, ChangeFeed, LeaseObject

TIMING = LeaseTiming(lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)


class ScriptedFeed(ChangeFeed):
    """A feed that reports what the test queues: a broken or lying feed, which no real store
    here can be made into (the real feeds are held to the contract by the conformance suite)."""

    def __init__(self) -> None:
        self.queued: list[Change] = [RESYNC]
        self.up = True

    @property
    def connected(self) -> bool:
        return self.up

    def next(self, timeout: float) -> list[Change]:
        queued, self.queued = self.queued, []
        return queued

    def close(self) -> None:
        pass


@pytest.fixture
def store() -> MemoryStorage:
    return MemoryStorage(name=uuid.uuid4().hex)


@pytest.fixture
def tracker(store: MemoryStorage) -> ChangeTracker:
    tracker = ChangeTracker(store.watch(), operation_timeout=0.0)
    tracker.pump(0)  # the resync
    return tracker


def follower(
    store: MemoryStorage, tracker: ChangeTracker, clock: FakeClock
) -> tuple[LeaderElector, CountingStorage]:
    counted = CountingStorage(store)
    elector = LeaderElector(
        TrackedStorage(counted, tracker),
        "lease",
        "b",
        cluster="west",
        timing=TIMING,
        clock=clock,
        changes=tracker,
    )
    return elector, counted


def east_leads_west_follows(
    store: MemoryStorage, tracker: ChangeTracker
) -> tuple[FakeClock, LeaderElector, LeaderElector, CountingStorage]:
    """ "a" of east leads, told to the tracker; "b" of west follows from it (not yet stepped)."""
    clock = FakeClock()
    leader = LeaderElector(store, "lease", "a", cluster="east", timing=TIMING, clock=clock)
    b, counted = follower(store, tracker, clock)
    assert leader.try_acquire_or_renew()
    tracker.pump(0)
    return clock, leader, b, counted


class TestTracker:
    def test_a_record_is_known_once_read_and_follows_other_writers(
        self, store: MemoryStorage, tracker: ChangeTracker
    ) -> None:
        heard: list[str] = []
        tracker.subscribe(heard.append)
        tracked = TrackedStorage(store, tracker)
        created = store.create("k", sample_lease_data("a"))
        assert tracker.known("k") == (False, None)
        tracker.pump(0)
        assert tracker.known("k") == (True, created)
        assert heard == ["k"]
        assert tracked.read("k") == created
        updated = store.update("k", sample_lease_data("b"), version=created.version)
        tracker.pump(0)
        assert tracker.known("k") == (True, updated)
        assert heard == ["k", "k"]

    def test_the_echo_of_our_own_write_is_not_news(
        self, store: MemoryStorage, tracker: ChangeTracker
    ) -> None:
        heard: list[str] = []
        tracker.subscribe(heard.append)
        tracked = TrackedStorage(store, tracker)
        written = tracked.create("k", sample_lease_data("a"))
        assert tracker.known("k") == (True, written)
        tracker.pump(0)
        assert heard == []

    def test_a_result_overtaken_by_a_change_is_not_trusted(
        self, store: MemoryStorage, tracker: ChangeTracker
    ) -> None:
        old = store.create("k", sample_lease_data("a"))
        tracker.pump(0)
        mark = tracker.mark("k")
        newer = store.update("k", sample_lease_data("b"), version=old.version)
        tracker.pump(0)
        tracker.note("k", mark, old)  # a read that began before the change, answered after it
        assert tracker.known("k") == (True, newer)

    def test_nothing_is_known_while_the_feed_is_disconnected_nor_after_until_read(self) -> None:
        feed = ScriptedFeed()
        tracker = ChangeTracker(feed, operation_timeout=0.0)
        tracker.pump(0)
        record = LeaseObject(sample_lease_data("a"), 7)
        feed.queued = [Change("k", record)]
        tracker.pump(0)
        assert tracker.known("k") == (True, record)
        feed.up = False
        tracker.pump(0)
        assert not tracker.connected
        assert tracker.known("k") == (False, None)
        mark = tracker.mark("k")
        tracker.note("k", mark, record)  # a read while disconnected is not kept
        feed.up = True
        feed.queued = [RESYNC]
        tracker.pump(0)
        assert tracker.connected
        assert tracker.known("k") == (False, None)

    def test_a_feed_that_raises_counts_as_disconnected(self) -> None:
        class Raising(ScriptedFeed):
            def next(self, timeout: float) -> list[Change]:
                raise RuntimeError("broken feed")

        feed = ScriptedFeed()
        tracker = ChangeTracker(feed, operation_timeout=0.0)
        tracker.pump(0)
        assert tracker.connected
        tracker._feed = Raising()
        tracker.pump(0)
        assert not tracker.connected

    def test_an_undecodable_or_deleted_record_must_be_read(
        self, store: MemoryStorage, tracker: ChangeTracker
    ) -> None:
        created = store.create("k", sample_lease_data("a"))
        tracker.pump(0)
        store.delete("k", version=created.version)
        tracker.pump(0)
        assert tracker.known("k") == (False, None)


class TestFollowerFromChanges:
    def test_a_follower_reads_once_then_waits_on_what_the_feed_reports(
        self, store: MemoryStorage, tracker: ChangeTracker
    ) -> None:
        clock, leader, b, counted = east_leads_west_follows(store, tracker)
        for _ in range(5):
            clock.advance(2.0)
            assert leader.try_acquire_or_renew()
            tracker.pump(0)
            assert not b.try_acquire_or_renew()
        assert counted.counts()["read"] == 0  # the feed reported every renewal
        assert b.reads_saved == 5
        assert b.observed_record == store.read("lease")

    def test_a_release_elsewhere_wakes_the_follower_and_it_reads_before_taking_over(
        self, store: MemoryStorage, tracker: ChangeTracker
    ) -> None:
        _, leader, b, counted = east_leads_west_follows(store, tracker)
        assert not b.try_acquire_or_renew()
        woken: list[str] = []
        tracker.subscribe(woken.append)
        assert leader.release()
        tracker.pump(0)
        assert woken == ["lease"]
        assert b.try_acquire_or_renew()
        assert counted.counts()["read"] == 1

    def test_expiry_seen_from_the_feed_is_checked_by_a_read_first(
        self, store: MemoryStorage, tracker: ChangeTracker
    ) -> None:
        clock, _, b, counted = east_leads_west_follows(store, tracker)
        assert not b.try_acquire_or_renew()
        clock.advance(TIMING.lease_duration)
        assert b.try_acquire_or_renew()
        assert counted.counts()["read"] == 1

    def test_a_change_never_makes_a_follower_take_over_by_itself(
        self, store: MemoryStorage
    ) -> None:
        """A feed that says the lease was released while the store says it is held: the
        follower reads before it writes, and does not take over (rule 16)."""
        clock = FakeClock()
        leader = LeaderElector(store, "lease", "a", cluster="east", timing=TIMING, clock=clock)
        assert leader.try_acquire_or_renew()
        feed = ScriptedFeed()
        tracker = ChangeTracker(feed, operation_timeout=0.0)
        tracker.pump(0)
        held = store.read("lease")
        lie = LeaseObject(sample_lease_data("", holder_cluster=""), held.version + 100)
        feed.queued = [Change("lease", lie)]
        tracker.pump(0)
        b, counted = follower(store, tracker, clock)
        assert not b.try_acquire_or_renew()
        assert counted.counts()["read"] == 1
        assert store.read("lease") == held
        assert leader.is_leader()


def test_a_closed_tracker_knows_nothing(store: MemoryStorage, tracker: ChangeTracker) -> None:
    created = store.create("k", sample_lease_data("a"))
    tracker.pump(0)
    assert tracker.known("k") == (True, created)
    tracker.close()
    assert not tracker.connected
    assert tracker.known("k") == (False, None)
