"""What one seed means: the clusters, processes, timings and the fault schedule of a run.

Everything is drawn from ``random.Random(seed)`` before the run starts, so a seed names a
schedule; :func:`describe` prints it. Timings are drawn from the range the product accepts (the
lock's ``confirmation_bound`` refuses the rest), the controller's retry period and watch timeout
need not be whole seconds.
"""

from __future__ import annotations

import dataclasses
import random

from mclease_core._decisions import LeaseTiming
from mclease_core.kube._lock import confirmation_bound

FAULT_KINDS = (
    "crash-candidate",
    "crash-controller",
    "pause",
    "wall-step",
    "api-slow",
    "api-hung",
    "api-restart",
    "watch-drop",
    "store-down",
    "lost-answer-store",
    "lost-answer-api",
    "partition-store",
    "partition-api",
    "trickle-api",
    "delete-object",
    "forge-status",
)
"""``forge-status``: someone with status write access (not a controller) writes a status naming a
local candidate with an old generation, or with one that does not exist yet: rule 8 says no lock
may take either as a confirmation. A current generation is not forged: whoever may write status
may confirm (RBAC keeps candidates from it), which docs/safety.md assumes."""
FIRST_FAULT_KINDS = FAULT_KINDS[:-1]
"""The kinds before ``forge-status``: the worlds the seeds named in tests/sim were found in."""

ELECTORS = ("standard", "candidate-elector")


@dataclasses.dataclass(frozen=True)
class Machine:
    """The clocks of the machine a process runs on."""

    rate: float
    origin: float
    wall_offset: float


@dataclasses.dataclass(frozen=True)
class CandidateSpec:
    name: str
    """Unique in the run: ``cluster/identity#n``."""
    cluster: str
    identity: str
    elector: str
    machine: Machine
    start: float


@dataclasses.dataclass(frozen=True)
class ControllerSpec:
    name: str
    cluster: str
    identity: str
    machine: Machine
    start: float


@dataclasses.dataclass(frozen=True)
class Fault:
    at: float
    kind: str
    target: str
    """A process name (candidate or controller), a cluster, or ``store``."""
    duration: float
    amount: float = 0.0


@dataclasses.dataclass(frozen=True)
class Scenario:
    seed: int
    clusters: tuple[str, ...]
    namespace: str
    lease: str
    timing: LeaseTiming
    controller_retry: float
    replica_timing: LeaseTiming
    leader_elect: bool
    watch_timeout: float
    api_latency: float
    store_latency: float
    candidates: tuple[CandidateSpec, ...]
    controllers: tuple[ControllerSpec, ...]
    faults: tuple[Fault, ...]
    heal_at: float
    """Every fault has ended (crashed processes restarted) by then."""
    end_at: float

    @property
    def call_bound(self) -> float:
        return confirmation_bound(self.timing)


def _timing(rng: random.Random) -> LeaseTiming:
    while True:
        duration = rng.randint(4, 20)
        renew = rng.randint(1, duration - 2)
        retry = rng.randint(1, max(1, min(renew, 3)))
        try:
            timing = LeaseTiming(duration, renew, retry)
            confirmation_bound(timing)
        except ValueError:
            continue
        return timing


def _machine(rng: random.Random) -> Machine:
    return Machine(
        rate=1.0 + rng.uniform(-0.01, 0.01),  # within the margin the rules assume (docs/safety.md)
        origin=rng.uniform(1_000.0, 1_000_000.0),
        wall_offset=rng.choice([0.0, 0.0, rng.uniform(-300, 300)]),
    )


