"""Schedules an adversary picks (issue 8), end to end: real API servers, controllers and
candidates as processes, a real store. Every test asserts that no two candidates' leadership
intervals overlap on the machine's monotonic clock.

- A controller replica paused past its term and resumed (item 1).
- A controller restarted under a leader that keeps leading (item 10).
- Go candidates on client-go's elector: first election, release, kill -9, one name in two
  clusters (item 14); see tests/e2e/gocandidate.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from kubernetes import client as k8s

from mclease_core.testing import wait_until as wait_for
from mclease_dev import multicluster as harness
from mclease_dev.multicluster import wait_for_leader
from tests.e2e.conftest import Bed
from tests.e2e.test_multicluster import (
    FIRST_LEADER_TIMEOUT,
    assert_one_leader_at_a_time,
    lead_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.kube]

REPLICA_TIMING = ("3", "2", "0.5")
"""The replicas' own election: D, R, P (seconds)."""


def replica_args(site: harness.Site) -> list[str]:
    """The replica election's flags; its Lease lives in the controller's namespace, the only one
    its Role covers. A Lease left by an earlier test's replicas is deleted first."""
    leases = k8s.CoordinationV1Api(site.cluster.api_client())
    for lease in leases.list_namespaced_lease(harness.CONTROLLER_NAMESPACE).items:
        leases.delete_namespaced_lease(lease.metadata.name, harness.CONTROLLER_NAMESPACE)
    duration, deadline, period = REPLICA_TIMING
    return [
        "--leader-elect",
        "--leader-elect-namespace", harness.CONTROLLER_NAMESPACE,
        "--leader-elect-lease-duration", duration,
        "--leader-elect-renew-deadline", deadline,
        "--leader-elect-retry-period", period,
    ]  # fmt: skip


def active_replica_identity(site: harness.Site) -> str | None:
    leases = k8s.CoordinationV1Api(site.cluster.api_client())
    found = leases.list_namespaced_lease(harness.CONTROLLER_NAMESPACE).items
    holders = [lease.spec.holder_identity for lease in found if lease.spec.holder_identity]
    return holders[0] if holders else None


def test_a_paused_replica_resumes_without_freeing_the_active_replicas_lease(bed: Bed) -> None:
    """Item 1. East runs two controller replicas. The active one is SIGSTOPped past its replica
    term and past its candidate's lease duration; the other takes over and renews for the live
    local leader. Resumed, the paused one's workers found the lease due, judged the candidate
    stale from their old copy and released the global record by compare-and-swap on a fresh read
    (the other replica's renewal): the other cluster was confirmed while the local leader still
    acted (2.97 s overlap seen). Now the resumed replica writes nothing and exits."""
    origin = time.monotonic()
    east = bed.sites["east"]
    replicas = replica_args(east)
    first = bed.group.controller(east, bed.store_url, extra_args=replicas)
    wait_for(lambda: active_replica_identity(east), timeout=20, message="an active replica")
    second = bed.group.controller(east, bed.store_url, extra_args=replicas)
    bed.group.controller(bed.sites["west"], bed.store_url)
    leader = bed.candidate("east", "app-0")
    _, began = wait_for_leader([leader], timeout=FIRST_LEADER_TIMEOUT)
    follower = bed.candidate("west", "app-1")
    lead_for(leader, began, 2.0)

    active = active_replica_identity(east)
    paused, standby = (first, second) if active and active.endswith(f"_{first.pid}") else (
        second, first)  # fmt: skip
    os.kill(paused.pid, signal.SIGSTOP)
    wait_for(
        lambda: active_replica_identity(east) not in (None, active),
        timeout=20,
        message="the standby replica to take over",
    )
    time.sleep(harness.LEASE_DURATION + 2)  # the paused replica's copy is now stale
    wait_for(leader.leading, timeout=15, message="the local leader confirmed by the new replica")
    os.kill(paused.pid, signal.SIGCONT)
    wait_for(lambda: not paused.alive(), timeout=20, message="the resumed replica to exit")
    assert paused.popen is not None
    assert paused.popen.returncode == 1, "a replica that lost its term exits non-zero"
    time.sleep(harness.LEASE_DURATION)  # the other cluster would have been confirmed by now
    assert standby.alive()
    assert leader.leading(), "the local leader lost its lease to the resumed replica"
    assert_one_leader_at_a_time([leader, follower], origin)


