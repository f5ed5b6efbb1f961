"""The controller's pure decisions: windows, liveness, plans, and what status may say."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mclease_core import LeaseData, LeaseObject
from mclease_core._decisions import safety_margin
from mclease_core.conformance import sample_lease_data
from mclease_core.controller import (
    CandidateState,
    ReconcileAction,
    ReconcileFindings,
    build_status,
    plan,
    track_candidate,
)
from mclease_core.controller._decisions import (
    MIN_CONFIRM_WINDOW,
    Plan,
    Windows,
    next_check,
    windows,
)

WALL = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
D = 10.0
WINDOWS = windows(10, 4, 1)


def record(cluster: str, identity: str, version: int = 7, transitions: int = 2) -> LeaseObject:
    written = {"lease_duration_seconds": D, "acquire_time": WALL, "renew_time": WALL}
    data = sample_lease_data(
        identity, holder_cluster=cluster, lease_transitions=transitions, **written
    )
    return LeaseObject(data, version)


def decide(candidate: CandidateState, now: float, **given: Any) -> Plan:
    """``plan`` with the defaults of a lease nobody holds and no renewal yet."""
    options: dict[str, Any] = {
        "deleting": False,
        "held_for": "",
        "stopped_first": False,
        "renewed": False,
        "attempted": False,
        "problem": "",
        "windows": WINDOWS,
        "record_hold": WINDOWS.hold,
    }
    options.update(given)
    return plan(candidate, now=now, **options)


def signalled(identity: str = "pod-a", at: float = 101.0) -> CandidateState:
    """Seen at 100 (first sight), then a new generation at ``at``: a heartbeat."""
    return track_candidate(track_candidate(None, identity, 5, 100.0), identity, 6, at)


class TestWindows:
    """Rule 11: a candidate that saw a confirmation within ``confirm`` of its signal stops acting
    before another cluster can take over ``hold`` after it."""

    @pytest.mark.parametrize(
        ("duration", "renew", "retry"), [(6, 2, 1), (15, 10, 2), (20, 10, 2), (60, 40, 5)]
    )
    def test_a_confirmation_in_the_window_ends_acting_before_the_takeover(
        self, duration: int, renew: int, retry: int
    ) -> None:
        bounds = windows(duration, renew, retry)
        acts_until = bounds.confirm + retry + renew  # client-go: c + P + R after seeing it
        assert acts_until + safety_margin(duration) <= bounds.hold + 1e-9
        assert bounds.hold >= duration

    def test_when_the_timings_leave_room_the_global_lease_keeps_the_candidates_duration(
        self,
    ) -> None:
        assert windows(20, 10, 2) == Windows(hold=20, confirm=6, renew=6)

    def test_an_unknown_renew_deadline_counts_as_the_whole_lease_duration(self) -> None:
        """Upstream Go candidates write no renewDeadlineSeconds: R may be anything below D, so
        the global lease is held longer than D and the window stays visible to a 1 s poller."""
        bounds = windows(15, None, 2)
        assert bounds.confirm == MIN_CONFIRM_WINDOW
        assert bounds.hold == pytest.approx(MIN_CONFIRM_WINDOW + 2 + 15 + safety_margin(15))

    def test_the_candidates_own_wait_limits_when_renewing_is_of_use(self) -> None:
        """Issue 8 item 9: a signal its candidate no longer waits for is not renewed."""
        assert windows(20, 10, 2, call_bound=1.333).renew == pytest.approx(1.333)
        assert windows(20, 10, 2, call_bound=100).renew == 6


class TestLiveness:
    def test_first_sight_after_start_is_not_a_heartbeat_and_leaves_status_alone(self) -> None:
        """Issue 8 item 10: a restarted controller must not demote the leader it has not heard
        from yet; it waits for the next signal."""
        seen = track_candidate(None, "pod-a", generation=5, now=100.0)
        decision = decide(seen, 100.0, held_for="pod-a")
        assert decision.action is ReconcileAction.WAIT

    def test_an_object_created_after_the_watch_started_is_a_signal(self) -> None:
        """Issue 8 item 10: a Go candidate's first create is its signal (not D + P later)."""
        created = track_candidate(None, "pod-a", generation=1, now=100.0, created=True)
        assert decide(created, 100.0).action is ReconcileAction.CONTEND

    def test_a_new_generation_is_a_heartbeat(self) -> None:
        assert decide(signalled(), 101.0).action is ReconcileAction.CONTEND

    def test_a_renewed_signal_is_published_confirming_only_within_its_window(self) -> None:
        candidate = signalled()
        inside = decide(candidate, 101.0 + WINDOWS.confirm - 0.01, renewed=True)
        after = decide(candidate, 101.0 + WINDOWS.confirm, renewed=True)
        assert inside.action is after.action is ReconcileAction.PUBLISH
        assert inside.confirm
        assert not after.confirm, "a confirmation must not stay visible past its window"
        assert inside.recheck_at == pytest.approx(101.0 + WINDOWS.confirm)

    def test_a_signal_first_reconciled_after_its_candidate_stopped_waiting_is_not_renewed(
        self,
    ) -> None:
        """Issue 8 item 9: renewing for it could not make anyone lead (livelock)."""
        late = decide(signalled(), 101.0 + WINDOWS.renew + 0.01)
        assert late.action is ReconcileAction.OBSERVE
        assert late.late

    def test_a_follower_whose_attempt_lost_is_not_late(self) -> None:
        decision = decide(signalled(), 101.0 + WINDOWS.renew + 0.01, attempted=True)
        assert decision.action is ReconcileAction.OBSERVE
        assert not decision.late

    def test_an_empty_holder_is_never_contended_for(self) -> None:
        released = track_candidate(signalled(), "", 7, 102.0)
        assert decide(released, 102.0).action is ReconcileAction.OBSERVE

    def test_a_refused_spec_is_never_contended_for(self) -> None:
        decision = decide(signalled("east/x"), 101.0, problem="bad identity", windows=None)
        assert decision.action is ReconcileAction.OBSERVE
        assert decision.problem == "bad identity"


