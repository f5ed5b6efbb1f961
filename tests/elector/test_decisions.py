"""The pure decision functions: expiry by observation, what to write, timing validation."""

from __future__ import annotations

import datetime as dt

import pytest

from mclease_core import LeaseObject, LeaseTiming
from mclease_core._decisions import (
    ElectorAction,
    Observation,
    decide,
    new_record,
    observe,
    released_record,
)
from mclease_core.conformance import sample_lease_data

ME = ("east", "pod-a")
OTHER = ("west", "pod-b")
WALL = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def record(
    holder: tuple[str, str],
    version: int,
    *,
    duration: float = 10.0,
    renew: dt.datetime = WALL,
    transitions: int = 0,
    token: int | None = None,
) -> LeaseObject:
    cluster, identity = holder
    written = {"lease_duration_seconds": duration, "acquire_time": renew, "renew_time": renew}
    data = sample_lease_data(
        identity,
        holder_cluster=cluster,
        lease_transitions=transitions,
        fencing_token=token,
        **written,
    )
    return LeaseObject(data, version)


def read_at(*reads: tuple[LeaseObject, float]) -> Observation | None:
    """What an elector has observed after reading each ``(record, at)`` in turn."""
    seen: Observation | None = None
    for obj, now in reads:
        seen = observe(seen, obj, now=now)
    return seen


def actions(seen: Observation | None, *at: float, leading: bool = False) -> list[ElectorAction]:
    """What ``decide`` tells pod-a in the east to do at each of the times ``at``."""
    return [decide(seen, ME, leading=leading, now=now).action for now in at]


class TestExpiryByObservation:
    def test_no_record_means_create(self) -> None:
        assert actions(None, 0.0) == [ElectorAction.CREATE]

    def test_another_holder_is_live_until_we_saw_no_change_for_a_lease_duration(self) -> None:
        seen = read_at((record(OTHER, 5), 100.0))
        assert actions(seen, 109.9, 110.0) == [ElectorAction.WAIT, ElectorAction.ACQUIRE]

    def test_wait_says_how_long_until_expiry(self) -> None:
        seen = read_at((record(OTHER, 5), 100.0))
        assert decide(seen, ME, leading=False, now=104.0).wait == pytest.approx(6.0)

    def test_a_new_version_restarts_the_expiry_clock(self) -> None:
        seen = read_at((record(OTHER, 5), 100.0), (record(OTHER, 6), 108.0))
        assert actions(seen, 115.0, 118.0) == [ElectorAction.WAIT, ElectorAction.ACQUIRE]

    def test_the_same_version_read_again_keeps_the_first_sighting(self) -> None:
        again = read_at((record(OTHER, 5), 100.0), (record(OTHER, 5), 109.0))
        assert again is not None
        assert again.first_seen == 100.0

    @pytest.mark.parametrize("years", [-30, 30])
    def test_the_holders_written_renew_time_is_never_compared_with_our_clock(
        self, years: int
    ) -> None:
        """Upstream compares remote wall clocks; a skewed writer must change nothing here."""
        skewed = WALL + dt.timedelta(days=365 * years)
        seen = read_at((record(OTHER, 5, renew=skewed), 100.0))
        assert actions(seen, 100.0, 110.0) == [ElectorAction.WAIT, ElectorAction.ACQUIRE]

    def test_the_expiry_uses_the_duration_the_holder_wrote(self) -> None:
        seen = read_at((record(OTHER, 5, duration=30.0), 100.0))
        assert actions(seen, 125.0) == [ElectorAction.WAIT]

    def test_a_released_record_is_free_at_once(self) -> None:
        released = LeaseObject(released_record(record(OTHER, 5), WALL), 6)
        assert actions(read_at((released, 100.0)), 100.0) == [ElectorAction.ACQUIRE]

    def test_our_own_record_is_renewed_when_leading_and_reacquired_otherwise(self) -> None:
        seen = read_at((record(ME, 5), 100.0))
        assert actions(seen, 100.0, leading=True) == [ElectorAction.RENEW]
        assert actions(seen, 100.0, leading=False) == [ElectorAction.ACQUIRE]

    def test_the_same_identity_in_another_cluster_is_another_holder(self) -> None:
        twin = ("west", ME[1])
        assert actions(read_at((record(twin, 5), 100.0)), 100.0) == [ElectorAction.WAIT]


class TestRecordsToWrite:
    def test_takeover_bumps_transitions_and_starts_a_new_token(self) -> None:
        data = new_record(
            ElectorAction.ACQUIRE, record(OTHER, 5, transitions=2, token=3), ME, 15.0, WALL
        )
        assert (data.holder_cluster, data.holder_identity) == ME
        assert data.lease_transitions == 3
        assert data.fencing_token is None

    def test_reacquiring_our_own_record_keeps_transitions(self) -> None:
        data = new_record(
            ElectorAction.ACQUIRE, record(ME, 5, transitions=2, token=3), ME, 15.0, WALL
        )
        assert data.lease_transitions == 2
        assert data.fencing_token is None

    def test_renewal_carries_the_terms_token_forward(self) -> None:
        acquired = record(ME, 7)  # token None: the term's token is this version
        renewed = new_record(
            ElectorAction.RENEW, acquired, ME, 15.0, WALL + dt.timedelta(seconds=2)
        )
        assert renewed.fencing_token == 7
        assert LeaseObject(renewed, 8).fencing_token == 7
        assert renewed.renew_time > renewed.acquire_time

    def test_release_clears_the_holder_and_keeps_history(self) -> None:
        released = released_record(record(ME, 7, transitions=4), WALL)
        assert released.is_released
        assert released.lease_transitions == 4
        assert released.fencing_token == 7


class TestTimingValidation:
    def test_defaults_are_valid(self) -> None:
        assert LeaseTiming() == LeaseTiming(15.0, 10.0, 2.0)

    @pytest.mark.parametrize(
        ("duration", "deadline", "period", "message"),
        [
            (10, 10, 2, "lease_duration"),
            (10, 12, 2, "lease_duration"),
            (15, 2.4, 2, "renew_deadline"),
            (15, 10, 0, "retry_period"),
            (15, 10, -1, "retry_period"),
        ],
    )
    def test_invalid_timings_raise_value_error(
        self, duration: float, deadline: float, period: float, message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            LeaseTiming(duration, deadline, period)