# ----- Go candidates on client-go (item 14) -----------------------------------------------------

GO_C = harness.go_confirmation_bound()
GO_STEP_DOWN = harness.RETRY_PERIOD + harness.RENEW_DEADLINE
"""client-go stops leading P + R after its last confirmed call returned."""
GO_CRASH_BOUND = harness.LEASE_DURATION + 3 * harness.RETRY_PERIOD
"""kill -9 to a new Go leader: D, plus a follower's jittered retry (up to 2.2 P) and a signal."""
SLACK = 0.3


def assert_go_leader_stepped_down_in_time(candidate: harness.CandidateProcess) -> None:
    last = candidate.last_beat()
    confirmed = candidate.confirmations()
    assert last is not None
    assert confirmed
    after = last - max(call.end for call in confirmed)
    assert after <= GO_STEP_DOWN + SLACK, (
        f"{candidate.label} acted {after:.2f}s after its last confirmation"
    )


def test_go_candidates_first_election_release_and_crash(bed: Bed) -> None:
    """A Go candidate's create is its signal (its first election took D + P); its release by
    client-go's ReleaseOnCancel (an empty holder with leaseDurationSeconds 1, written before its
    work stopped) goes through the existing elector and frees the lease once the candidate cannot
    act (it failed, and the lease waited for expiry); kill -9 fails over within D + 3P."""
    origin = time.monotonic()
    bed.controllers()
    started = time.monotonic()
    candidates = [bed.group.go_candidate(bed.sites["east"], "go-0"),
                  bed.group.go_candidate(bed.sites["west"], "go-1")]  # fmt: skip
    leader, first = wait_for_leader(candidates, timeout=FIRST_LEADER_TIMEOUT)
    bed.measure("go: start -> first leader", first - started, GO_C)
    assert any(c.ok and c.kind == "create" for c in leader.calls()), (
        "the first election was not confirmed on the candidate's create"
    )
    (other,) = [c for c in candidates if c is not leader]
    lead_for(leader, first, 2.0)

    released_at = time.monotonic()
    assert leader.terminate() == 0
    assert any(f[0] == "released" and f[2] == "1" for f in leader.event_lines())
    _, took_over = wait_for_leader([other], timeout=harness.LEASE_DURATION + 10, after=released_at)
    assert (leader.last_beat() or 0) < took_over
    # The release frees the lease a hold after it was seen (client-go's work may still run
    # until then); a Go follower retries every P to 2.2 P (client-go's jitter), then signals.
    handoff_bound = harness.LEASE_DURATION + 3 * harness.RETRY_PERIOD
    bed.measure("go: ReleaseOnCancel -> next leader", took_over - released_at, handoff_bound)
    assert took_over - released_at <= handoff_bound + SLACK

    lead_for(other, took_over, 2.0)
    killed_at = other.kill()
    successor = bed.group.go_candidate(
        bed.sites[leader.site.name], "go-0", label=f"{leader.label}-again"
    )
    _, next_first = wait_for_leader([successor], timeout=GO_CRASH_BOUND + 10, after=killed_at)
    assert_go_leader_stepped_down_in_time(other)
    bed.measure("go: kill -9 leader -> other leads", next_first - killed_at, GO_CRASH_BOUND)
    assert next_first - killed_at <= GO_CRASH_BOUND + SLACK
    assert_one_leader_at_a_time([*candidates, successor], origin)


def test_go_candidates_with_one_name_in_two_clusters_are_never_both_confirmed(bed: Bed) -> None:
    origin = time.monotonic()
    bed.controllers()
    candidates = [bed.group.go_candidate(bed.sites["east"], "app-0"),
                  bed.group.go_candidate(bed.sites["west"], "app-0")]  # fmt: skip
    leader, first = wait_for_leader(candidates, timeout=FIRST_LEADER_TIMEOUT)
    (other,) = [c for c in candidates if c is not leader]
    lead_for(leader, first, 3.0)
    assert not other.beats(), "the same name in the other cluster was confirmed too"
    killed_at = leader.kill()
    _, took_over = wait_for_leader([other], timeout=GO_CRASH_BOUND + 10, after=killed_at)
    assert_go_leader_stepped_down_in_time(leader)
    bed.measure(
        "go, same name: kill -9 leader -> other leads", took_over - killed_at, GO_CRASH_BOUND
    )
    assert_one_leader_at_a_time(candidates, origin)
