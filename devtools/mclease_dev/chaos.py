"""Randomized chaos on real processes: ``python -m mclease_dev.chaos --rounds N [--mode M]``.

For: finding schedules the hand-written e2e tests (``tests/e2e``) did not think of. Two kinds of
rounds (``--mode controllers|elect|both``, default ``both``: they alternate, a controller round
first, and each store kind gets one of each in turn):

- *controller rounds*, described below;
- *elect rounds* (:mod:`mclease_dev.chaos_elect`, no Kubernetes): two ``mclease elect``
  processes campaign for one lease on the round's store (the same kinds and set-up, a network
  store through the same per-process proxies), each running a heartbeat command (monotonic time
  and fencing token every 20 ms). Faults: ``kill -9`` or SIGSTOP (0.5-10 s) of the leading
  ``mclease elect`` alone (its supervisor must stop, or take down, its command), SIGSTOP or
  ``kill -9`` of the leader's command alone, the proxy faults of one elector's link,
  ``store-restart``, ``kill-store-leader`` (etcd3). Checks: ``overlap`` of two commands'
  heartbeat spans, ``fencing`` (each term's token above the previous one), ``failover`` within D
  + 2P of the heal (D, R, P = 3, 2, 0.5; P = 1 on GCS, whose minimum write interval the CLI
  enforces), ``orphan`` (a killed elector's command beats on), ``exit`` (only the documented
  exits: 3 after losing its term to the fault, the command's 137 after its command was killed).

The controller rounds start the test bed's two clusters (``east``, ``west``) once with the CRD
and the controller's RBAC, then run rounds. Each round gets a fresh namespace in both clusters,
a fresh global store (rotating through ``--stores``: a SQLite file, ``redis-server``, ``etcd``,
``fake-gcs-server``), two
controller replicas per cluster with ``--leader-elect`` (each cluster's pair reaches a network
store through its own proxies: :class:`~mclease_core.testing.FaultProxy` in front of
:class:`~mclease_dev.netproxy.TcpProxy`), and four recording candidates: in each cluster one on
the standard Python elector (:mod:`mclease_dev.candidate`) and one on ``CandidateElector`` (this
module's ``candidate`` sub-command, same records). Once a leader has led for 2 s, one seeded
random fault is applied and healed (:data:`FAULTS`), and the round watches for a while. Rounds
with an API fault put a :class:`~mclease_dev.netproxy.TcpProxy` between each cluster's
controllers and its API server; rounds with a wall-clock step run every candidate under
libfaketime, with its own offset file (:func:`faketime_environment`).

Checks, as the e2e suite makes them, on the machine's shared monotonic clock:

- ``overlap``: no two candidates' leadership intervals (heartbeat spans) share a moment;
- ``failover``: from the moment the fault healed (the kill, the SIGCONT, the proxy back to pass,
  the store started) to a leader at most ``D + 2P`` (the e2e crash bound); 0 when one leads then;
- ``call-bound``: every lock call ended within the lock's bound ``C`` (+0.1 s), except calls of
  a candidate while it was itself paused;
- ``step-down``: a term ended within ``2P + R + C`` (standard elector) or ``R``
  (``CandidateElector``) of its last confirmed call, plus 0.3 s of slack, except while the
  candidate was paused;
- ``exit``: no controller or candidate exited on its own (but a controller replica that lost its
  replica term, paused or cut off from its API server, exits 1, as rule 14 says; nothing
  restarts it here, unlike a kubelet); ``error``: the round itself failed.

Faults outside what docs/safety.md assumes (``store-wipe``: a Redis restart without persistence
loses acknowledged writes) are run and reported, but an overlap there is listed as
``outside assumptions``, not as a violation. Pauses of a *leading* candidate are drawn within the
envelope its elector is documented to survive (a longer pause is a documented break, rule 9 and
"What is assumed"); pauses of followers, of controllers and partitions are drawn freely.

Output: a line per round, then a summary table (and ``--json PATH``); exit 1 on any violation.
A failing round keeps its files (candidate records, process logs, ``verdict.txt``) under
``--keep`` and prints the one command that replays it (``--seed S --rounds 1 --stores K --mode
M``): round ``i``'s seed is derived from the base seed and ``i`` (round 0's is the base seed), and
its store is ``stores[i % len(stores)]`` (``stores[(i // 2) % len(stores)]`` with ``--mode
both``). The summary's per-fault figures name elect rounds' faults ``elect:KIND``.

Python API: :func:`run` (``tests/e2e/test_chaos.py``). Not for: the product's unit assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import itertools
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from mclease_core import ElectorCallbacks
from mclease_core.kube import CandidateElector
from mclease_core.testing import FaultProxy, ServerProcess, wait_until

from .candidate import Term, parse_args, recording_lock
from .kube import KubeCluster, find_assets, running_clusters
from .multicluster import (
    CONTROLLER_NAMESPACE,
    LEASE_DURATION,
    RENEW_DEADLINE,
    RETRY_PERIOD,
    CandidateProcess,
    ControllerProcess,
    Interval,
    ProcessGroup,
    Site,
    all_intervals,
    confirmation_bound,
    describe,
    leaders_now,
    new_namespace_name,
    overlaps,
    prepare_cluster,
    prepare_namespace,
)
from .netproxy import TcpProxy
from .processes import ManagedProcess
from .servers import (
    FAKE_GCS_BUCKET,
    etcd_cluster,
    etcd_leader,
    etcd_server,
    fake_gcs_server,
    redis_server,
)

__all__ = [
    "FAILOVER_BOUND",
    "FAULTS",
    "MODES",
    "STORE_KINDS",
    "Fault",
    "RoundResult",
    "Summary",
    "Violation",
    "draw_fault",
    "main",
    "round_mode",
    "round_seed",
    "run",
]

STORE_KINDS = ("sqlite", "redis", "etcd", "etcd3", "gcs")
ROUND_MODES = ("controllers", "elect")
MODES = (*ROUND_MODES, "both")
"""``--mode``: controller rounds, ``mclease elect`` rounds, or both (alternating, controllers
first)."""
"""``etcd3`` is a three-member etcd cluster, its members all in the controllers' store URL."""
NETWORK_STORES = ("redis", "etcd", "gcs")

