"""The pure decision functions: expiry by observation, what to write, timing validation."""

from __future__ import annotations

import datetime as dt

import pytest

from mclease_core import Action, LeaseData, LeaseObject, LeaseTiming, decide, observe
from mclease_core._decisions import new_record, released_record

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
    data = LeaseData(
        holder_identity=holder[1],
        holder_cluster=holder[0],
        lease_duration_seconds=duration,
        acquire_time=renew,
        renew_time=renew,
        lease_transitions=transitions,
        fencing_token=token,
    )
    return LeaseObject(data, version)


class TestExpiryByObservation:
    def test_no_record_means_create(self) -> None:
        assert decide(None, ME, leading=False, now=0.0).action is Action.CREATE

    def test_another_holder_is_live_until_we_saw_no_change_for_a_lease_duration(self) -> None:
        seen = observe(None, record(OTHER, 5), now=100.0)
        assert decide(seen, ME, leading=False, now=109.9).action is Action.WAIT
        assert decide(seen, ME, leading=False, now=110.0).action is Action.ACQUIRE

    def test_wait_says_how_long_until_expiry(self) -> None:
        seen = observe(None, record(OTHER, 5), now=100.0)
        assert decide(seen, ME, leading=False, now=104.0).wait == pytest.approx(6.0)

    def test_a_new_version_restarts_the_expiry_clock(self) -> None:
        seen = observe(None, record(OTHER, 5), now=100.0)
        seen = observe(seen, record(OTHER, 6), now=108.0)
        assert decide(seen, ME, leading=False, now=115.0).action is Action.WAIT
        assert decide(seen, ME, leading=False, now=118.0).action is Action.ACQUIRE

    def test_the_same_version_read_again_keeps_the_first_sighting(self) -> None:
        seen = observe(None, record(OTHER, 5), now=100.0)
        again = observe(seen, record(OTHER, 5), now=109.0)
        assert again is not None
        assert again.first_seen == 100.0

    @pytest.mark.parametrize("years", [-30, 30])
    def test_the_holders_written_renew_time_is_never_compared_with_our_clock(
        self, years: int
    ) -> None:
        """Upstream compares remote wall clocks; a skewed writer must change nothing here."""
        skewed = WALL + dt.timedelta(days=365 * years)
        seen = observe(None, record(OTHER, 5, renew=skewed), now=100.0)
        assert decide(seen, ME, leading=False, now=100.0).action is Action.WAIT
        assert decide(seen, ME, leading=False, now=110.0).action is Action.ACQUIRE

    def test_the_expiry_uses_the_duration_the_holder_wrote(self) -> None:
        seen = observe(None, record(OTHER, 5, duration=30.0), now=100.0)
        assert decide(seen, ME, leading=False, now=125.0).action is Action.WAIT

    def test_a_released_record_is_free_at_once(self) -> None:
        released = LeaseObject(released_record(record(OTHER, 5), WALL), 6)
        seen = observe(None, released, now=100.0)
        assert decide(seen, ME, leading=False, now=100.0).action is Action.ACQUIRE

    def test_our_own_record_is_renewed_when_leading_and_reacquired_otherwise(self) -> None:
        seen = observe(None, record(ME, 5), now=100.0)
        assert decide(seen, ME, leading=True, now=100.0).action is Action.RENEW
        assert decide(seen, ME, leading=False, now=100.0).action is Action.ACQUIRE

    def test_the_same_identity_in_another_cluster_is_another_holder(self) -> None:
        twin = ("west", ME[1])
        seen = observe(None, record(twin, 5), now=100.0)
        assert decide(seen, ME, leading=False, now=100.0).action is Action.WAIT


class TestRecordsToWrite:
    def test_takeover_bumps_transitions_and_starts_a_new_token(self) -> None:
        data = new_record(Action.ACQUIRE, record(OTHER, 5, transitions=2, token=3), ME, 15.0, WALL)
        assert (data.holder_cluster, data.holder_identity) == ME
        assert data.lease_transitions == 3
        assert data.fencing_token is None

    def test_reacquiring_our_own_record_keeps_transitions(self) -> None:
        data = new_record(Action.ACQUIRE, record(ME, 5, transitions=2, token=3), ME, 15.0, WALL)
        assert data.lease_transitions == 2
        assert data.fencing_token is None

    def test_renewal_carries_the_terms_token_forward(self) -> None:
        acquired = record(ME, 7)  # token None: the term's token is this version
        renewed = new_record(Action.RENEW, acquired, ME, 15.0, WALL + dt.timedelta(seconds=2))
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
