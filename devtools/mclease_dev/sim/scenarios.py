"""The end-to-end suite's scenarios, written as simulated worlds (the fidelity check).

Each entry mirrors one test of ``tests/e2e`` with the test bed's timings (``D=6 R=2 P=1``,
controller ``P_c=0.5``, replica election ``3/2/0.5``) and its fault at the moment the test makes
it; ``tests/sim/test_simulation.py`` runs them and expects the same verdict as the real test (no
violation). The Go-candidate tests have no counterpart: the simulator runs Python electors only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from mclease_core._decisions import LeaseTiming

from .scenario import CandidateSpec, ControllerSpec, Fault, Machine, Scenario, liveness_bound_for

BED_TIMING = LeaseTiming(6, 2, 1)
BED_REPLICA_TIMING = LeaseTiming(3, 2, 0.5)
FOREVER = float("inf")
"""A crash with no restart."""


def custom(
    seed: int,
    candidates: list[tuple[str, str, str]],
    *,
    replicas: dict[str, int] | None = None,
    faults: list[Fault] | None = None,
    horizon: float = 30.0,
    clusters: tuple[str, ...] = ("east", "west"),
) -> Scenario:
    """A hand-built world: ``candidates`` as ``(cluster, identity, elector)`` starting in that
    order a moment apart, correct clocks, the test bed's timings."""
    replicas = replicas or {}
    leader_elect = any(count > 1 for count in replicas.values())
    clock = Machine(rate=1.0, origin=5000.0, wall_offset=0.0)
    specs = tuple(
        CandidateSpec(f"{cluster}/{identity}", cluster, identity, elector, clock, 1.0 + 0.5 * i)
        for i, (cluster, identity, elector) in enumerate(candidates)
    )
    controllers = tuple(
        ControllerSpec(
            f"{cluster}/controller-{index}",
            cluster,
            f"controller-{cluster}-{index}",
            clock,
            0.1 + 0.5 * index,
        )
        for cluster in clusters
        for index in range(replicas.get(cluster, 1))
    )
    drawn = tuple(faults or [])
    ends = [f.at + (0 if f.duration == FOREVER else f.duration) for f in drawn]
    heal = max([horizon, *ends])
    bound = liveness_bound_for(BED_TIMING, 0.5, BED_REPLICA_TIMING, 30.0)
    return Scenario(
        seed=seed,
        clusters=clusters,
        namespace="apps",
        lease="lease-a",
        timing=BED_TIMING,
        controller_retry=0.5,
        replica_timing=BED_REPLICA_TIMING,
        leader_elect=leader_elect,
        watch_timeout=30.0,
        api_latency=0.003,
        store_latency=0.003,
        candidates=specs,
        controllers=controllers,
        faults=drawn,
        heal_at=heal,
        end_at=heal + bound + 5.0,
    )


@dataclasses.dataclass(frozen=True)
class Mirror:
    e2e_test: str
    build: Callable[[int], Scenario]


def _one_cluster(seed: int) -> Scenario:
    return custom(seed, [("east", "app-0", "candidate-elector")], clusters=("east",))


def _crash_failover(seed: int) -> Scenario:
    return custom(
        seed,
        [("east", "app-0", "candidate-elector"), ("west", "app-1", "candidate-elector")],
        faults=[Fault(8.0, "crash-candidate", "east/app-0", FOREVER)],
    )


def _same_pod_name(seed: int) -> Scenario:
    return custom(seed, [("east", "app-0", "standard"), ("west", "app-0", "standard")])


def _killed_controller(seed: int) -> Scenario:
    return custom(
        seed,
        [("east", "app-0", "candidate-elector"), ("west", "app-1", "candidate-elector")],
        faults=[Fault(8.0, "crash-controller", "east/controller-0", FOREVER)],
    )


def _store_outage(seed: int) -> Scenario:
    return custom(
        seed,
        [("east", "app-0", "candidate-elector"), ("west", "app-1", "standard")],
        faults=[Fault(8.0, "store-down", "store", 2 * BED_TIMING.lease_duration)],
    )


def _stopped_controller(seed: int) -> Scenario:
    return custom(
        seed,
        [("east", "app-0", "standard"), ("east", "app-1", "standard")],
        faults=[Fault(8.0, "crash-controller", "east/controller-0", 12.0)],
        clusters=("east",),
    )


def _hung_api_server(seed: int) -> Scenario:
    return custom(
        seed,
        [("east", "app-0", "standard"), ("west", "app-1", "candidate-elector")],
        faults=[Fault(8.0, "api-hung", "east", 10.0)],
    )


def _paused_replica(seed: int) -> Scenario:
    pause = BED_REPLICA_TIMING.lease_duration + BED_TIMING.lease_duration + 6.0
    return custom(
        seed,
        [("east", "app-0", "candidate-elector"), ("west", "app-1", "candidate-elector")],
        replicas={"east": 2},
        faults=[Fault(8.0, "pause", "east/controller-0", pause)],
        horizon=40.0,
    )


MIRRORS = {
    "one-cluster-leads": Mirror(
        "test_multicluster.py::test_one_cluster_candidate_leads_and_status_names_it", _one_cluster
    ),
    "crash-failover": Mirror(
        "test_multicluster.py::test_crash_failover_within_bound_and_graceful_handoff_fast",
        _crash_failover,
    ),
    "same-pod-name": Mirror(
        "test_multicluster.py::test_same_pod_name_in_both_clusters_is_never_confirmed_twice",
        _same_pod_name,
    ),
    "killed-controller": Mirror(
        "test_multicluster.py::test_killed_controller_its_candidate_stops_before_the_other_"
        "cluster_leads",
        _killed_controller,
    ),
    "store-outage": Mirror(
        "test_multicluster.py::test_store_outage_leader_steps_down_then_exactly_one_leads",
        _store_outage,
    ),
    "stopped-controller": Mirror(
        "test_multicluster.py::test_stopped_controller_leaves_a_stale_status_that_confirms_nobody",
        _stopped_controller,
    ),
    "hung-api-server": Mirror(
        "test_multicluster.py::test_hung_api_server_every_lock_call_ends_within_its_bound",
        _hung_api_server,
    ),
    "paused-replica": Mirror(
        "test_adversarial.py::test_a_paused_replica_resumes_without_freeing_the_active_replicas_"
        "lease",
        _paused_replica,
    ),
}