PROCESS_FAULTS = ("kill-leader", "kill-active-replica", "pause-candidate", "pause-active-replica")
PROXY_FAULTS = ("proxy-trickle", "proxy-blackhole", "proxy-lose-answers")
API_FAULTS = ("api-trickle", "api-blackhole")
"""Between a cluster's controller replicas and their API server (the candidates' path is left
alone): answers trickle, or nothing crosses in either direction."""
ANY_STORE = (*PROCESS_FAULTS, *API_FAULTS, "wall-step-candidate")
FAULTS: dict[str, tuple[str, ...]] = {
    "sqlite": ANY_STORE,
    "redis": (*ANY_STORE, *PROXY_FAULTS, "store-restart", "store-wipe"),
    "etcd": (*ANY_STORE, *PROXY_FAULTS, "store-restart"),
    "etcd3": (*ANY_STORE, "kill-store-leader"),
    "gcs": (*ANY_STORE, *PROXY_FAULTS),
}
"""The faults drawn per store kind. ``store-restart`` is a kill -9 and a start later with every
write kept (etcd; Redis with ``appendfsync always``); ``store-wipe`` loses them all (Redis
without persistence). fake-gcs-server has no restart: its memory backend loses everything, which
no real GCS does. ``kill-store-leader``: the etcd cluster's raft leader is killed -9 (the fault
heals when the others elected a new one) and started again later. ``wall-step-candidate``: one
candidate's wall clock jumps (libfaketime), its monotonic clock does not."""
OUTSIDE_ASSUMPTIONS = frozenset({"store-wipe"})

# Timings, as the e2e tests use them (tests/e2e/test_multicluster.py, test_adversarial.py).
REPLICA_TIMING = ("3", "2", "0.5")
STORE_TIMEOUT = 1
FIRST_LEADER_TIMEOUT = 30.0
LEAD_BEFORE_FAULT = 2.0
SETTLE = 4.0
"""Seconds to keep watching after the first leader following the heal."""
SLACK = 0.3
CALL_SLACK = 0.1

PAUSE_LEADER = {"standard": (0.3, 2.0), "candidate-elector": (0.3, 3.5)}
"""A leading candidate's pause, drawn within what its elector survives. Standard elector: it must
resume before its lock's term ends (``t0 + 2C + P + R`` = 3.9 s after its last confirmed call
started, which may be up to ``P + C`` before the pause), or it acts ``R + P`` past the resume
(docs/safety.md rule 9). CandidateElector: it must resume before another cluster can take over
(``t0 + D - m``), for the same reason (its watchdog cannot run while paused)."""
PAUSE_OTHER = (1.0, 10.0)
WALL_STEP = (-300.0, 300.0)
"""Seconds a candidate's wall clock jumps by (either way)."""
PROXY_SECONDS = (1.0, 10.0)
STORE_DOWN = (0.5, 8.0)

D, R, P, C = LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD, confirmation_bound()
FAILOVER_BOUND = D + 2 * P
STEP_DOWN = {"standard": 2 * P + R + C, "candidate-elector": float(R)}


def round_mode(mode: str, index: int) -> str:
    """Round ``index``'s kind under ``--mode mode``: ``both`` alternates, controllers first."""
    if mode == "both":
        return ROUND_MODES[index % 2]
    return mode


def round_seed(base: int, index: int) -> int:
    """Round ``index``'s seed; round 0's is ``base``, so ``--seed S --rounds 1`` replays it."""
    return (base + index * 0x9E3779B1) % 2**32


def result_seed_for_order(seed: int) -> int:
    """The seed of a round's candidate start order (apart from its fault's draw)."""
    return seed ^ 0x5A5A5A5A


# ----- the fault plan ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Fault:
    """One round's fault, as drawn from its seed (who leads is only known when it is applied)."""

    kind: str
    seconds: float
    """Pause, partition or downtime; for a leader's pause, where in its envelope (0..1)."""
    at_leader: bool
    """Aim at the leader (its cluster), else at a follower (the other cluster)."""
    pick: float
    """Which of several equal targets (0..1)."""
    trickle_delay: float

    def describe(self, mode: str = "controllers") -> str:
        where = "leader" if self.at_leader else "other"
        if mode == "elect":  # two ``mclease elect`` processes, each with its own store link
            if self.kind in ("pause-elect-leader", "pause-command"):
                return f"{self.kind} ({self.seconds:.1f}s)"
            if self.kind == "proxy-trickle":
                return f"{self.kind} ({where}'s link, {self.seconds:.1f}s, {self.trickle_delay}s/B)"
            if self.kind.startswith("proxy-"):
                return f"{self.kind} ({where}'s link, {self.seconds:.1f}s)"
            if self.kind in ("kill-elect-leader", "kill-command"):
                return self.kind
        if self.kind in ("kill-leader",):
            return self.kind
        if self.kind == "kill-active-replica":
            return f"{self.kind} ({where} cluster)"
        if self.kind == "pause-candidate" and self.at_leader:
            return f"{self.kind} (leader, {self.seconds:.0%} of its envelope)"
        if self.kind == "pause-candidate":
            return f"{self.kind} (a follower, {self.seconds:.1f}s)"
        if self.kind in ("proxy-trickle", "api-trickle"):
            return f"{self.kind} ({where} cluster, {self.seconds:.1f}s, {self.trickle_delay}s/byte)"
        if self.kind == "wall-step-candidate":
            whose = "leader" if self.at_leader else "a follower"
            return f"{self.kind} ({whose}, {self.seconds:+.0f}s)"
        if self.kind == "api-blackhole":
            return f"{self.kind} ({where} cluster, {self.seconds:.1f}s)"
        if self.kind.startswith(("proxy-", "pause-")):
            return f"{self.kind} ({where} cluster, {self.seconds:.1f}s)"
        return f"{self.kind} ({self.seconds:.1f}s down)"


def draw_fault(rng: random.Random, store: str, only: Sequence[str] = ()) -> Fault:
    """The fault of a round on ``store`` (among ``only``, if given and applicable)."""
    choices = [k for k in FAULTS[store] if k in only] if only else list(FAULTS[store])
    kind = rng.choice(choices or list(FAULTS[store]))
    at_leader = rng.random() < 0.75
    pick = rng.random()
    trickle_delay = round(rng.uniform(0.005, 0.05), 3)
    if kind == "pause-candidate":
        at_leader = rng.random() < 0.7
        seconds = rng.random() if at_leader else rng.uniform(*PAUSE_OTHER)
    elif kind == "pause-active-replica":
        seconds = rng.uniform(*PAUSE_OTHER)
    elif kind in PROXY_FAULTS or kind in API_FAULTS:
        seconds = rng.uniform(*PROXY_SECONDS)
    elif kind == "wall-step-candidate":
        seconds = rng.uniform(*WALL_STEP)
    elif kind.startswith("store-") or kind == "kill-store-leader":
        seconds = rng.uniform(*STORE_DOWN)
    else:
        seconds = 0.0
    return Fault(kind, round(seconds, 2), at_leader, pick, trickle_delay)


