"""The simulated pods: candidates (both electors on the real lock) and controller replicas.

Each actor runs one process at a time on its machine; a crash kills it and a restart starts a new
process (a new incarnation) on the same machine, with the same pod name. What the checkers need is
recorded as it happens, in true time: each term from its started callback to its stopped callback
(or the crash), every confirmation the lock accepted, and every lock call with its duration.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kubernetes.leaderelection.leaderelection import LeaderElection

from mclease_core._elector import ElectorCallbacks, LeadershipTerm
from mclease_core.controller._manager import Controller, ControllerConfig
from mclease_core.kube._candidate import CandidateElector
from mclease_core.kube._lock import MultiClusterLeaseLock

from .apiserver import ApiServer, SimApiClient
from .runtime import SimProcess, World, sleep_true
from .scenario import CandidateSpec, ControllerSpec, Scenario
from .store import SimStorage, StoreServer


@dataclasses.dataclass
class Term:
    actor: str
    incarnation: int
    elector: str
    cluster: str
    identity: str
    process: SimProcess
    started: float
    token: int | None
    stopped: float | None = None
    confirmations: list[tuple[float, float, int | None]] = dataclasses.field(default_factory=list)
    """(true time accepted, monotonic start of the confirmed call, fencing token)."""


@dataclasses.dataclass
class Call:
    actor: str
    method: str
    started: float
    """True time."""
    took: float | None
    """On the process's monotonic clock; ``None`` while the call has not returned."""
    process: SimProcess


class Records:
    def __init__(self) -> None:
        self.terms: list[Term] = []
        self.calls: list[Call] = []
        self.confirmations: list[tuple[str, int, float, float, int | None]] = []
        """(actor, incarnation, true time accepted, monotonic start of the call, token)."""
        self.pauses: dict[int, list[tuple[float, float]]] = {}
        """Per process id: true-time spans it was paused."""
        self.deletions: list[tuple[str, str, float, float | None]] = []
        """(cluster, uid, requested, removed) of each deleted object."""