class TestRelease:
    def test_a_release_by_mclease_lock_releases_at_once(self) -> None:
        released = track_candidate(signalled(), "", 7, 102.0)
        decision = decide(released, 102.0, held_for="pod-a", stopped_first=True)
        assert decision.action is ReconcileAction.RELEASE
        assert decision.release_identity == "pod-a"

    def test_a_release_by_another_client_waits_until_its_candidate_cannot_act(self) -> None:
        """Issue 8 items 4 and 14: client-go's ReleaseOnCancel releases before its work stops,
        and writes leaseDurationSeconds 1 with it: the hold of the last signal counts."""
        released = track_candidate(signalled(), "", 7, 102.0)
        early = decide(released, 102.0 + WINDOWS.hold - 0.01, held_for="pod-a")
        late = decide(released, 102.0 + WINDOWS.hold, held_for="pod-a")
        assert early.action is ReconcileAction.OBSERVE
        assert early.recheck_at == pytest.approx(102.0 + WINDOWS.hold)
        assert late.action is ReconcileAction.RELEASE

    def test_a_new_local_holder_does_not_release_the_previous_ones_lease_at_once(self) -> None:
        """Found in review: when B replaced A in the spec, A's last signal was taken to be the
        controller's first sight of the object, long past, and A's lease was released at once
        although A was confirmed a moment before and may still act."""
        switched = track_candidate(signalled("pod-a", at=101.0), "pod-b", 7, 101.5)
        assert switched.last_seen_of("pod-a") == 101.5
        decision = decide(switched, 101.6, held_for="pod-a")
        # pod-b contends; its elector waits for expiry
        assert decision.action is ReconcileAction.CONTEND
        assert (
            decide(switched, 101.5 + WINDOWS.hold, held_for="pod-a").action
            is ReconcileAction.RELEASE
        )

    def test_an_older_generation_is_not_a_signal(self) -> None:
        """Found in review: a watched copy trailing a newer one re-anchored the signal."""
        newer = signalled(at=101.0)
        assert track_candidate(newer, "pod-a", 5, 103.0) == newer

    def test_a_stale_candidate_releases_only_after_its_hold(self) -> None:
        candidate = signalled()
        before = decide(candidate, 101.0 + WINDOWS.hold - 0.01, held_for="pod-a", renewed=True)
        after = decide(candidate, 101.0 + WINDOWS.hold, held_for="pod-a", renewed=True)
        assert before.action is ReconcileAction.PUBLISH
        assert after.action is ReconcileAction.RELEASE

    def test_a_lease_held_by_another_cluster_is_never_released_here(self) -> None:
        released = track_candidate(signalled(), "", 7, 102.0)
        assert decide(released, 200.0, held_for="").action is ReconcileAction.OBSERVE

    def test_deletion_waits_a_hold_after_it_was_first_seen_whatever_the_candidate_signals(
        self,
    ) -> None:
        """Issue 8 item 12: signals during deletion are not heartbeats, so a candidate that keeps
        signalling cannot keep the object forever."""
        candidate = track_candidate(signalled(), "pod-a", 6, 105.0, deleting=True)
        for moment in (106.0, 110.0, 114.0):
            candidate = track_candidate(candidate, "pod-a", int(moment), moment, deleting=True)
        early = decide(candidate, 105.0 + WINDOWS.hold - 0.01, deleting=True, held_for="pod-a")
        late = decide(candidate, 105.0 + WINDOWS.hold, deleting=True, held_for="pod-a")
        assert early.action is ReconcileAction.WAIT_TO_RELEASE
        assert late.action is ReconcileAction.RELEASE
        silent = track_candidate(None, "pod-a", 9, 300.0, deleting=True)
        assert decide(silent, 300.0 + WINDOWS.hold, deleting=True, held_for="pod-a").action is (
            ReconcileAction.RELEASE
        )

    def test_deletion_without_a_lease_here_just_forgets(self) -> None:
        deleting = track_candidate(signalled(), "pod-a", 6, 105.0, deleting=True)
        assert decide(deleting, 105.0, deleting=True).action is ReconcileAction.FORGET

    def test_the_next_check_comes_when_the_decision_changes(self) -> None:
        decision = decide(signalled(), 101.0, renewed=True)
        assert next_check(decision, 101.0, retry_period=2.0) == pytest.approx(
            min(2.0, WINDOWS.confirm + 0.001)
        )
        assert next_check(decide(signalled(), 200.0), 200.0, retry_period=2.0) == 2.0


