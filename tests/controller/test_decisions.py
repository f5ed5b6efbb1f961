"""The controller's pure decisions: liveness, plans, and what status may say."""

from __future__ import annotations

import datetime as dt

import pytest

from mclease_core import LeaseData, LeaseObject
from mclease_core.controller import (
    Action,
    CandidateState,
    Outcome,
    build_status,
    plan,
    track_candidate,
)
from mclease_core.controller._decisions import is_live, next_check

WALL = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
D = 10.0


def record(cluster: str, identity: str, version: int = 7, transitions: int = 2) -> LeaseObject:
    data = LeaseData(
        holder_identity=identity,
        holder_cluster=cluster,
        lease_duration_seconds=D,
        acquire_time=WALL,
        renew_time=WALL,
        lease_transitions=transitions,
    )
    return LeaseObject(data, version)


class TestLiveness:
    def test_first_sight_after_start_is_not_a_heartbeat(self) -> None:
        seen = track_candidate(None, "pod-a", generation=5, lease_duration=D, now=100.0)
        assert not is_live(seen, 100.0)
        decision = plan(seen, deleting=False, global_holder=None, cluster="east", now=100.0)
        assert decision.action is Action.OBSERVE

    def test_a_new_generation_is_a_heartbeat(self) -> None:
        seen = track_candidate(None, "pod-a", 5, D, now=100.0)
        seen = track_candidate(seen, "pod-a", 6, D, now=101.0)
        assert is_live(seen, 101.0)
        assert (
            plan(seen, deleting=False, global_holder=None, cluster="east", now=101.0).action
            is Action.CONTEND
        )

    def test_liveness_ends_a_lease_duration_after_the_last_change(self) -> None:
        seen = track_candidate(track_candidate(None, "pod-a", 5, D, 100.0), "pod-a", 6, D, 101.0)
        same = track_candidate(seen, "pod-a", 6, D, 110.9)
        assert is_live(same, 110.9)
        assert not is_live(same, 111.0)

    def test_an_empty_holder_is_never_live(self) -> None:
        seen = track_candidate(track_candidate(None, "pod-a", 5, D, 100.0), "", 6, D, 101.0)
        assert not is_live(seen, 101.0)


class TestRelease:
    def live(self, identity: str = "pod-a") -> CandidateState:
        return track_candidate(track_candidate(None, "x", 1, D, 100.0), identity, 2, D, 101.0)

    def test_a_released_spec_releases_the_global_lease_held_here(self) -> None:
        released = track_candidate(self.live(), "", 3, D, 102.0)
        decision = plan(
            released, deleting=False, global_holder=("east", "pod-a"), cluster="east", now=102.0
        )
        assert decision.action is Action.RELEASE
        assert decision.release_identity == "pod-a"

    def test_a_stale_candidate_releases_only_after_a_full_lease_duration(self) -> None:
        candidate = self.live()
        assert (
            plan(
                candidate,
                deleting=False,
                global_holder=("east", "pod-a"),
                cluster="east",
                now=110.9,
            ).action
            is Action.CONTEND
        )
        assert (
            plan(
                candidate,
                deleting=False,
                global_holder=("east", "pod-a"),
                cluster="east",
                now=111.0,
            ).action
            is Action.RELEASE
        )

    def test_a_lease_held_by_another_cluster_is_never_released_here(self) -> None:
        released = track_candidate(self.live(), "", 3, D, 102.0)
        decision = plan(
            released, deleting=False, global_holder=("west", "pod-a"), cluster="east", now=102.0
        )
        assert decision.action is Action.OBSERVE

    def test_deletion_waits_until_the_candidate_cannot_still_act(self) -> None:
        candidate = self.live()
        early = plan(
            candidate, deleting=True, global_holder=("east", "pod-a"), cluster="east", now=105.0
        )
        late = plan(
            candidate, deleting=True, global_holder=("east", "pod-a"), cluster="east", now=111.0
        )
        assert early.action is Action.WAIT_TO_RELEASE
        assert late.action is Action.RELEASE

    def test_deletion_without_a_lease_here_just_forgets(self) -> None:
        decision = plan(
            self.live(), deleting=True, global_holder=("west", "b"), cluster="east", now=105.0
        )
        assert decision.action is Action.FORGET

    def test_the_next_check_comes_when_the_candidate_turns_stale(self) -> None:
        candidate = self.live()
        assert next_check(candidate, 110.5, retry_period=2.0) == pytest.approx(0.501)
        assert next_check(candidate, 102.0, retry_period=2.0) == 2.0


class TestStatus:
    def test_a_confirmed_local_candidate_is_named_bare(self) -> None:
        status = build_status(
            Outcome(6, "east", record("east", "pod-a"), False, confirmed="pod-a"), [], WALL
        )
        assert status["observedGeneration"] == 6
        assert status["globalHolderIdentity"] == "pod-a"
        assert status["globalHolderCluster"] == "east"
        assert status["fencingToken"] == 7

    def test_a_local_holder_without_a_renewal_in_this_reconcile_is_named_qualified(self) -> None:
        """Rule 3: no compare-and-swap for this signal, no bare name, so no confirmation."""
        status = build_status(
            Outcome(6, "east", record("east", "pod-a"), False, confirmed=""), [], WALL
        )
        assert status["globalHolderIdentity"] == "east/pod-a"

    def test_the_same_pod_name_in_another_cluster_never_confirms_ours(self) -> None:
        """Rule 5: west's app-0 leads; east's app-0 must not read its own name."""
        status = build_status(
            Outcome(6, "east", record("west", "app-0"), False, confirmed="app-0"), [], WALL
        )
        assert status["globalHolderIdentity"] == "west/app-0"
        assert status["globalHolderCluster"] == "west"

    @pytest.mark.parametrize("expired", [True, False])
    def test_an_expired_or_released_holder_is_not_named(self, expired: bool) -> None:
        held = record("west", "b")
        released = LeaseObject(LeaseData("", 1.0, WALL, WALL), 9)
        status = build_status(Outcome(6, "east", held if expired else released, expired), [], WALL)
        assert status["globalHolderIdentity"] == ""
        assert status["fencingToken"] is None

    def test_a_backend_error_sets_the_condition(self) -> None:
        status = build_status(Outcome(6, "east", None, True, backend_error="redis down"), [], WALL)
        healthy = next(c for c in status["conditions"] if c["type"] == "BackendHealthy")
        assert healthy["status"] == "False"
        assert "redis down" in healthy["message"]

    def test_condition_transition_time_only_moves_on_a_change(self) -> None:
        first = build_status(Outcome(6, "east", None, True), [], WALL)
        later = build_status(
            Outcome(7, "east", None, True), first["conditions"], WALL + dt.timedelta(hours=1)
        )
        assert [c["lastTransitionTime"] for c in later["conditions"]] == [
            c["lastTransitionTime"] for c in first["conditions"]
        ]