class RecordingLock(MultiClusterLeaseLock):
    """The real lock; each call's duration and each accepted confirmation are recorded."""

    actor: CandidateActor

    def _timed(self, method: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        actor = self.actor
        world = actor.world
        started, mono = world.now, self.clock.monotonic()
        before = self.last_confirmation
        record = Call(actor.spec.name, method, started, None, actor.process)
        actor.records.calls.append(record)  # a call that never returns is judged too
        try:
            return call(*args, **kwargs)
        finally:
            record.took = self.clock.monotonic() - mono
            after = self.last_confirmation
            if after is not None and after is not before:
                entry = (world.now, after.signalled_at, after.fencing_token)
                actor.records.confirmations.append((actor.spec.name, actor.incarnation, *entry))
                if actor.term is not None:
                    actor.term.confirmations.append(entry)

    def get(self, name: str, namespace: str) -> tuple[bool, Any]:
        return self._timed("get", super().get, name, namespace)  # type: ignore[no-any-return]

    def create(self, name: str, namespace: str, election_record: Any) -> bool:
        return self._timed("create", super().create, name, namespace, election_record)  # type: ignore[no-any-return]

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        return self._timed("update", super().update, name, namespace, updated_record)  # type: ignore[no-any-return]


class Actor:
    def __init__(self, world: World, scenario: Scenario, records: Records, name: str, machine: Any):
        self.world = world
        self.scenario = scenario
        self.records = records
        self.name = name
        self.machine = machine
        self.wall_offset = machine.wall_offset
        self.incarnation = -1
        self.process: SimProcess = self._new_process()  # a placeholder until start()
        self.process.alive = False

    def _new_process(self) -> SimProcess:
        self.incarnation += 1
        return SimProcess(
            self.world,
            f"{self.name}#{self.incarnation}",
            rate=self.machine.rate,
            mono_origin=self.machine.origin,
            wall_offset=self.wall_offset,
        )

    def start(self) -> None:
        self.process = self._new_process()
        self.world.note(f"{self.process.name}: started")
        self.process.spawn(self.main, "main")

    def crash(self, restart_after: float | None) -> None:
        if not self.process.alive:
            return
        self.process.crash()
        self.on_crash()
        if restart_after is not None:
            self.world.after(restart_after, self.start)

    def step_wall(self, seconds: float) -> None:
        self.wall_offset += seconds
        self.process.wall_offset = self.wall_offset
        self.world.note(f"{self.process.name}: wall clock stepped {seconds:+.2f}s")

    def pause(self, seconds: float) -> None:
        process = self.process
        if not process.alive or process.paused:
            return
        process.pause()
        began = self.world.now
        self.records.pauses.setdefault(id(process), [])

        def resume() -> None:
            self.records.pauses[id(process)].append((began, self.world.now))
            process.resume()

        self.world.after(seconds, resume)

    def main(self) -> None:
        raise NotImplementedError

    def on_crash(self) -> None:
        pass


class CandidateActor(Actor):
    def __init__(
        self,
        world: World,
        scenario: Scenario,
        records: Records,
        spec: CandidateSpec,
        server: ApiServer,
    ):
        self.spec = spec
        self.server = server
        self.term: Term | None = None
        super().__init__(world, scenario, records, spec.name, spec.machine)

    def _lock(self) -> RecordingLock:
        timing = self.scenario.timing
        lock = RecordingLock(
            self.scenario.lease,
            self.scenario.namespace,
            self.spec.identity,
            lease_duration=int(timing.lease_duration),
            renew_deadline=int(timing.renew_deadline),
            retry_period=int(timing.retry_period),
            api_client=SimApiClient(self.server),  # type: ignore[arg-type]
            watch=False,  # the lock's watch of its object is not simulated (it only saves polls)
        )
        lock.actor = self
        return lock

    def _started(self, token: int | None, confirmation: Any) -> None:
        self.term = Term(
            self.spec.name,
            self.incarnation,
            self.spec.elector,
            self.spec.cluster,
            self.spec.identity,
            self.process,
            self.world.now,
            token,
        )
        if confirmation is not None:
            self.term.confirmations.append(
                (self.world.now, confirmation.signalled_at, confirmation.fencing_token)
            )
        self.records.terms.append(self.term)
        self.world.note(f"{self.process.name}: started leading (token {token})")

    def _stopped(self) -> None:
        if self.term is not None and self.term.stopped is None:
            self.term.stopped = self.world.now
            self.world.note(f"{self.process.name}: stopped leading")
        self.term = None

    def on_crash(self) -> None:
        self._stopped()

    def main(self) -> None:
        lock = self._lock()
        if self.spec.elector == "standard":
            self._run_standard(lock)
        else:
            self._run_candidate_elector(lock)

    def _run_standard(self, lock: RecordingLock) -> None:
        def started() -> None:
            confirmation = lock.last_confirmation
            self._started(confirmation.fencing_token if confirmation else None, confirmation)

        while True:
            LeaderElection(lock.election_config(started, self._stopped)).run()
            sleep_true(lock.timing.retry_period)

    def _run_candidate_elector(self, lock: RecordingLock) -> None:
        def started(term: LeadershipTerm) -> None:
            self._started(term.fencing_token, lock.last_confirmation)

        def stopped(term: LeadershipTerm, reason: str) -> None:
            self._stopped()

        elector = CandidateElector(
            lock,
            callbacks=ElectorCallbacks(on_started_leading=started, on_stopped_leading=stopped),
        )
        elector.run()


class ControllerActor(Actor):
    def __init__(
        self,
        world: World,
        scenario: Scenario,
        records: Records,
        spec: ControllerSpec,
        server: ApiServer,
        store: StoreServer,
    ):
        self.spec = spec
        self.server = server
        self.store = store
        self.exits: list[int] = []
        super().__init__(world, scenario, records, spec.name, spec.machine)

    def main(self) -> None:
        scenario = self.scenario
        config = ControllerConfig(
            cluster=self.spec.cluster,
            namespaces=[scenario.namespace],
            retry_period=scenario.controller_retry,
            workers=2,
            metrics_address=None,
            health_address=None,
            leader_elect=scenario.leader_elect,
            leader_elect_namespace="mclease-system",
            leader_elect_timing=scenario.replica_timing,
            watch_timeout=scenario.watch_timeout,
            identity=self.spec.identity,
        )
        controller = Controller(
            SimApiClient(self.server),  # type: ignore[arg-type]
            SimStorage(self.store),
            config,
        )
        code = controller.run()
        self.exits.append(code)
        self.world.note(f"{self.process.name}: exited {code}; restarting")
        process = self.process
        process.alive = False  # the container ended; the kubelet starts a new one
        self.world.after(1.0 + self.world.rng.random(), self.start)