def draw(seed: int, *, faults: int | None = None, kinds: tuple[str, ...] = FAULT_KINDS) -> Scenario:
    """The world of ``seed``; ``kinds`` narrows the faults drawn (a focused search)."""
    rng = random.Random(seed)
    clusters = tuple(["east", "west", "north"][: rng.choice([2, 2, 3])])
    timing = _timing(rng)
    controller_retry = round(rng.uniform(0.3, min(2.0, timing.lease_duration / 4)), 3)
    replicas = {cluster: rng.choice([1, 1, 2, 3]) for cluster in clusters}
    leader_elect = any(count > 1 for count in replicas.values()) or rng.random() < 0.3
    replica_timing = LeaseTiming(rng.choice([4, 6, 8]), 2, 1)
    watch_timeout = round(rng.uniform(3.0, 30.0), 2)
    shared = [f"app-{i}" for i in range(3)]
    candidates: list[CandidateSpec] = []
    for cluster in clusters:
        for index in range(rng.choice([1, 2, 2, 3])):
            identity = rng.choice(shared) if rng.random() < 0.5 else f"{cluster}-pod-{index}"
            if any(c.cluster == cluster and c.identity == identity for c in candidates):
                identity = f"{cluster}-pod-{index}-b"
            candidates.append(
                CandidateSpec(
                    name=f"{cluster}/{identity}",
                    cluster=cluster,
                    identity=identity,
                    elector=rng.choice(ELECTORS),
                    machine=_machine(rng),
                    start=rng.uniform(0.0, 3.0),
                )
            )
    controllers = tuple(
        ControllerSpec(
            name=f"{cluster}/controller-{index}",
            cluster=cluster,
            identity=f"controller-{cluster}-{index}",
            machine=_machine(rng),
            start=rng.uniform(0.0, 2.0),
        )
        for cluster in clusters
        for index in range(replicas[cluster])
    )
    horizon = max(40.0, 4.0 * timing.lease_duration)
    count = rng.randint(1, 8) if faults is None else faults
    drawn = []
    for _ in range(count):
        drawn.append(_fault(rng, horizon, timing, clusters, candidates, controllers, kinds))
    drawn.sort(key=lambda fault: fault.at)
    heal = max([fault.at + fault.duration for fault in drawn] + [horizon])
    return Scenario(
        seed=seed,
        clusters=clusters,
        namespace="apps",
        lease="lease-a",
        timing=timing,
        controller_retry=controller_retry,
        replica_timing=replica_timing,
        leader_elect=leader_elect,
        watch_timeout=watch_timeout,
        api_latency=rng.uniform(0.001, 0.02),
        store_latency=rng.uniform(0.001, 0.05),
        candidates=tuple(candidates),
        controllers=controllers,
        faults=tuple(drawn),
        heal_at=heal,
        end_at=heal
        + liveness_bound_for(timing, controller_retry, replica_timing, watch_timeout)
        + 5.0,
    )


RESTART_DELAY = 5.0
"""Longest a crashed process stays down (a kubelet restart)."""


def _fault(
    rng: random.Random,
    horizon: float,
    timing: LeaseTiming,
    clusters: tuple[str, ...],
    candidates: list[CandidateSpec],
    controllers: tuple[ControllerSpec, ...],
    kinds: tuple[str, ...],
) -> Fault:
    kind = rng.choice(kinds)
    at = rng.uniform(2.0, horizon)
    d = timing.lease_duration
    processes = [c.name for c in candidates] + [c.name for c in controllers]
    if kind == "crash-candidate":
        return Fault(at, kind, rng.choice(candidates).name, rng.uniform(0.0, RESTART_DELAY))
    if kind == "crash-controller":
        return Fault(at, kind, rng.choice(controllers).name, rng.uniform(0.0, RESTART_DELAY))
    if kind == "pause":
        return Fault(at, kind, rng.choice(processes), rng.choice([0.2, 1.0, d / 2, d, 3 * d]))
    if kind == "wall-step":
        return Fault(
            at, kind, rng.choice(processes), 0.0, rng.choice([-1, 1]) * rng.uniform(1, 120)
        )
    if kind in ("partition-store", "lost-answer-store"):
        target = rng.choice([c.name for c in controllers])
        return Fault(at, kind, target, rng.uniform(0.5, 2 * d) if "partition" in kind else 0.0)
    if kind in ("partition-api", "lost-answer-api", "trickle-api"):
        target = rng.choice(processes)
        span = rng.uniform(0.5, 2 * d) if kind != "lost-answer-api" else 0.0
        return Fault(at, kind, target, span, rng.uniform(1.0, 10.0))
    if kind == "store-down":
        return Fault(at, kind, "store", rng.uniform(0.5, 2 * d))
    if kind == "api-slow":
        return Fault(at, kind, rng.choice(clusters), rng.uniform(1.0, 2 * d), rng.uniform(0.1, 3))
    if kind in ("api-hung", "api-restart"):
        return Fault(at, kind, rng.choice(clusters), rng.uniform(0.2, d))
    if kind == "watch-drop":
        return Fault(at, kind, rng.choice(clusters), 0.0)
    if kind == "forge-status":
        # amount: how many generations off, below (negative) or above the current one
        return Fault(at, kind, rng.choice(clusters), 0.0, rng.choice([-3, -2, -1, -1, 1, 2]))
    return Fault(at, "delete-object", rng.choice(clusters), 0.0)