class TestStatus:
    def test_a_confirmed_local_candidate_is_named_bare(self) -> None:
        status = build_status(
            ReconcileFindings(6, "east", record("east", "pod-a"), False, confirmed="pod-a"),
            [],
            WALL,
        )
        assert status["observedGeneration"] == 6
        assert status["globalHolderIdentity"] == "pod-a"
        assert status["globalHolderCluster"] == "east"
        assert status["fencingToken"] == 7

    def test_a_local_holder_without_a_renewal_in_this_reconcile_is_named_qualified(self) -> None:
        """Rule 8: no compare-and-swap for this signal, no bare name, so no confirmation."""
        status = build_status(
            ReconcileFindings(6, "east", record("east", "pod-a"), False, confirmed=""), [], WALL
        )
        assert status["globalHolderIdentity"] == "east/pod-a"

    def test_the_same_pod_name_in_another_cluster_never_confirms_ours(self) -> None:
        """Rule 12: west's app-0 leads; east's app-0 must not read its own name."""
        status = build_status(
            ReconcileFindings(6, "east", record("west", "app-0"), False, confirmed="app-0"),
            [],
            WALL,
        )
        assert status["globalHolderIdentity"] == "west/app-0"
        assert status["globalHolderCluster"] == "west"

    def test_a_record_without_a_cluster_never_confirms_a_local_namesake(self) -> None:
        """Found by the hostile-input search: a record written without a cluster (``mclease
        elect`` on the same store, or forged) was named bare, which confirmed a local candidate
        of that name without any compare-and-swap for it."""
        status = build_status(ReconcileFindings(6, "east", record("", "app-0"), False), [], WALL)
        assert status["globalHolderIdentity"] == "/app-0"

    @pytest.mark.parametrize("expired", [True, False])
    def test_an_expired_or_released_holder_is_not_named(self, expired: bool) -> None:
        held = record("west", "b")
        released = LeaseObject(LeaseData("", 1.0, WALL, WALL), 9)
        status = build_status(
            ReconcileFindings(6, "east", held if expired else released, expired), [], WALL
        )
        assert status["globalHolderIdentity"] == ""
        assert status["fencingToken"] is None

    def test_a_backend_error_sets_the_condition(self) -> None:
        status = build_status(
            ReconcileFindings(6, "east", None, True, backend_error="redis down"), [], WALL
        )
        healthy = next(c for c in status["conditions"] if c["type"] == "BackendHealthy")
        assert healthy["status"] == "False"
        assert "redis down" in healthy["message"]

    def test_condition_transition_time_only_moves_on_a_change(self) -> None:
        first = build_status(ReconcileFindings(6, "east", None, True), [], WALL)
        later = build_status(
            ReconcileFindings(7, "east", None, True),
            first["conditions"],
            WALL + dt.timedelta(hours=1),
        )
        assert [c["lastTransitionTime"] for c in later["conditions"]] == [
            c["lastTransitionTime"] for c in first["conditions"]
        ]