# ----- results -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Violation:
    round: int
    seed: int
    store: str
    fault: str
    check: str
    """``overlap``, ``failover``, ``call-bound``, ``step-down``, ``exit``, ``error``."""
    detail: str


@dataclasses.dataclass
class RoundResult:
    index: int
    seed: int
    store: str
    fault: Fault
    seconds: float = 0.0
    failover: float | None = None
    """Heal to a leader (0: one led at the heal); ``None``: none in time, or no fault applied."""
    longest_gap: float | None = None
    """The longest time without a leader between the first leader and the end of watching."""
    violations: list[Violation] = dataclasses.field(default_factory=list)
    outside_assumptions: list[Violation] = dataclasses.field(default_factory=list)
    """Overlaps after a fault docs/safety.md assumes away (reported, not failed)."""
    notes: list[str] = dataclasses.field(default_factory=list)
    kept: str | None = None
    only: tuple[str, ...] = ()
    """The ``--faults`` the round was drawn from (empty: all)."""
    leader: str = ""
    """Who led when the fault came, and on which elector (``mclease elect`` in elect rounds)."""
    mode: str = "controllers"
    """``controllers`` (two clusters, controller replicas, candidates) or ``elect`` (two
    ``mclease elect`` processes, :mod:`mclease_dev.chaos_elect`)."""

    @property
    def replay(self) -> str:
        only = f" --faults {','.join(self.only)}" if self.only else ""
        return (
            f"python -m mclease_dev.chaos --seed {self.seed} --rounds 1 --stores {self.store}"
            f" --mode {self.mode}" + only
        )

    @property
    def fault_key(self) -> str:
        """The fault's name in the summary's per-fault figures (``elect:`` for elect rounds)."""
        return self.fault.kind if self.mode == "controllers" else f"elect:{self.fault.kind}"

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "mode": self.mode,
            "seed": self.seed,
            "store": self.store,
            "fault": self.fault.kind,
            "fault_detail": self.fault.describe(self.mode),
            "seconds": round(self.seconds, 2),
            "failover": None if self.failover is None else round(self.failover, 3),
            "longest_gap": None if self.longest_gap is None else round(self.longest_gap, 3),
            "violations": [dataclasses.asdict(v) for v in self.violations],
            "outside_assumptions": [dataclasses.asdict(v) for v in self.outside_assumptions],
            "leader": self.leader,
            "notes": self.notes,
            "kept": self.kept,
            "replay": self.replay,
        }