LIST_TIMEOUT = 30.0
"""The controller's list request read timeout (``_manager.Controller._list``): a list sent into
a hung API server can still be waiting for that long after the server recovered."""


def liveness_bound_for(
    timing: LeaseTiming, controller_retry: float, replica: LeaseTiming, watch_timeout: float
) -> float:
    """Once every fault has healed, some candidate acts within this (docs/reliability.md derives
    it term by term): a crashed process restarts (``RESTART_DELAY``); a replica wins its election
    (``D_r + 2 P_r``); the controller's watch is live again, a request sent into the fault having
    timed out (``max(LIST_TIMEOUT, watch_timeout + grace)``); a candidate whose confirmations came
    late is backed off for a ``hold`` and a second local candidate that took the spec meanwhile
    waits a ``hold`` more for the first one's lease to run out (``2 hold``); a record held for
    someone who stopped expires by observation (``D``); the candidate retries and the controller
    confirms (``2 P + 2 P_c + C``); 2 s of scheduling slack."""
    from mclease_core.controller._decisions import windows
    from mclease_core.controller._manager import watch_grace

    call_bound = confirmation_bound(timing)
    hold = windows(
        int(timing.lease_duration),
        int(timing.renew_deadline),
        int(timing.retry_period),
        call_bound=call_bound,
    ).hold
    return (
        RESTART_DELAY
        + replica.lease_duration
        + 2 * replica.retry_period
        + max(LIST_TIMEOUT, watch_timeout + watch_grace(watch_timeout))
        + 2 * hold
        + timing.lease_duration
        + 2 * timing.retry_period
        + 2 * controller_retry
        + call_bound
        + 2.0
    )


def describe(scenario: Scenario) -> str:
    t = scenario.timing
    lines = [
        f"seed {scenario.seed}: clusters {','.join(scenario.clusters)}; D={t.lease_duration:g} "
        f"R={t.renew_deadline:g} P={t.retry_period:g} C={scenario.call_bound:.3f}; controller "
        f"P_c={scenario.controller_retry:g} watch {scenario.watch_timeout:g}s; leader-elect "
        f"{scenario.leader_elect} (D_r={scenario.replica_timing.lease_duration:g})",
        "  candidates: " + ", ".join(f"{c.name} ({c.elector})" for c in scenario.candidates),
        "  controllers: " + ", ".join(c.name for c in scenario.controllers),
    ]
    for fault in scenario.faults:
        extra = f" amount {fault.amount:.2f}" if fault.amount else ""
        lines.append(
            f"  fault at {fault.at:8.3f}: {fault.kind} {fault.target} for {fault.duration:.2f}s"
            + extra
        )
    lines.append(f"  healed by {scenario.heal_at:.3f}, run ends {scenario.end_at:.3f}")
    return "\n".join(lines)
