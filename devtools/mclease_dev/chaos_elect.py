"""The ``mclease elect`` rounds of :mod:`mclease_dev.chaos` (``--mode elect``, or every other
round of ``--mode both``): no Kubernetes.

A round starts the round's store as the controller rounds do (a SQLite file, ``redis-server``,
``etcd``, a three-member etcd cluster, ``fake-gcs-server``) and two ``mclease elect`` processes
(:class:`~mclease_dev.processes.ElectProcess`, timings D, R, P = 3, 2, 0.5 and the CLI's default
kill grace ``(D - R) / 3``) campaigning for one lease on it, started in a seeded order. Each
reaches a network store through its own :class:`~mclease_dev.chaos._Link` (FaultProxy ->
TcpProxy), so proxy faults hit one of them. Each runs a heartbeat command (like ``HEARTBEAT`` in
``tests/cli/test_elect_processes.py``): ``<monotonic time> <fencing token>`` every 20 ms, and its
pid once at its start. Once a command has heartbeat for 2 s, one seeded fault
(:data:`ELECT_FAULTS`) is applied and healed, and the round watches as the controller rounds do.

Faults: ``kill-elect-leader`` (``kill -9`` of the leading ``mclease elect`` alone, not its process
group: its supervisor and command must die by ``PR_SET_PDEATHSIG``); ``pause-elect-leader``
(SIGSTOP of the leading ``mclease elect`` alone for 0.5-10 s, then SIGCONT: its supervisor must
stop the command at the term's deadline); ``pause-command`` and ``kill-command`` (SIGSTOP for
0.5-10 s, or ``kill -9``, of the leader's command only); the proxy faults of one elector's link;
``store-restart`` (Redis, etcd); ``kill-store-leader`` (etcd3).

Checks, on the machine's shared monotonic clock:

- ``overlap``: no two commands' heartbeat spans (one per fencing token) share a moment;
- ``fencing``: each term's fencing token is larger than the one of the term before it;
- ``failover``: heal -> a command heartbeating within D + 2P (+ 0.3 s), :func:`failover_bound`
  (derived next to :data:`ELECT_FAILOVER_BOUND`: no document states one);
- ``orphan``: a ``kill -9``'d ``mclease elect``'s command beats no later than 0.2 s after it;
- ``exit``: no ``mclease elect`` exited on its own, except as its docs say: 3 (leadership lost)
  after a fault that could cost its term (its pause, its link, the store), 137 (its command's
  own code) after its command was killed -9; ``error``: the round itself failed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mclease_core.testing import ServerProcess, wait_until

from .chaos import (
    FIRST_LEADER_TIMEOUT,
    LEAD_BEFORE_FAULT,
    PROXY_FAULTS,
    PROXY_SECONDS,
    SETTLE,
    SLACK,
    STORE_DOWN,
    Fault,
    RoundResult,
    Violation,
    _Link,
    _longest_gap,
    _start_store,
    _store_url,
    carry_out,
    kill_store_leader,
    proxy_fault,
    result_seed_for_order,
)
from .multicluster import Interval, describe, overlaps
from .processes import ElectProcess
from .records import HEARTBEAT_FRESH
from .servers import etcd_cluster

__all__ = [
    "ELECT_FAILOVER_BOUND",
    "ELECT_FAULTS",
    "KILL_GRACE",
    "TIMING",
    "TIMINGS",
    "ElectCandidate",
    "draw_elect_fault",
    "failover_bound",
    "run_elect_round",
    "timing_of",
]

TIMING = (3.0, 2.0, 0.5)
"""D, R, P as ``tests/cli/test_elect_processes.py`` runs ``mclease elect``."""
TIMINGS = {"gcs": (3.0, 2.0, 1.0)}
"""Where the CLI refuses :data:`TIMING`: a GCS object takes a write per second at most, and
``mclease elect`` refuses a retry period below a backend's ``min_write_interval`` (1 s)."""
D, R, P = TIMING
KILL_GRACE = (D - R) / 3
"""The CLI's default kill grace for these timings (and for GCS'): a third of ``D - R``, below
``D - R - m``."""
LEASE = "chaos-elect"