def _stats(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "min": None, "median": None, "max": None}
    return {
        "n": len(values),
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


@dataclasses.dataclass
class Summary:
    base_seed: int
    stores: tuple[str, ...]
    keep: str
    rounds: list[RoundResult] = dataclasses.field(default_factory=list)

    @property
    def violations(self) -> list[Violation]:
        return [v for r in self.rounds for v in r.violations]

    def as_json(self) -> dict[str, Any]:
        from .chaos_elect import (  # chaos_elect imports this module
            ELECT_FAILOVER_BOUND,
            TIMING,
            failover_bound,
            timing_of,
        )

        kinds = sorted({r.fault_key for r in self.rounds})
        failovers = [r.failover for r in self.rounds if r.failover is not None]
        return {
            "base_seed": self.base_seed,
            "rounds": len(self.rounds),
            "modes": {m: sum(r.mode == m for r in self.rounds) for m in ROUND_MODES},
            "stores": {s: sum(r.store == s for r in self.rounds) for s in self.stores},
            "faults": {k: sum(r.fault_key == k for r in self.rounds) for k in kinds},
            "leader_at_fault_by_elector": {
                e: sum(r.leader.endswith(f"({e})") for r in self.rounds)
                for e in ("standard", "candidate-elector", "mclease elect")
            },
            "violations": len(self.violations),
            "violations_by_check": {
                c: sum(v.check == c for v in self.violations)
                for c in sorted({v.check for v in self.violations})
            },
            "outside_assumptions": sum(len(r.outside_assumptions) for r in self.rounds),
            "failover_bound": FAILOVER_BOUND,
            "elect_failover_bound": ELECT_FAILOVER_BOUND,
            "elect_failover_bound_by_store": {k: failover_bound(k) for k in self.stores},
            "failover": _stats(failovers),
            "failover_by_mode": {
                m: _stats(
                    [r.failover for r in self.rounds if r.mode == m and r.failover is not None]
                )
                for m in ROUND_MODES
            },
            "failover_by_fault": {
                k: _stats(
                    [r.failover for r in self.rounds if r.fault_key == k and r.failover is not None]
                )
                for k in kinds
            },
            "longest_gap_by_fault": {
                k: _stats(
                    [
                        r.longest_gap
                        for r in self.rounds
                        if r.fault_key == k and r.longest_gap is not None
                    ]
                )
                for k in kinds
            },
            "seconds_per_round": {
                **_stats([r.seconds for r in self.rounds]),
                "total": round(sum(r.seconds for r in self.rounds), 1),
            },
            "timings": {"D": D, "R": R, "P": P, "C": round(C, 3)},
            "elect_timings": dict(zip("DRP", TIMING, strict=True)),
            "elect_timings_by_store": {
                k: dict(zip("DRP", timing_of(k), strict=True)) for k in self.stores
            },
            "keep": self.keep,
            "round_details": [r.as_json() for r in self.rounds],
        }

    def table(self) -> str:
        figures = self.as_json()
        elect = figures["elect_timings"]
        elect_timing = f"D={elect['D']:g} R={elect['R']:g} P={elect['P']:g}"
        for store, other in figures["elect_timings_by_store"].items():
            if other != elect:  # the CLI refused the usual ones there (GCS: P >= 1 s)
                bound = figures["elect_failover_bound_by_store"][store]
                elect_timing += f"; {store}: P={other['P']:g}, {bound}s"

        def row(name: str, s: Mapping[str, Any]) -> str:
            if not s["n"]:
                return f"  {name:<26} {s['n']:>3}"
            return f"  {name:<26} {s['n']:>3}  {s['min']:7.2f} {s['median']:7.2f} {s['max']:7.2f}"

        lines = [
            f"chaos: {figures['rounds']} rounds, base seed {self.base_seed}, "
            f"timings D={D} R={R} P={P} C={C:.2f}s (controllers)",
            "  rounds: " + ", ".join(f"{k} {n}" for k, n in figures["modes"].items()),
            "  stores: " + ", ".join(f"{k} {n}" for k, n in figures["stores"].items()),
            "  leader when the fault came: "
            + ", ".join(f"{k} {n}" for k, n in figures["leader_at_fault_by_elector"].items()),
            f"  violations: {figures['violations']}"
            + (f" {figures['violations_by_check']}" if figures["violations"] else "")
            + f"; overlaps outside the assumptions: {figures['outside_assumptions']}",
            f"  failover (heal -> a leader) vs bound D + 2P = {FAILOVER_BOUND}s (controllers), "
            f"{figures['elect_failover_bound']}s (elect, {elect_timing}):",
            f"  {'fault':<26} {'n':>3}  {'min':>7} {'median':>7} {'max':>7}   "
            "(longest leaderless gap: n min median max)",
        ]
        for kind in figures["faults"]:
            gap = figures["longest_gap_by_fault"][kind]
            gap_text = (
                f"   ({gap['n']} {gap['min']:.2f} {gap['median']:.2f} {gap['max']:.2f})"
                if gap["n"]
                else ""
            )
            lines.append(row(kind, figures["failover_by_fault"][kind]) + gap_text)
        for mode in ROUND_MODES:
            if figures["modes"][mode]:
                lines.append(row(f"all {mode}", figures["failover_by_mode"][mode]))
        seconds = figures["seconds_per_round"]
        if seconds["n"]:
            lines.append(
                f"  seconds per round: min {seconds['min']:.1f} median {seconds['median']:.1f} "
                f"max {seconds['max']:.1f} (total {seconds['total']:.0f})"
            )
        for r in self.rounds:
            for v in r.violations:
                lines.append(f"  VIOLATION round {r.index} [{v.check}] {v.detail}")
                lines.append(f"    replay: {r.replay}   files: {r.kept}")
            for v in r.outside_assumptions:
                lines.append(f"  outside assumptions, round {r.index} [{v.check}] {v.detail}")
        return "\n".join(lines)


# ----- one round ---------------------------------------------------------------------------------


class _Link:
    """A cluster's way to a network store: FaultProxy (loses answers) -> TcpProxy (trickles,
    blackholes) -> the store. Both the cluster's controller replicas use it."""

    def __init__(self, stack: contextlib.ExitStack, host: str, port: int):
        self.tcp = stack.enter_context(TcpProxy(host, port))
        self.lossy = stack.enter_context(FaultProxy("127.0.0.1", self.tcp.port))

    @property
    def address(self) -> str:
        return self.lossy.address


def proxy_fault(link: _Link, kind: str, fault: Fault, result: RoundResult) -> float:
    """Apply the proxy fault ``kind`` to ``link`` for ``fault.seconds``; return when it healed."""
    end = time.monotonic() + fault.seconds
    if kind == "proxy-lose-answers":
        proxy = link.lossy
        writes_only = result.store == "gcs"  # HTTP: lose what changes something

        def matching(chunk: bytes) -> bool:
            # An armed loss no request matched by the end of the window never matches.
            return time.monotonic() < end and not (writes_only and chunk.startswith(b"GET "))

        armed = proxy.answers_lost
        proxy.lose_next_answer(matching)
        while time.monotonic() < end:
            if proxy.answers_lost > armed:
                armed = proxy.answers_lost
                proxy.lose_next_answer(matching)
            time.sleep(0.02)
        time.sleep(proxy.quiet + 0.05)  # a request matched just before the end is cut now
        result.notes.append(f"answers lost: {proxy.answers_lost}")
        return time.monotonic()
    link.tcp.trickle_delay = fault.trickle_delay
    link.tcp.mode = "trickle" if kind == "proxy-trickle" else "blackhole"
    time.sleep(max(0.0, end - time.monotonic()))
    link.tcp.mode = "pass"
    return time.monotonic()


def _store_url(kind: str, address: str, workdir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'global.db'}"
    if kind == "redis":
        return f"redis://{address}/0?prefix=chaos&timeout={STORE_TIMEOUT}"
    if kind in ("etcd", "etcd3"):
        return f"etcd://{address}/chaos?timeout={STORE_TIMEOUT}"
    if kind == "gcs":
        return (
            f"gs://{FAKE_GCS_BUCKET}/chaos?endpoint=http://{address}&anonymous=true"
            f"&timeout={STORE_TIMEOUT}&deadline={2 * STORE_TIMEOUT}"
        )
    raise ValueError(f"unknown store kind {kind!r}; choose from {', '.join(STORE_KINDS)}")


def _start_store(stack: contextlib.ExitStack, kind: str, fault: Fault) -> ServerProcess | None:
    if kind == "sqlite":
        return None
    if kind == "redis":
        lossless = ("--appendonly", "yes", "--appendfsync", "always")
        return stack.enter_context(redis_server(*(lossless if fault.kind != "store-wipe" else ())))
    if kind == "etcd":
        return stack.enter_context(etcd_server())
    return stack.enter_context(fake_gcs_server())


class _Round:
    def __init__(
        self,
        result: RoundResult,
        prepared: Mapping[str, tuple[KubeCluster, Path]],
        workdir: Path,
        say: Callable[[str], None],
    ):
        self.result = result
        self.prepared = prepared
        self.workdir = workdir
        self.say = say
        self.group = ProcessGroup(workdir)
        self.sites: dict[str, Site] = {}
        self.links: dict[str, _Link] = {}
        self.controllers: dict[str, list[ControllerProcess]] = {}
        self.candidates: list[CandidateProcess] = []
        self.elector_of: dict[str, str] = {}
        self.pauses: dict[str, list[tuple[float, float]]] = {}
        self.paused: list[ManagedProcess] = []
        self.store: ServerProcess | None = None
        self.members: list[ServerProcess] = []
        """The etcd cluster's members (``etcd3``)."""
        self.api_links: dict[str, TcpProxy] = {}
        """Per cluster, between its controller replicas and its API server (API faults only)."""
        self.cut_off: set[str] = set()
        """Clusters whose controllers lost their API server for a while (API faults)."""
        self.wall_offsets: dict[str, Path] = {}
        """Per candidate label, the file libfaketime reads its wall-clock offset from."""
        self.origin = time.monotonic()
        self.first_leader: float | None = None
        self.heal: float | None = None
        self.watch_end: float | None = None
        self.exits: dict[str, int] = {}
        """Processes that exited on their own before the tear-down, with their exit codes."""

    # ----- set-up ------------------------------------------------------------------------

    def set_up(self, stack: contextlib.ExitStack) -> None:
        kind, fault = self.result.store, self.result.fault
        if kind == "etcd3":
            self.members = stack.enter_context(etcd_cluster(3))
        else:
            self.store = _start_store(stack, kind, fault)
        namespace = new_namespace_name("chaos")
        for name, (cluster, controller_kubeconfig) in self.prepared.items():
            if fault.kind in API_FAULTS:
                proxy = stack.enter_context(TcpProxy(*_host_port(cluster.url)))
                proxy.trickle_delay = fault.trickle_delay
                self.api_links[name] = proxy
                controller_kubeconfig = _via(
                    controller_kubeconfig, cluster.url, proxy, self.workdir / name
                )
            self.sites[name] = Site(
                cluster, namespace, controller_kubeconfig, prepare_namespace(cluster, namespace)
            )
            _delete_replica_leases(cluster)
        for name, site in self.sites.items():
            address = ",".join(member.address for member in self.members)
            if self.store is not None:
                self.links[name] = _Link(stack, self.store.host, self.store.port)
                address = self.links[name].address
            url = _store_url(kind, address, self.workdir)
            self.controllers[name] = [
                self.group.controller(site, url, wait=False, extra_args=_replica_args())
                for _ in range(2)
            ]
        for replicas in self.controllers.values():
            for replica in replicas:
                replica.wait_ready(timeout=60)
        program = (sys.executable, "-m", "mclease_dev.chaos", "candidate")
        order = [
            (number, name, elector)
            for number, name in enumerate(self.sites)
            for elector in ("standard", "candidate-elector")
        ]
        # The first one started usually leads first: a seeded order varies who faces the fault.
        random.Random(result_seed_for_order(self.result.seed)).shuffle(order)
        for number, name, elector in order:
            identity = f"{'std' if elector == 'standard' else 'ce'}-{number}"
            extra: dict[str, Any] = {"program": program} if elector != "standard" else {}
            if fault.kind == "wall-step-candidate":
                offset = self.workdir / f"wall-offset-{name}-{identity}"
                extra["env"] = faketime_environment(offset, self.workdir)
                self.wall_offsets[f"{name}/{identity}"] = offset
            candidate = self.group.candidate(self.sites[name], identity, **extra)
            self.candidates.append(candidate)
            self.elector_of[candidate.label] = elector
            # The next one starts once this one has called its lock: start-up times differ
            # (CandidateElector's command imports more), the seeded order should decide.
            candidate.wait_until(
                candidate.calls, timeout=20, message=f"{candidate.label}'s first lock call"
            )

    # ----- the fault ---------------------------------------------------------------------

    def leaders(self) -> list[CandidateProcess]:
        return leaders_now(c for c in self.candidates if c.alive())

    def wait_first_leader(self) -> CandidateProcess:
        def first() -> float | None:
            beats = [b for c in self.candidates if (b := c.first_beat_after(0.0)) is not None]
            return min(beats) if beats else None

        began = wait_until(
            first, timeout=FIRST_LEADER_TIMEOUT, message="a first leader", interval=0.05
        )
        assert began is not None
        self.first_leader = began
        time.sleep(max(0.0, began + LEAD_BEFORE_FAULT - time.monotonic()))
        (leader, *_) = wait_until(self.leaders, timeout=10, message="a leader now")
        return leader

    def active_replica(self, cluster: str) -> ControllerProcess:
        site = self.sites[cluster]
        leases = k8s.CoordinationV1Api(site.cluster.api_client())

        def find() -> ControllerProcess | None:
            for lease in leases.list_namespaced_lease(CONTROLLER_NAMESPACE).items:
                holder = (lease.spec.holder_identity if lease.spec else None) or ""
                for replica in self.controllers[cluster]:
                    if replica.alive() and holder.endswith(f"_{replica.pid}"):
                        return replica
            return None

        found = wait_until(find, timeout=10, message=f"the active replica of {cluster}")
        assert found is not None
        return found

    def pause(self, process: ManagedProcess, seconds: float) -> float:
        stopped = process.signal(signal.SIGSTOP)
        self.paused.append(process)
        time.sleep(seconds)
        resumed = float(process.signal(signal.SIGCONT))
        self.paused.remove(process)
        self.pauses.setdefault(getattr(process, "label", process.name), []).append(
            (stopped, resumed)
        )
        return resumed

    def apply(self, leader: CandidateProcess) -> None:
        fault = self.result.fault
        kind = fault.kind
        clusters = list(self.sites)
        here = leader.site.name
        self.result.leader = f"{leader.label} ({self.elector_of[leader.label]})"
        cluster = here if fault.at_leader else next(c for c in clusters if c != here)
        note = self.result.notes.append
        if kind == "kill-leader":
            note(f"killed {leader.label}")
            self.heal = leader.kill()
        elif kind == "kill-active-replica":
            replica = self.active_replica(cluster)
            note(f"killed {replica.name} (pid {replica.pid})")
            self.heal = replica.kill()
        elif kind == "pause-candidate":
            if fault.at_leader:
                target = leader
                low, high = PAUSE_LEADER[self.elector_of[leader.label]]
                seconds = low + fault.seconds * (high - low)
            else:
                others = [c for c in self.candidates if c is not leader and c.alive()]
                target = others[int(fault.pick * len(others)) % len(others)]
                seconds = fault.seconds
            note(f"paused {target.label} ({self.elector_of[target.label]}) for {seconds:.2f}s")
            self.heal = self.pause(target, seconds)
        elif kind == "pause-active-replica":
            replica = self.active_replica(cluster)
            note(f"paused {replica.name} (pid {replica.pid}) for {fault.seconds:.2f}s")
            self.heal = self.pause(replica, fault.seconds)
        elif kind in PROXY_FAULTS:
            self.heal = self.proxy_fault(self.links[cluster], kind, fault)
            note(f"{kind} on {cluster}'s link to the store for {fault.seconds:.2f}s")
        elif kind in API_FAULTS:
            proxy = self.api_links[cluster]
            self.cut_off.add(cluster)
            proxy.mode = "trickle" if kind == "api-trickle" else "blackhole"
            time.sleep(fault.seconds)
            proxy.mode = "pass"
            self.heal = time.monotonic()
            note(
                f"{kind} between {cluster}'s controllers and its API server "
                f"for {fault.seconds:.2f}s"
            )
        elif kind == "wall-step-candidate":
            if fault.at_leader:
                target = leader
            else:
                others = [c for c in self.candidates if c is not leader and c.alive()]
                target = others[int(fault.pick * len(others)) % len(others)]
            self.wall_offsets[target.label].write_text(f"{fault.seconds:+.1f}\n")
            self.heal = time.monotonic()
            note(f"stepped the wall clock of {target.label} by {fault.seconds:+.1f}s")
        elif kind == "kill-store-leader":
            self.heal = kill_store_leader(self.members, fault.seconds, note)
        elif kind in ("store-restart", "store-wipe"):
            assert self.store is not None
            self.store.kill()
            time.sleep(fault.seconds)
            self.store.start()
            self.heal = time.monotonic()
            note(f"store killed and started {fault.seconds:.2f}s later")
        else:
            raise AssertionError(f"unknown fault {kind}")

    def proxy_fault(self, link: _Link, kind: str, fault: Fault) -> float:
        return proxy_fault(link, kind, fault, self.result)

    def watch(self) -> None:
        """Until a leader follows the heal (or the bound and 10 s passed), then :data:`SETTLE`
        more and at least ``D + 2`` after the heal."""
        assert self.heal is not None
        heal = self.heal
        deadline = heal + FAILOVER_BOUND + 10
        led: float | None = None
        while time.monotonic() < deadline:
            beats = [b for c in self.candidates if (b := c.first_beat_after(heal)) is not None]
            if beats:
                led = min(beats)
                break
            time.sleep(0.05)
        until = max((led or time.monotonic()) + SETTLE, heal + D + 2)
        time.sleep(max(0.0, until - time.monotonic()))
        self.watch_end = time.monotonic()

    def tear_down(self) -> None:
        for process in list(self.paused):
            process.signal(signal.SIGCONT)
        self.exits = {
            p.name: code
            for p in self.group.processes
            if (code := p.returncode) is not None and p.killed_at is None
        }
        self.group.stop_all()

    # ----- judging -----------------------------------------------------------------------

    def judge(self) -> None:
        result = self.result
        intervals = all_intervals(self.candidates)
        within = result.fault.kind not in OUTSIDE_ASSUMPTIONS

        def violation(check: str, detail: str, *, outside: bool = False) -> None:
            found = Violation(
                result.index, result.seed, result.store, result.fault.kind, check, detail
            )
            (result.outside_assumptions if outside else result.violations).append(found)

        for first, second in overlaps(intervals):
            shared = min(first.end, second.end) - second.start
            violation(
                "overlap",
                f"{first.candidate} term {first.term} and {second.candidate} term "
                f"{second.term} both led for {shared:.3f}s from "
                f"{second.start - self.origin:.2f}s; intervals:\n"
                + describe(intervals, self.origin),
                outside=not within,
            )

        if self.heal is not None:
            heal = self.heal
            if any(i.start <= heal <= i.end for i in intervals):
                result.failover = 0.0
            else:
                after = [i.start for i in intervals if i.start > heal]
                if after:
                    result.failover = min(after) - heal
            if result.failover is None or result.failover > FAILOVER_BOUND + SLACK:
                shown = "none" if result.failover is None else f"{result.failover:.2f}s"
                violation(
                    "failover",
                    f"heal -> a leader: {shown} (bound D + 2P = {FAILOVER_BOUND}s + {SLACK}s); "
                    f"intervals:\n" + describe(intervals, self.origin),
                )
            if self.first_leader is not None and self.watch_end is not None:
                result.longest_gap = _longest_gap(intervals, self.first_leader, self.watch_end)

        for name, code in sorted(self.exits.items()):
            cluster = next(
                (c for c, ps in self.controllers.items() if any(p.name == name for p in ps)), None
            )
            lost_term = cluster is not None and (name in self.pauses or cluster in self.cut_off)
            if code == 1 and lost_term:  # a replica that lost its term exits 1 (rule 14)
                why = "its pause" if name in self.pauses else "losing its API server"
                result.notes.append(f"{name} exited 1 after {why} (lost its replica term)")
            else:
                violation("exit", f"{name} exited on its own with code {code}")

        for candidate in self.candidates:
            pauses = self.pauses.get(candidate.label, [])

            def paused_during(
                start: float, end: float, pauses: list[tuple[float, float]] = pauses
            ) -> bool:
                return any(stop < end and start < cont for stop, cont in pauses)

            for call in candidate.calls():
                took = call.end - call.start
                if took > C + CALL_SLACK and not paused_during(call.start, call.end):
                    violation(
                        "call-bound",
                        f"{candidate.label}: a {call.kind} call took {took:.3f}s at "
                        f"{call.start - self.origin:.2f}s (C = {C:.3f}s + {CALL_SLACK}s)",
                    )
            elector = self.elector_of[candidate.label]
            confirmations = candidate.confirmations()
            for interval in candidate.intervals():
                before = [c for c in confirmations if c.start <= interval.end + 0.05]
                if not before:
                    violation("step-down", f"{candidate.label} led without a confirmed call")
                    continue
                # The standard elector counts from the answer, CandidateElector from the call.
                since = (
                    max(c.end for c in before)
                    if elector == "standard"
                    else max(c.start for c in before)
                )
                acted = interval.end - since
                bound = STEP_DOWN[elector]
                if acted > bound + SLACK and not paused_during(since, interval.end):
                    violation(
                        "step-down",
                        f"{candidate.label} ({elector}) term {interval.term} acted "
                        f"{acted:.2f}s after its last confirmed call (bound {bound:.2f}s + "
                        f"{SLACK}s), until {interval.end - self.origin:.2f}s",
                    )


def _longest_gap(intervals: Sequence[Interval], start: float, end: float) -> float:
    """The longest stretch of [start, end] that no interval covers (beats 20 ms apart count as
    covered)."""
    covered_until = start
    longest = 0.0
    for interval in sorted(intervals, key=lambda i: i.start):
        if interval.end < start:
            continue
        if interval.start > end:
            break
        if interval.start > covered_until:
            longest = max(longest, interval.start - covered_until)
        covered_until = max(covered_until, interval.end)
    return max(longest, end - covered_until)


def _replica_args() -> list[str]:
    duration, deadline, period = REPLICA_TIMING
    return [
        "--leader-elect",
        "--leader-elect-namespace", CONTROLLER_NAMESPACE,
        "--leader-elect-lease-duration", duration,
        "--leader-elect-renew-deadline", deadline,
        "--leader-elect-retry-period", period,
    ]  # fmt: skip


def _host_port(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or not parts.port:
        raise ValueError(f"no host and port in {url!r}")
    return parts.hostname, parts.port


def _via(kubeconfig: Path, server: str, proxy: TcpProxy, workdir: Path) -> Path:
    """A copy of ``kubeconfig`` that reaches ``server`` through ``proxy`` (TLS passes through:
    the certificate is for the same loopback address)."""
    host, _ = _host_port(server)
    proxied = workdir / f"via-proxy-{kubeconfig.name}"
    proxied.parent.mkdir(parents=True, exist_ok=True)
    text = kubeconfig.read_text()
    assert server in text, f"{kubeconfig} does not name {server}"
    proxied.write_text(text.replace(server, f"https://{host}:{proxy.port}"))
    return proxied


FAKETIME_LIBRARY_GLOB = "/usr/lib/*/faketime/libfaketimeMT.so.1"

FAKETIME_SITE = '''"""Written by mclease_dev.chaos for a candidate run under libfaketime.

libfaketime 0.9.10 (Debian 12) breaks time.sleep on Python 3.11+: clock_nanosleep on
CLOCK_MONOTONIC with TIMER_ABSTIME gets a negative time and fails with EINVAL, even with the
monotonic clock left alone (wolfcw/libfaketime#426). select() takes a relative timeout.
"""
import select
import time


def _sleep(seconds):
    select.select([], [], [], max(0.0, seconds))


time.sleep = _sleep
'''


def faketime_library() -> str:
    found = sorted(glob.glob(FAKETIME_LIBRARY_GLOB))
    if not found:
        raise FileNotFoundError(
            "libfaketime is not installed (wall-step-candidate needs it): run "
            "hack/test-servers.sh (apt faketime), or leave the fault out with --faults"
        )
    return found[-1]


def faketime_environment(offset: Path, workdir: Path) -> dict[str, str]:
    """The environment of a process whose wall clock is ``offset``'s content (``+0`` at first,
    re-read at every call), its monotonic clock untouched."""
    offset.write_text("+0\n")
    site = workdir / "faketime-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(FAKETIME_SITE)
    env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    env.update(
        LD_PRELOAD=faketime_library(),
        FAKETIME_TIMESTAMP_FILE=str(offset),
        FAKETIME_NO_CACHE="1",
        FAKETIME_DONT_FAKE_MONOTONIC="1",
        # Its "monotonic fix" for pthread_cond_timedwait made thread starts and joins take up
        # to 100 ms at random: lock calls overran their bound by that (measured here).
        FAKETIME_FORCE_MONOTONIC_FIX="0",
        PYTHONPATH=os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p),
    )
    return env


def _delete_replica_leases(cluster: KubeCluster) -> None:
    """The replicas' Lease lives in the controller namespace, shared by every round: a round's
    replicas must not wait for the last round's (dead) holder."""
    leases = k8s.CoordinationV1Api(cluster.api_client())
    for lease in leases.list_namespaced_lease(CONTROLLER_NAMESPACE).items:
        with contextlib.suppress(ApiException):
            if lease.metadata is not None and lease.metadata.name:
                leases.delete_namespaced_lease(lease.metadata.name, CONTROLLER_NAMESPACE)


def run_round(
    result: RoundResult,
    prepared: Mapping[str, tuple[KubeCluster, Path]],
    workdir: Path,
    say: Callable[[str], None] = print,
) -> RoundResult:
    """One round in ``workdir`` (kept by the caller when it fails)."""
    chaos = _Round(result, prepared, workdir, say)
    return carry_out(chaos, result, workdir, logs=chaos.group.logs)


class RoundSteps(Protocol):
    """What a kind of round does, step by step (:class:`_Round`, ``chaos_elect._ElectRound``)."""

    store: ServerProcess | None
    members: list[ServerProcess]

    def set_up(self, stack: contextlib.ExitStack) -> None: ...
    def wait_first_leader(self) -> Any: ...
    def apply(self, leader: Any) -> None: ...
    def watch(self) -> None: ...
    def tear_down(self) -> None: ...
    def judge(self) -> None: ...


def carry_out(
    chaos: RoundSteps,
    result: RoundResult,
    workdir: Path,
    *,
    logs: Callable[[], str] | None = None,
) -> RoundResult:
    """Run ``chaos``'s steps; an exception is an ``error`` violation. A failed round keeps its
    traceback, its processes' ``logs()``, its stores' logs and its verdict in ``workdir``."""
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            try:
                chaos.set_up(stack)
                leader = chaos.wait_first_leader()
                chaos.apply(leader)
                chaos.watch()
            finally:
                chaos.tear_down()
        chaos.judge()
    except Exception as exc:
        result.violations.append(
            Violation(
                result.index,
                result.seed,
                result.store,
                result.fault.kind,
                "error",
                f"{type(exc).__name__}: {exc}".strip()[:2000],
            )
        )
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "traceback.txt").write_text(traceback.format_exc())
    result.seconds = time.monotonic() - started
    if result.violations or result.outside_assumptions:
        with contextlib.suppress(OSError):
            if logs is not None:
                (workdir / "logs.txt").write_text(logs())
            for server in [*([chaos.store] if chaos.store else []), *chaos.members]:
                (workdir / f"{server.name}.log").write_text(server.log_tail(400))
            (workdir / "verdict.txt").write_text(json.dumps(result.as_json(), indent=2) + "\n")
    return result


