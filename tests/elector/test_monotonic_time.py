"""Safety rule 5: every duration and deadline is measured on the monotonic clock.

The wall clock of a machine can be stepped (NTP correcting a drifted clock, a VM restored from a
snapshot, an operator's ``date -s``). The elector writes wall times into records, but must never
judge expiry or end a term by them: these tests step the wall clock alone, by an hour either way,
and check that nothing about who leads changes. An elector that compared ``renew_time`` with the
wall clock would let a follower take over a renewing leader after a forward step, and would keep a
cut-off leader leading after a backward one.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from mclease_core import FakeClock, LeaderElector
from mclease_core.backends import MemoryStorage
from tests.elector.conftest import TIMING
from tests.support import FaultyStorage

HOUR = 3600.0


class SteppedWallClock:
    """A :class:`FakeClock` whose wall clock can also be stepped on its own."""

    def __init__(self) -> None:
        self.fake = FakeClock()
        self._wall_offset = dt.timedelta(0)

    def monotonic(self) -> float:
        return self.fake.monotonic()

    def now(self) -> dt.datetime:
        return self.fake.now() + self._wall_offset

    def advance(self, seconds: float) -> None:
        self.fake.advance(seconds)

    def step_wall(self, seconds: float) -> None:
        self._wall_offset += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> SteppedWallClock:
    return SteppedWallClock()


@pytest.fixture
def store(clock: SteppedWallClock) -> FaultyStorage:
    return FaultyStorage(MemoryStorage("monotonic-" + uuid.uuid4().hex[:8]), clock.fake)


def elector(store: FaultyStorage, clock: SteppedWallClock, identity: str) -> LeaderElector:
    return LeaderElector(
        store, "lease", identity, cluster=identity + "-cluster", clock=clock, timing=TIMING
    )


@pytest.mark.parametrize("step", [HOUR, -HOUR], ids=["forward", "back"])
def test_a_wall_clock_step_never_lets_a_follower_take_over_early(
    store: FaultyStorage, clock: SteppedWallClock, step: float
) -> None:
    leader, follower = elector(store, clock, "a"), elector(store, clock, "b")
    assert leader.try_acquire_or_renew()
    assert not follower.try_acquire_or_renew()
    for _ in range(5):  # the leader renews; every step of the follower sees a live lease
        clock.step_wall(step)
        clock.advance(TIMING.retry_period)
        assert leader.try_acquire_or_renew()
        assert not follower.try_acquire_or_renew()
    clock.step_wall(step)
    # The leader stops renewing: the follower waits a full lease duration of its own clock
    # from the last change it saw, whatever the wall clock says.
    clock.advance(TIMING.lease_duration - 0.1)
    assert not follower.try_acquire_or_renew()
    clock.advance(0.1)
    assert follower.try_acquire_or_renew()


@pytest.mark.parametrize("step", [HOUR, -HOUR], ids=["forward", "back"])
def test_a_wall_clock_step_never_moves_the_end_of_a_term(
    store: FaultyStorage, clock: SteppedWallClock, step: float
) -> None:
    leader = elector(store, clock, "a")
    assert leader.try_acquire_or_renew()
    deadline = leader.term_deadline()
    assert deadline == clock.monotonic() + TIMING.renew_deadline
    store.down = True  # cut off from the store: no renewal can succeed from now on
    clock.step_wall(step)
    clock.advance(TIMING.renew_deadline - 0.1)
    leader.check_deadline()
    assert leader.is_leader()
    assert leader.term_deadline() == deadline
    clock.advance(0.1)
    leader.check_deadline()
    assert not leader.is_leader()
