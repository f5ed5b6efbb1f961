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

from tests.e2e import harness
from tests.e2e.conftest import Bed
from tests.e2e.harness import wait_for, wait_for_leader
from tests.e2e.test_multicluster import (
    FIRST_LEADER_TIMEOUT,
    assert_one_leader_at_a_time,
    lead_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.kube]

REPLICA_TIMING = ("3", "2", "0.5")
"""The replicas' own election: D, R, P (seconds)."""


def replica_args(site: harness.Site) -> list[str]:
    duration, deadline, period = REPLICA_TIMING
    return [
        "--leader-elect",
        "--leader-elect-namespace", site.namespace,
        "--leader-elect-lease-duration", duration,
        "--leader-elect-renew-deadline", deadline,
        "--leader-elect-retry-period", period,
    ]  # fmt: skip


def active_replica_identity(site: harness.Site) -> str | None:
    leases = k8s.CoordinationV1Api(site.cluster.api_client()).list_namespaced_lease(site.namespace)
    holders = [lease.spec.holder_identity for lease in leases.items if lease.spec.holder_identity]
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
    first = bed.group.controller(east, bed.store_url, extra_args=replica_args(east))
    wait_for(lambda: active_replica_identity(east), timeout=20, message="an active replica")
    second = bed.group.controller(east, bed.store_url, extra_args=replica_args(east))
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