def kill_store_leader(
    members: list[ServerProcess], seconds: float, note: Callable[[str], None]
) -> float:
    """Kill the etcd cluster's raft leader -9; return when the others elected a new one (the
    heal), after which the killed member is started again ``seconds`` later."""
    found = wait_until(lambda: etcd_leader(members), timeout=10, message="a leader")
    assert found is not None
    found.kill()
    killed = time.monotonic()
    wait_until(lambda: etcd_leader(members), timeout=15, message="a new etcd leader")
    heal = time.monotonic()
    note(f"killed etcd leader {found.name}; a new one after {heal - killed:.2f}s")
    time.sleep(seconds)
    found.start()
    note(f"{found.name} started again {seconds:.2f}s after the new leader")
    return heal


# ----- the run -----------------------------------------------------------------------------------


def run(
    rounds: int,
    *,
    seed: int | None = None,
    stores: Sequence[str] = STORE_KINDS,
    keep: Path | None = None,
    clusters: Mapping[str, tuple[KubeCluster, Path]] | None = None,
    say: Callable[[str], None] = print,
    keep_all: bool = False,
    faults: Sequence[str] = (),
    mode: str = "both",
) -> Summary:
    """Run ``rounds`` rounds; ``clusters`` are prepared test-bed clusters (name -> (cluster,
    controller kubeconfig), as ``prepare_cluster`` returns it), else two are started here (not
    for ``mode="elect"``, which needs none)."""
    from . import chaos_elect  # it imports this module

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    for kind in stores:
        if kind not in STORE_KINDS:
            raise ValueError(f"unknown store kind {kind!r}; choose from {', '.join(STORE_KINDS)}")
    known = {k for table in (FAULTS, chaos_elect.ELECT_FAULTS) for ks in table.values() for k in ks}
    for kind in faults:
        if kind not in known:
            raise ValueError(f"unknown fault {kind!r}; choose from {', '.join(sorted(known))}")
    modes = [round_mode(mode, index) for index in range(rounds)]
    if "controllers" in modes and (not faults or "wall-step-candidate" in faults):
        faketime_library()  # fails now, with the fix, rather than in a round
    base = seed if seed is not None else random.SystemRandom().randrange(2**32)
    keep_dir = keep if keep is not None else Path(tempfile.mkdtemp(prefix="mclease-chaos-"))
    keep_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary(base, tuple(stores), str(keep_dir))
    say(
        f"chaos: base seed {base}, {rounds} rounds ({mode}) on {', '.join(stores)}; "
        f"failing rounds kept in {keep_dir}"
    )
    with contextlib.ExitStack() as stack:
        if clusters is None and "controllers" in modes:
            root = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="mclease-chaos-kube-"))
            )
            running = stack.enter_context(running_clusters(["east", "west"], root, find_assets()))
            clusters = {name: (c, prepare_cluster(c)) for name, c in running.items()}
        for index, this_mode in enumerate(modes):
            # --mode both: each store gets a controller round, then an elect round.
            kind = stores[(index // 2 if mode == "both" else index) % len(stores)]
            this_seed = round_seed(base, index)
            draw = draw_fault if this_mode == "controllers" else chaos_elect.draw_elect_fault
            fault = draw(random.Random(this_seed), kind, faults)
            result = RoundResult(index, this_seed, kind, fault, only=tuple(faults), mode=this_mode)
            workdir = keep_dir / f"round-{index:03d}-{this_mode}-{kind}-{this_seed}"
            if this_mode == "elect":
                chaos_elect.run_elect_round(result, workdir, say)
            else:
                assert clusters is not None
                run_round(result, clusters, workdir, say)
            failed = bool(result.violations or result.outside_assumptions)
            if failed:
                result.kept = str(workdir)
            elif keep_all:
                result.kept = str(workdir)
                (workdir / "verdict.txt").write_text(json.dumps(result.as_json(), indent=2) + "\n")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
            summary.rounds.append(result)
            failover = "-" if result.failover is None else f"{result.failover:.2f}s"
            verdict = (
                f"{len(result.violations)} VIOLATION(S)"
                if result.violations
                else ("outside assumptions" if result.outside_assumptions else "ok")
            )
            say(
                f"round {index:3d} {this_mode[:5]:<5} {kind:<6} {fault.describe(this_mode):<52} "
                f"failover {failover:>6}  "
                f"{result.seconds:5.1f}s  {verdict}"
            )
            if failed:
                for v in [*result.violations, *result.outside_assumptions]:
                    say(f"    [{v.check}] {v.detail.splitlines()[0]}")
                say(f"    files: {workdir}\n    replay: {result.replay}")
    if keep is None and not any(keep_dir.iterdir()):
        keep_dir.rmdir()
        say(f"no round failed: removed {keep_dir}")
    return summary


# ----- the CandidateElector candidate ------------------------------------------------------------


def candidate_main(argv: Sequence[str]) -> int:
    """The recording candidate of :mod:`mclease_dev.candidate` on ``CandidateElector`` instead of
    the standard elector: same flags, same heartbeat and event files. Each term's work runs in a
    thread of its own (``on_started_leading`` must return); ``on_stopped_leading`` stops it and
    returns only once no heartbeat can follow. SIGTERM: stop (end the term, then release)."""
    args = parse_args(argv, prog="python -m mclease_dev.chaos candidate")
    lock, events = recording_lock(args)
    numbers = itertools.count(1)
    guard = threading.Lock()
    terms: list[Term] = []

    def started(_: object) -> None:
        with guard:
            term = Term(next(numbers), args.identity, args.heartbeats, events)
            terms.append(term)
        threading.Thread(target=term.run, name=f"work-{term.number}", daemon=True).start()

    def stopped(_: object, reason: str) -> None:
        with guard:
            term = terms[-1] if terms else None
        if term is not None:
            term.on_stopped()

    elector = CandidateElector(
        lock, callbacks=ElectorCallbacks(on_started_leading=started, on_stopped_leading=stopped)
    )
    done = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    loop = threading.Thread(target=elector.run, name="mclease-candidate", daemon=True)
    loop.start()
    while not done.wait(0.2):
        if not loop.is_alive():  # the loop ended on its own: a crash, not a stop
            return 1
    elector.stop()
    loop.join(10)
    events.write("released", f"{time.monotonic():.6f}", 1)
    return 0


# ----- command line ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["candidate"]:
        return candidate_main(args_list[1:])
    parser = argparse.ArgumentParser(
        prog="python -m mclease_dev.chaos", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, help="base seed (default: a random one, printed)")
    parser.add_argument(
        "--stores",
        default=",".join(STORE_KINDS),
        help=f"comma-separated store kinds, rotated per round (default {','.join(STORE_KINDS)})",
    )
    parser.add_argument("--keep", type=Path, help="where failing rounds keep their files")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument("--keep-all", action="store_true", help="keep every round's files")
    parser.add_argument(
        "--faults", default="", help="draw only these faults (comma-separated; default all)"
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="both",
        help="controller rounds (two clusters), mclease elect rounds (no Kubernetes), or both, "
        "alternating (default)",
    )
    args = parser.parse_args(args_list)
    stores = tuple(s.strip() for s in args.stores.split(",") if s.strip())
    unknown = [s for s in stores if s not in STORE_KINDS]
    if unknown or not stores or args.rounds < 1:
        parser.error(f"--stores takes {','.join(STORE_KINDS)}; --rounds at least 1")
    summary = run(
        args.rounds,
        seed=args.seed,
        stores=stores,
        keep=args.keep,
        keep_all=args.keep_all,
        faults=tuple(f.strip() for f in args.faults.split(",") if f.strip()),
        mode=args.mode,
    )
    print(summary.table())
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary.as_json(), indent=2) + "\n")
        print(f"figures: {args.json}")
    return 1 if summary.violations else 0


if __name__ == "__main__":
    sys.exit(main())