class TestTooSlowToConfirm:
    """Found in review: a watch lag of 0.6 s with C = 0.5 s renewed every signal "in time" by the
    controller's clock while the lock refused every confirmation: nobody led, and no other
    cluster could. The lock now reports such misses; after two in a row the controller lets the
    lease run out before it renews again."""

    def test_a_candidate_that_keeps_missing_its_confirmations_is_not_renewed(self) -> None:
        decision = decide(signalled(), 101.0, held_for="pod-a", missed=2, renewed_ago=1.0)
        assert decision.action is ReconcileAction.OBSERVE
        assert decision.late

    def test_once_the_lease_ran_out_it_is_tried_again(self) -> None:
        again = decide(signalled(), 101.0, held_for="pod-a", missed=2, renewed_ago=WINDOWS.hold)
        assert again.action is ReconcileAction.CONTEND

    def test_a_signal_pending_when_the_lease_ran_out_is_not_tried_again(self) -> None:
        """Found by the simulator (seeds 7037, 10649, 17650): the retry came when the lease ran
        out, for whatever signal was then pending, often one its candidate was about to give up
        on: confirmed late again, and again a lease duration for nobody, with the same phase."""
        pending = decide(
            signalled(at=101.0), 103.0, held_for="pod-a", missed=2, renewed_ago=WINDOWS.hold + 1
        )
        assert pending.action is ReconcileAction.OBSERVE
        assert pending.late

    def test_one_miss_or_a_lease_held_elsewhere_changes_nothing(self) -> None:
        assert decide(signalled(), 101.0, held_for="pod-a", missed=1, renewed_ago=1.0).action is (
            ReconcileAction.CONTEND
        )
        assert (
            decide(signalled(), 101.0, missed=5, renewed_ago=1.0).action is ReconcileAction.CONTEND
        )


def test_an_unconfirmed_signal_of_the_holder_keeps_its_name_with_the_generation_below() -> None:
    """Found in review: a withdrawn confirmation (or one late reconcile) was written
    cluster/identity, which the holder's own elector read as another leader: it stepped down
    at once and nobody led for a lease duration."""
    findings = ReconcileFindings(6, "east", record("east", "pod-a"), False, spec_holder="pod-a")
    status = build_status(findings, [], WALL)
    assert status["globalHolderIdentity"] == "pod-a"
    assert status["observedGeneration"] == 5
    acquired = next(c for c in status["conditions"] if c["type"] == "LockAcquiredInBackend")
    assert acquired["reason"] == "NotConfirmed"
    assert acquired["observedGeneration"] == 6


def test_a_deletion_never_confirms_the_signal_before_it() -> None:
    """Found by the simulator (seeds 5537, 5651, 6419): the deletion raised the generation from
    5, the candidate's last signal (not renewed: the store was down), to 6. The status of the
    generation below named the candidate at observedGeneration 5, which its lock, still polling
    for 5, took as a confirmation while another cluster took the lease over: two leaders."""
    findings = ReconcileFindings(
        6, "east", record("east", "pod-a"), False, spec_holder="pod-a", deleting=True
    )
    status = build_status(findings, [], WALL)
    assert status["globalHolderIdentity"] == "east/pod-a"  # names the holder, confirms nobody
