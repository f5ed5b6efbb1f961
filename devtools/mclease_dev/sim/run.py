"""One simulated run: build the world a seed describes, run it, judge it."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import kubernetes.leaderelection.leaderelection as standard_elector

from mclease_core import _clock, _elector, _instrumented, _watchdog
from mclease_core.controller import _manager, _metrics, _queue, _reconciler
from mclease_core.kube import _candidate, _client, _lease_storage, _lock

from . import runtime
from .actors import Actor, CandidateActor, ControllerActor, Records
from .apiserver import ApiServer, K8sShim, SimWatch
from .checks import acting_end, check, check_deletions, check_renewals
from .scenario import FAULT_KINDS, Fault, Scenario, draw, liveness_bound_for
from .store import StoreServer


def _same_client(client: Any, **_: Any) -> Any:
    return client


def product_patches() -> dict[Any, dict[str, Any]]:
    """Where the product reads clocks, makes threads and reaches the API server."""
    k8s = K8sShim()
    t, th, r = runtime.TIME, runtime.THREADING, runtime.RANDOM
    return {
        _clock: {"time": t},
        _clock.SystemClock: {"now": lambda self: runtime.wall_datetime()},
        _elector: {"threading": th, "random": r},
        _instrumented: {"threading": th},
        _watchdog: {"threading": th},
        _candidate: {"threading": th},
        _lock: {"time": t, "threading": th, "k8s": k8s, "single_attempt_client": _same_client},
        _client: {"threading": th, "_abandoned": runtime._PerProcessSemaphore()},
        _lease_storage: {"k8s": k8s},
        _manager: {
            "time": t,
            "threading": th,
            "random": r,
            "k8s": k8s,
            "raw_watch": SimWatch,
            "single_attempt_client": _same_client,
        },
        _metrics: {"time": t, "threading": th},
        _queue: {"time": t, "threading": th},
        _reconciler: {"time": t},
        standard_elector: {"time": t, "threading": th},
    }


def combined(*layers: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """Patch tables merged per target, later layers winning per attribute."""
    merged: dict[Any, dict[str, Any]] = {}
    for layer in layers:
        for target, attributes in layer.items():
            merged.setdefault(target, {}).update(attributes)
    return merged


@dataclasses.dataclass
class Result:
    seed: int
    violations: list[str]
    trace: list[str]
    faults: int
    terms: int
    calls: int
    first_leader_after_heal: float | None
    simulated: float
    wall: float
    steps: int
    scenario: Scenario


class _TraceHandler(logging.Handler):
    def __init__(self, world: runtime.World):
        super().__init__(logging.INFO)
        self.world = world

    def emit(self, record: logging.LogRecord) -> None:
        try:
            who = runtime.current_process().name
        except (RuntimeError, AttributeError):
            who = "-"
        self.world.note(f"{who}: [{record.name}] {record.getMessage()}")


def run_seed(
    seed: int,
    *,
    trace: bool = False,
    scenario: Scenario | None = None,
    product: Callable[[], dict[Any, dict[str, Any]]] = product_patches,
    kinds: tuple[str, ...] = FAULT_KINDS,
) -> Result:
    scenario = scenario or draw(seed, kinds=kinds)
    began = time.perf_counter()
    world = runtime.World(seed)
    runtime.World.current = world
    handler = _TraceHandler(world) if trace else None
    mclease_log = logging.getLogger("mclease")
    if handler is not None:
        mclease_log.addHandler(handler)
        previous_level = mclease_log.level
        mclease_log.setLevel(logging.INFO)
    else:
        logging.disable(logging.CRITICAL)
    records = Records()
    store = StoreServer(f"sim-{seed}-{id(world)}", scenario.store_latency)
    store.world = world
    servers = {cluster: ApiServer(cluster, scenario.api_latency) for cluster in scenario.clusters}
    for server in servers.values():
        server.world = world
    try:
        with runtime.patched(product()):
            candidates = [
                CandidateActor(world, scenario, records, spec, servers[spec.cluster])
                for spec in scenario.candidates
            ]
            controllers = [
                ControllerActor(world, scenario, records, spec, servers[spec.cluster], store)
                for spec in scenario.controllers
            ]
            actors: dict[str, Actor] = {a.name: a for a in [*candidates, *controllers]}
            for candidate in candidates:
                world.at(candidate.spec.start, candidate.start)
            for controller in controllers:
                world.at(controller.spec.start, controller.start)
            for fault in scenario.faults:
                world.at(fault.at, _injector(world, fault, actors, servers, store, scenario))
            world.at(scenario.heal_at, lambda: _probe(world, scenario, candidates, servers))
            world.run_until(scenario.end_at)
            spans = [(t, t.started, acting_end(t, scenario, world.now)) for t in records.terms]
            verdict = check(scenario, records, world.now, world.thread_errors)
            bound = liveness_bound_for(
                scenario.timing,
                scenario.controller_retry,
                scenario.replica_timing,
                scenario.watch_timeout,
            )
            for server in servers.values():
                verdict.violations += check_deletions(
                    server.deletions, scenario.heal_at, bound, world.now
                )
            verdict.violations += check_renewals(store.writes, spans, scenario)
            world.close()
    finally:
        runtime.World.current = None
        store.forget()
        if handler is not None:
            mclease_log.removeHandler(handler)
            mclease_log.setLevel(previous_level)
        else:
            logging.disable(logging.NOTSET)
    return Result(
        seed=seed,
        violations=verdict.violations,
        trace=world.trace,
        faults=len(scenario.faults),
        terms=verdict.terms,
        calls=verdict.calls,
        first_leader_after_heal=verdict.first_leader_after_heal,
        simulated=world.now,
        wall=time.perf_counter() - began,
        steps=world.steps,
        scenario=scenario,
    )


SETTLE = 2.0
"""Lease durations a run goes on after a leader acts again, past the heal (overlaps happen there
too: the first takeover after a fault), and never less than the longest acting bound (the
standard elector's ``3C + 2P + R``) and a lease duration: a term acting when the run ends is cut
there, so a takeover it would overlap must come before."""


def settle_time(scenario: Scenario) -> float:
    t = scenario.timing
    longest = 3 * scenario.call_bound + 2 * t.retry_period + t.renew_deadline
    return max(SETTLE * t.lease_duration, longest + t.lease_duration)


def _probe(
    world: runtime.World,
    scenario: Scenario,
    candidates: list[CandidateActor],
    servers: dict[str, ApiServer],
) -> None:
    """After the heal: end the run :func:`settle_time` after a leader acts and no deletion is
    pending, instead of running out the whole liveness bound."""
    leading = any(c.term is not None and c.process.alive for c in candidates)
    pending = any(
        removed is None for server in servers.values() for _, removed in server.deletions.values()
    )
    if leading and not pending:
        world.stop_at = world.now + settle_time(scenario)
        return
    world.after(0.25, lambda: _probe(world, scenario, candidates, servers))


def _injector(
    world: runtime.World,
    fault: Fault,
    actors: dict[str, Actor],
    servers: dict[str, ApiServer],
    store: StoreServer,
    scenario: Scenario,
) -> Callable[[], None]:
    def inject() -> None:
        world.note(
            f"FAULT {fault.kind} {fault.target} for {fault.duration:.2f}s {fault.amount:+.2f}"
        )
        until = world.now + fault.duration if fault.duration != float("inf") else float("inf")
        actor = actors.get(fault.target)
        kind = fault.kind
        if kind in ("crash-candidate", "crash-controller"):
            assert actor is not None
            forever = fault.duration == float("inf")
            actor.crash(restart_after=None if forever else fault.duration)
        elif kind == "pause":
            assert actor is not None
            actor.pause(fault.duration)
        elif kind == "wall-step":
            assert actor is not None
            actor.step_wall(fault.amount)
        elif kind in ("lost-answer-store", "partition-store"):
            assert actor is not None
            link = store.link(actor.process.name)
            if kind == "lost-answer-store":
                link.lose_next_answer = True
            else:
                link.partitioned_until = until
        elif kind in ("lost-answer-api", "partition-api", "trickle-api"):
            assert actor is not None
            cluster = fault.target.split("/", 1)[0]
            link = servers[cluster].link(actor.process.name)
            if kind == "lost-answer-api":
                link.lose_next_answer = True
            elif kind == "partition-api":
                link.partitioned_until = until
            else:
                link.trickle_until, link.trickle_delay = until, fault.amount
        elif kind == "store-down":
            store.down_until = until
        elif kind == "api-slow":
            every = servers[fault.target].link("*")
            every.slow_until, every.slow_extra = until, fault.amount
        elif kind == "api-hung":
            servers[fault.target].hung_until = until
        elif kind == "api-restart":
            servers[fault.target].down_until = until
            servers[fault.target].close_watches()
        elif kind == "watch-drop":
            servers[fault.target].drop_watches()
        elif kind == "delete-object":
            server = servers[fault.target]
            if (scenario.namespace, scenario.lease) in server.objects:
                server.delete(scenario.namespace, scenario.lease)
        elif kind == "forge-status":
            _forge_status(world, servers[fault.target], scenario, int(fault.amount))

    return inject


def _forge_status(world: runtime.World, server: ApiServer, scenario: Scenario, off: int) -> None:
    """A status that names a local candidate (the spec's holder, else any) for the generation
    ``off`` from the current one, written with admin rights, as a stale or foreign writer would."""
    found = server.objects.get((scenario.namespace, scenario.lease))
    if found is None:
        return
    generation = int(found["metadata"]["generation"])
    holder = (found.get("spec") or {}).get("holderIdentity") or world.rng.choice(
        [c.identity for c in scenario.candidates if c.cluster == server.cluster]
    )
    forged = {
        "observedGeneration": max(0, generation + off),
        "globalHolderIdentity": holder,
        "globalHolderCluster": server.cluster,
    }
    world.note(f"FORGED status of {server.cluster}: {forged} (generation {generation})")
    server.patch_status(scenario.namespace, scenario.lease, {"status": forged})