# The failover bound. Neither README.md nor docs/ states one for ``mclease elect``, so it is
# derived here (the e2e crash bound D + 2P of the controller rounds, and the kill -9 test of
# tests/cli/test_elect_processes.py, use the same figure):
# - The leader's last renewal was written at some c no later than the fault (kill, pause, cut
#   link) or the heal (a store outage). The follower polls every P * (1 + 0.2 u) <= 1.2P, so it
#   has read that version by c + 1.2P (+ one read); it then wakes when the lease it observed
#   expires and takes over at c + 1.2P + D (+ one write). Its elector then starts the supervisor
#   and the supervisor the command (two interpreter start-ups) before the first heartbeat.
#   So heal -> heartbeat <= D + 1.2P + two calls + two start-ups; 0.8P = 0.4 s covers the last
#   three on this machine: D + 2P = 4 s.
# - The kill grace does not enter: the new leader never waits for the old command. That the old
#   command had SIGKILL by s + R + kill_grace < s + D is what keeps the takeover *safe*, not what
#   delays it. It bounds a hand-over that goes through a release instead (kill-command: the old
#   elector stops nothing, releases at once; a SIGTERM: <= kill_grace, then a release), which the
#   follower sees at its next poll: <= kill_grace + 1.2P + calls, far below D + 2P.
ELECT_FAILOVER_BOUND = D + 2 * P


def timing_of(store: str) -> tuple[float, float, float]:
    """D, R, P of the round's ``mclease elect`` processes on ``store``."""
    return TIMINGS.get(store, TIMING)


def failover_bound(store: str) -> float:
    """D + 2P of :func:`timing_of` (:data:`ELECT_FAILOVER_BOUND` but on GCS: 5 s)."""
    duration, _, period = timing_of(store)
    return duration + 2 * period


PROCESS_FAULTS = ("kill-elect-leader", "pause-elect-leader", "pause-command", "kill-command")
ELECT_FAULTS: dict[str, tuple[str, ...]] = {
    "sqlite": PROCESS_FAULTS,
    "redis": (*PROCESS_FAULTS, *PROXY_FAULTS, "store-restart"),
    "etcd": (*PROCESS_FAULTS, *PROXY_FAULTS, "store-restart"),
    "etcd3": (*PROCESS_FAULTS, "kill-store-leader"),
    "gcs": (*PROCESS_FAULTS, *PROXY_FAULTS),
}
"""The faults of an elect round per store kind (as the controller rounds', see
:data:`mclease_dev.chaos.FAULTS`; no ``store-wipe``, outside what docs/safety.md assumes)."""
PAUSE = (0.5, 10.0)
"""Seconds a pause of the leading ``mclease elect``, or of its command, lasts."""
COMMAND_GONE = 0.2
"""A ``kill -9``'d elector's command beats no later than this after the kill."""
TERM_ENDING = frozenset({"pause-elect-leader", *PROXY_FAULTS, "store-restart", "kill-store-leader"})
"""Faults after which a leader may have lost its term and exited 3."""
EXIT_LEADERSHIP_LOST = 3
EXIT_COMMAND_KILLED = 128 + signal.SIGKILL

HEARTBEAT = """
import os, sys, time
token = os.environ["MCLEASE_FENCING_TOKEN"]
with open(sys.argv[2], "a", buffering=1) as pids:
    pids.write(f"{os.getpid()} {token}\\n")
with open(sys.argv[1], "a", buffering=1) as out:
    while True:
        out.write(f"{time.monotonic()} {token}\\n")
        time.sleep(0.02)
"""
"""tests/cli/test_elect_processes.py's HEARTBEAT, and the command's pid in a file of its own."""


def draw_elect_fault(rng: random.Random, store: str, only: Sequence[str] = ()) -> Fault:
    """The fault of an elect round on ``store`` (among ``only``, if given and applicable)."""
    choices = [k for k in ELECT_FAULTS[store] if k in only] if only else list(ELECT_FAULTS[store])
    kind = rng.choice(choices or list(ELECT_FAULTS[store]))
    at_leader = rng.random() < 0.75
    pick = rng.random()
    trickle_delay = round(rng.uniform(0.005, 0.05), 3)
    if kind in ("pause-elect-leader", "pause-command"):
        seconds = rng.uniform(*PAUSE)
    elif kind in PROXY_FAULTS:
        seconds = rng.uniform(*PROXY_SECONDS)
    elif kind in ("store-restart", "kill-store-leader"):
        seconds = rng.uniform(*STORE_DOWN)
    else:
        seconds = 0.0
    if kind not in PROXY_FAULTS:
        at_leader = True
    return Fault(kind, round(seconds, 2), at_leader, pick, trickle_delay)


def _complete_lines(path: Path) -> list[list[str]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    lines = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]
    return [line.split() for line in lines]


class ElectCandidate(ElectProcess):
    """One ``mclease elect`` running the heartbeat command; reads back what its commands wrote."""

    def __init__(
        self,
        identity: str,
        url: str,
        workdir: Path,
        timing: tuple[float, float, float] = TIMING,
    ):
        self.beats_path = workdir / f"{identity}.beats"
        self.pids_path = workdir / f"{identity}.pids"
        script = workdir / "heartbeat.py"
        script.write_text(HEARTBEAT)
        command = [sys.executable, str(script), str(self.beats_path), str(self.pids_path)]
        super().__init__(identity, url, LEASE, command, workdir / f"{identity}.log", timing=timing)

    def beats(self) -> list[tuple[float, int]]:
        return [
            (float(t), int(n))
            for t, n in (r for r in _complete_lines(self.beats_path) if len(r) == 2)
        ]

    def intervals(self) -> list[Interval]:
        terms: dict[int, list[float]] = {}
        for moment, token in self.beats():
            terms.setdefault(token, []).append(moment)
        return [Interval(self.name, t, min(ms), max(ms)) for t, ms in sorted(terms.items())]

    def leading(self) -> bool:
        beats = self.beats()
        return bool(beats) and time.monotonic() - beats[-1][0] < HEARTBEAT_FRESH

    def first_beat_after(self, moment: float) -> float | None:
        return next((t for t, _ in self.beats() if t > moment), None)

    def command_pid(self) -> int | None:
        """The pid of its latest command (its heartbeat script)."""
        rows = [r for r in _complete_lines(self.pids_path) if len(r) == 2]
        return int(rows[-1][0]) if rows else None


def _running(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class _ElectRound:
    def __init__(self, result: RoundResult, workdir: Path, say: Callable[[str], None]):
        self.result = result
        self.workdir = workdir
        self.say = say
        self.electors: list[ElectCandidate] = []
        self.links: dict[str, _Link] = {}
        self.store: ServerProcess | None = None
        self.members: list[ServerProcess] = []
        self.stopped: list[int] = []
        """Pids SIGSTOPped now (continued at the tear-down)."""
        self.origin = time.monotonic()
        self.first_leader: float | None = None
        self.heal: float | None = None
        self.watch_end: float | None = None
        self.exits: dict[str, int] = {}
        self.led_at_fault: ElectCandidate | None = None
        self.killed: tuple[ElectCandidate, float] | None = None
        """The ``mclease elect`` killed -9 and when (``kill-elect-leader``)."""
        self.orphan_pid: int | None = None
        self.bound = failover_bound(result.store)
        self.aimed_at: set[str] = set()
        """Who the fault could cost its term (and so make exit 3)."""

    def set_up(self, stack: contextlib.ExitStack) -> None:
        kind = self.result.store
        self.workdir.mkdir(parents=True, exist_ok=True)
        if kind == "etcd3":
            self.members = stack.enter_context(etcd_cluster(3))
        else:
            self.store = _start_store(stack, kind, self.result.fault)
        names = ["alpha", "beta"]
        random.Random(result_seed_for_order(self.result.seed)).shuffle(names)
        for name in names:
            address = ",".join(member.address for member in self.members)
            if self.store is not None:
                self.links[name] = _Link(stack, self.store.host, self.store.port)
                address = self.links[name].address
            url = _store_url(kind, address, self.workdir)
            elector = ElectCandidate(name, url, self.workdir, timing_of(kind))
            elector.start()
            self.electors.append(elector)
            time.sleep(0.3)  # the seeded order, not the start-up times, should decide

    def leaders(self) -> list[ElectCandidate]:
        return [e for e in self.electors if e.alive() and e.leading()]

    def wait_first_leader(self) -> ElectCandidate:
        def first() -> float | None:
            for elector in self.electors:
                if not elector.alive():
                    raise elector.exited_error("exited while waiting for a first leader")
            beats = [b for e in self.electors if (b := e.first_beat_after(0.0)) is not None]
            return min(beats) if beats else None

        began = wait_until(
            first, timeout=FIRST_LEADER_TIMEOUT, message="a first leader", interval=0.05
        )
        assert began is not None
        self.first_leader = began
        time.sleep(max(0.0, began + LEAD_BEFORE_FAULT - time.monotonic()))
        (leader, *_) = wait_until(self.leaders, timeout=10, message="a leader now")
        return leader

    def pause(self, pid: int, seconds: float) -> float:
        os.kill(pid, signal.SIGSTOP)
        self.stopped.append(pid)
        time.sleep(seconds)
        resumed = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        self.stopped.remove(pid)
        return resumed

    def apply(self, leader: ElectCandidate) -> None:
        fault = self.result.fault
        kind = fault.kind
        note = self.result.notes.append
        self.led_at_fault = leader
        self.result.leader = f"{leader.name} (mclease elect)"
        other = next(e for e in self.electors if e is not leader)
        if kind in ("store-restart", "kill-store-leader"):
            self.aimed_at = {e.name for e in self.electors}
        elif kind in PROXY_FAULTS:
            self.aimed_at = {(leader if fault.at_leader else other).name}
        elif kind == "pause-elect-leader":
            self.aimed_at = {leader.name}
        command = leader.command_pid()
        if kind in ("pause-command", "kill-command") and command is None:
            raise AssertionError(f"{leader.name} leads but wrote no command pid")
        if kind == "kill-elect-leader":
            self.orphan_pid = command
            killed = time.monotonic()
            os.kill(leader.pid, signal.SIGKILL)  # the elector alone, not its process group
            leader.killed_at = killed
            assert leader.popen is not None
            leader.popen.wait(10)
            self.killed = (leader, killed)
            self.heal = killed
            note(f"killed -9 {leader.name} (pid {leader.pid}), not its command (pid {command})")
        elif kind == "pause-elect-leader":
            note(f"paused {leader.name} (pid {leader.pid}) alone for {fault.seconds:.2f}s")
            self.heal = self.pause(leader.pid, fault.seconds)
        elif kind == "pause-command":
            assert command is not None
            note(f"paused {leader.name}'s command (pid {command}) for {fault.seconds:.2f}s")
            self.heal = self.pause(command, fault.seconds)
        elif kind == "kill-command":
            assert command is not None
            self.heal = time.monotonic()
            os.kill(command, signal.SIGKILL)
            note(f"killed -9 {leader.name}'s command (pid {command})")
        elif kind in PROXY_FAULTS:
            target = leader if fault.at_leader else other
            self.heal = proxy_fault(self.links[target.name], kind, fault, self.result)
            note(f"{kind} on {target.name}'s link to the store for {fault.seconds:.2f}s")
        elif kind == "kill-store-leader":
            self.heal = kill_store_leader(self.members, fault.seconds, note)
        elif kind == "store-restart":
            assert self.store is not None
            self.store.kill()
            time.sleep(fault.seconds)
            self.store.start()
            self.heal = time.monotonic()
            note(f"store killed and started {fault.seconds:.2f}s later")
        else:
            raise AssertionError(f"unknown elect fault {kind}")

    def watch(self) -> None:
        """As the controller rounds: until a command beats after the heal (or the bound and
        10 s passed), then :data:`~mclease_dev.chaos.SETTLE` more, at least ``D + 2`` after the
        heal."""
        assert self.heal is not None
        heal = self.heal
        deadline = heal + self.bound + 10
        led: float | None = None
        while time.monotonic() < deadline:
            beats = [
                b
                for e in self.electors
                if e.killed_at is None and (b := e.first_beat_after(heal)) is not None
            ]
            if beats:
                led = min(beats)
                break
            time.sleep(0.05)
        until = max((led or time.monotonic()) + SETTLE, heal + timing_of(self.result.store)[0] + 2)
        time.sleep(max(0.0, until - time.monotonic()))
        self.watch_end = time.monotonic()

    def tear_down(self) -> None:
        for pid in list(self.stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if self.orphan_pid is not None and _running(self.orphan_pid):
            self.result.notes.append(f"the killed elector's command {self.orphan_pid} still ran")
        else:
            self.orphan_pid = None
        self.exits = {
            e.name: code
            for e in self.electors
            if (code := e.returncode) is not None and e.killed_at is None
        }
        for elector in self.electors:
            elector.terminate()

    def judge(self) -> None:
        result = self.result
        fault = result.fault

        def violation(check: str, detail: str) -> None:
            result.violations.append(
                Violation(result.index, result.seed, result.store, fault.kind, check, detail)
            )

        intervals = [i for e in self.electors for i in e.intervals()]
        shown = "intervals:\n" + describe(intervals, self.origin)
        for first, second in overlaps(intervals):
            shared = min(first.end, second.end) - second.start
            violation(
                "overlap",
                f"{first.candidate} token {first.term} and {second.candidate} token "
                f"{second.term} both ran for {shared:.3f}s from "
                f"{second.start - self.origin:.2f}s; {shown}",
            )
        ordered = sorted(intervals, key=lambda i: i.start)
        for before, after in itertools.pairwise(ordered):
            if after.term <= before.term:
                violation(
                    "fencing",
                    f"{after.candidate}'s term from {after.start - self.origin:.2f}s has token "
                    f"{after.term}, not above {before.candidate}'s {before.term}; {shown}",
                )

        if self.heal is not None:
            heal = self.heal
            # A killed elector's command beats on for a moment after the kill (until the
            # PR_SET_PDEATHSIG chain reaches it): those beats are not a failover.
            gone = self.killed[0].name if self.killed else None
            others = [i for i in intervals if i.candidate != gone]
            if any(i.start <= heal <= i.end for i in others):
                result.failover = 0.0
            else:
                after_heal = [i.start for i in others if i.start > heal]
                if after_heal:
                    result.failover = min(after_heal) - heal
            if result.failover is None or result.failover > self.bound + SLACK:
                took = "none" if result.failover is None else f"{result.failover:.2f}s"
                violation(
                    "failover",
                    f"heal -> a command heartbeating: {took} (bound D + 2P = "
                    f"{self.bound}s + {SLACK}s); {shown}",
                )
            if self.first_leader is not None and self.watch_end is not None:
                result.longest_gap = _longest_gap(intervals, self.first_leader, self.watch_end)

        if self.killed is not None:
            victim, killed = self.killed
            late = [t for t, _ in victim.beats() if t > killed + COMMAND_GONE]
            if late:
                violation(
                    "orphan",
                    f"{victim.name}'s command beat {late[-1] - killed:.2f}s after its elector "
                    f"was killed -9 (bound {COMMAND_GONE}s)",
                )
        if self.orphan_pid is not None:
            violation(
                "orphan", f"the command (pid {self.orphan_pid}) outlived its killed -9 elector"
            )

        for name, code in sorted(self.exits.items()):
            elector = next(e for e in self.electors if e.name == name)
            led = elector is self.led_at_fault or bool(elector.intervals())
            aimed = name in self.aimed_at and fault.kind in TERM_ENDING
            if code == EXIT_LEADERSHIP_LOST and led and aimed:
                result.notes.append(f"{name} exited 3 (leadership lost) after the {fault.kind}")
            elif (
                code == EXIT_COMMAND_KILLED
                and fault.kind == "kill-command"
                and elector is self.led_at_fault
            ):
                result.notes.append(f"{name} exited {code}, its killed command's code")
            else:
                violation("exit", f"{name} exited on its own with code {code}")


def run_elect_round(
    result: RoundResult, workdir: Path, say: Callable[[str], None] = print
) -> RoundResult:
    """One elect round in ``workdir`` (kept by the caller when it fails)."""
    return carry_out(_ElectRound(result, workdir, say), result, workdir)
