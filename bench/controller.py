"""The multi-cluster election (issue 5): confirmation latency, storage operations, failover times
and how many leases one controller keeps renewed on time.

Everything runs for real on this machine: two control planes of the test bed (etcd +
kube-apiserver each, ``tests/kube/testbed.py``), ``mclease controller`` processes (one per cluster,
admin kubeconfig), the global store (a SQLite file, or a ``redis-server`` on a free port), and
candidates. The script starts all of it and stops all of it.

1. ``latency``: one cluster, one controller (``--retry-period 0.5``), one
   ``MultiClusterLeaseLock`` (its defaults D=20, R=10, P=2) doing ``get`` + ``update`` in a
   loop. Signal (the call's start, ``last_confirmation.signalled_at``) to the call returning
   confirmed (the lock polls every 20 ms), and to the confirming status arriving on a watch of
   the object. Upstream's lock polls status once a second, so its latency is at least the time
   to its next one-second poll.
2. ``ops``: the controller's own counters (``mclease_storage_operation_seconds_count`` by
   operation, ``controller_runtime_reconcile_time_seconds_count``) scraped before and after:
   per confirmed renewal (back-to-back renewals, then a candidate-like renewal every second
   between the controller's 0.5 s periodic reconciles), and per reconcile of a follower lease
   (its candidate is not live; another cluster, here an elector in this process, holds the
   global lease).
3. ``failover``: clusters east and west, a controller each (``--retry-period 0.5``) and a
   candidate each (``bench/_candidate.py``: ``kubernetes.leaderelection`` with our lock, R=3,
   P=1 and the shortest whole D the lock accepts). Crash: kill -9 of the leader to the other
   candidate's ``onstarted_leading``, against D + 2P. Graceful: the old leader's pod comes back
   and follows; then the new leader gets SIGTERM, stops its work and calls ``lock.release()``;
   release written to the other's ``onstarted_leading``, against P. Watches on both clusters'
   objects time the steps in between.
4. ``load``: one controller (its default ``--retry-period 2``), N leases whose candidates have
   D=20, R=10, P=2. A load driver in this process signals every lease every 2 s, spread evenly
   (a PUT of the whole object with a new ``renewTime``, as the lock does), and a watch of the
   namespace tells, for each signal, when a status confirming it arrived
   (``observedGeneration`` >= the written generation and ``globalHolderIdentity`` = the
   candidate). On time: within the lock's call bound C (``confirmation_bound`` at run time; the
   product's formula has changed more than once); also reported: within 0.75 s. CPU from
   ``/proc/<pid>/stat`` over the measured window, memory from ``/proc/<pid>/status``. Steps of N
   stop once a step is clearly saturated (under 80% on time); the first step under 99% runs
   again with ``--compare-workers`` (16) controller workers.

Run: ``.venv/bin/python bench/controller.py`` (``--quick`` for a short run; ``--only
latency,ops,failover,load``; ``--stores sqlite,redis``; ``--failover-stores``;
``--sizes 25,50,100,150,200,300``; ``--workers``). Prints one table and writes
``bench/results/controller.json``. Measures; asserts nothing. Other work on the machine shows in
the numbers: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import Row, report
from _kubebench import (
    ROOT,
    CandidateChild,
    Child,
    ControllerChild,
    CpuWindow,
    LeaseWatch,
    difference,
    memory_mib,
    status_of,
    storage_ops,
    wait_for,
)
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection.leaderelectionrecord import LeaderElectionRecord

from mclease_core import LeaderElector, LeaseTiming, load_backends
from mclease_core._crd import CRD_NAME, crd_manifest
from mclease_core.kube import MultiClusterLeaseLock
from mclease_core.kube._lock import confirmation_bound
from mclease_core.kube._resource import API_VERSION, GROUP, KIND, PLURAL, VERSION, format_time
from mclease_dev.servers import redis_server


def _shortest_valid(renew_deadline: int, retry_period: int, at_least: int) -> tuple[int, int, int]:
    """``(D, R, P)`` with the smallest whole D >= ``at_least`` the lock accepts."""
    duration = at_least
    while True:
        try:
            confirmation_bound(LeaseTiming(duration, renew_deadline, retry_period))
        except ValueError:
            duration += 1
            continue
        return duration, renew_deadline, retry_period


LATENCY_TIMING = LeaseTiming(20, 10, 2)
"""The lock's defaults."""
FAILOVER_TIMING = _shortest_valid(3, 1, at_least=6)
"""R=3, P=1 and the shortest lease duration the lock accepts with them (7 s with the bound
3C + 2P + R + margin <= D)."""
LOAD_TIMING = LeaseTiming(20, 10, 2)
"""The lock's defaults: P=2 s (D=15 is refused with R=10 since the bound counts 2P)."""
STRICT_BOUND = 0.75
"""Also reported for the load: the call bound D=15, R=10, P=2 had under the first formula."""
CONTROLLER_RETRY = 0.5
"""The controllers' reconcile period in the latency, ops and failover benchmarks."""
LOAD_CONTROLLER_RETRY = 2.0
"""The controller's reconcile period in the load benchmark (its default)."""
DRIVER_THREADS = 8
WARMUP_ROUNDS = 2
"""Load rounds before the measured window: the first acquisitions (a create, an event) and the
controller's catching up with them are not steady state."""
SATURATED = 0.8
"""A load step with fewer signals confirmed on time than this ends the steps of that store."""
ALL_ON_TIME = 0.99
"""The first load step below this runs again with ``--compare-workers`` workers."""


def _testbed() -> Any:
    sys.path.insert(0, str(ROOT))
    import tests.kube.testbed as testbed

    return testbed


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)


def new_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def lock_record(identity: str, duration: float) -> LeaderElectionRecord:
    now = str(dt.datetime.now())
    return LeaderElectionRecord(identity, str(int(duration)), now, now)


@contextlib.contextmanager
def running(child: Child) -> Iterator[Child]:
    try:
        yield child
    finally:
        child.stop()


# ----- 1 and 2: one lease, one controller -------------------------------------------------------


def first_confirmations(
    seen: list[tuple[float, dict[str, Any]]], identity: str
) -> list[tuple[float, int]]:
    """``(arrival, observedGeneration)`` of each watched status confirming ``identity``."""
    found = []
    for arrived, obj in seen:
        _, holder, observed = status_of(obj)
        if holder == identity:
            found.append((arrived, observed))
    return found


def confirmed_at(
    confirmations: list[tuple[float, int]], generation: int, after: float, before: float
) -> float | None:
    """When a status confirming ``generation`` (or later) first arrived in ``[after, before)``."""
    for arrived, observed in confirmations:
        if after <= arrived < before and observed >= generation:
            return arrived
    return None


def bench_leader(
    cluster: Any,
    store: str,
    url: str,
    workdir: Path,
    calls: int,
    steady_seconds: float,
    follower_seconds: float,
    only: set[str],
) -> list[Row]:
    namespace = new_name(f"lat-{store}")
    cluster.ensure_namespace(namespace)
    rows: list[Row] = []
    identity = "app-0"
    bound = confirmation_bound(LATENCY_TIMING)
    controller = ControllerChild(
        "east", cluster.kubeconfig, url, namespace, workdir, retry_period=CONTROLLER_RETRY
    ).start()
    with running(controller):
        controller.wait_ready()
        watch = LeaseWatch(cluster.api_client(), namespace).start()
        lock = MultiClusterLeaseLock(
            "bench", namespace, identity,
            lease_duration=LATENCY_TIMING.lease_duration,
            renew_deadline=LATENCY_TIMING.renew_deadline,
            retry_period=LATENCY_TIMING.retry_period,
            api_client=cluster.api_client(),
        )  # fmt: skip

        def renew() -> tuple[bool, float]:
            lock.get("bench", namespace)
            record = lock_record(identity, LATENCY_TIMING.lease_duration)
            ok = lock.update("bench", namespace, record)
            return ok, time.monotonic()

        # The first sight of an object is not a heartbeat (rule 2): the create is never confirmed.
        lock.create("bench", namespace, lock_record(identity, LATENCY_TIMING.lease_duration))
        wait_for(lambda: renew()[0], 10, "a first confirmation", interval=0.0)
        for _ in range(10):
            renew()
        load_before = load()
        before = storage_ops(controller.metrics())
        samples: list[tuple[float, float, int]] = []
        failed = 0
        for _ in range(calls):
            ok, ended = renew()
            if ok and lock.last_confirmation is not None:
                confirmation = lock.last_confirmation
                samples.append((confirmation.signalled_at, ended, confirmation.generation))
            else:
                failed += 1
            time.sleep(0.05)
        after = storage_ops(controller.metrics())
        ops = difference(after, before)
        time.sleep(0.3)
        confirmations = first_confirmations(watch.seen, identity)
        returned = [end - start for start, end, _ in samples]
        visible = [
            arrived - start
            for start, end, generation in samples
            if (arrived := confirmed_at(confirmations, generation, start, end + 1)) is not None
        ]
        context = {"load": f"{load_before} -> {load()}", "bound_ms": ms(bound)}
        if "latency" in only:
            rows.append(Row(
                "confirmation latency", f"{store}: lock.update, signal -> returns confirmed",
                p50_ms=ms(statistics.median(returned)), p99_ms=ms(percentile(returned, 0.99)),
                extra={"calls": calls, "confirmed": len(samples), "failed": failed,
                       "max_ms": ms(max(returned)), **context,
                       "upstream": ">= its next 1 s status poll"},
            ))  # fmt: skip
            rows.append(Row(
                "confirmation latency", f"{store}: signal -> confirming status on a watch",
                p50_ms=ms(statistics.median(visible)), p99_ms=ms(percentile(visible, 0.99)),
                extra={"matched": len(visible), "max_ms": ms(max(visible)), **context},
            ))  # fmt: skip
        if "ops" in only:
            rows.append(
                ops_row(
                    f"{store}: leader, {len(samples)} back-to-back renewals",
                    ops,
                    len(samples),
                    "renewal",
                    context["load"],
                )
            )
            rows.append(steady_renewals(controller, renew, store, steady_seconds))
        watch.stop()
    if "ops" in only:
        rows.append(follower_reads(cluster, store, url, workdir, follower_seconds))
    return rows


def ops_row(subject: str, ops: dict[str, float], count: int, per: str, load_text: str) -> Row:
    each = {k: ops[k] / count if count else math.nan for k in ("read", "update", "create")}
    return Row(
        f"storage ops per {per}",
        subject,
        extra={
            **{f"{k}/{per}": round(v, 3) for k, v in each.items()},
            "delete": int(ops["delete"]),
            f"reconciles/{per}": round(ops["reconciles"] / count, 2) if count else None,
            per + "s": count,
            "load": load_text,
        },
    )


def steady_renewals(controller: ControllerChild, renew: Any, store: str, seconds: float) -> Row:
    """A renewal every second (a P=1 candidate) with the controller's periodic reconciles
    (every 0.5-0.6 s) in between."""
    load_before = load()
    before = storage_ops(controller.metrics())
    confirmed = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        confirmed += renew()[0]
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    ops = difference(storage_ops(controller.metrics()), before)
    return ops_row(
        f"{store}: leader, a renewal every 1 s, controller reconciles every 0.5 s",
        ops,
        confirmed,
        "renewal",
        f"{load_before} -> {load()}",
    )


def follower_reads(cluster: Any, store: str, url: str, workdir: Path, seconds: float) -> Row:
    """A lease whose local candidate is not live while another cluster holds the global lease."""
    namespace = new_name(f"fol-{store}")
    cluster.ensure_namespace(namespace)
    storage = load_backends().open(url)
    other = LeaderElector(
        storage, f"{namespace}/bench", "app-0", cluster="west", timing=LeaseTiming(6, 3, 1)
    )
    controller = ControllerChild(
        "east", cluster.kubeconfig, url, namespace, workdir, retry_period=CONTROLLER_RETRY
    ).start()
    try:
        other.start()
        controller.wait_ready()
        wait_for(other.is_leader, 10, "the other cluster's elector to lead")
        api = k8s.CustomObjectsApi(cluster.api_client())
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
            "apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "bench"},
            "spec": {"holderIdentity": "app-1", "renewTime": format_time(dt.datetime.now(dt.UTC)),
                     "leaseDurationSeconds": 6, "renewDeadlineSeconds": 3,
                     "retryPeriodSeconds": 1},
        })  # fmt: skip
        time.sleep(2)
        load_before = load()
        before = storage_ops(controller.metrics())
        time.sleep(seconds)
        ops = difference(storage_ops(controller.metrics()), before)
        obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "bench")
        holder = status_of(obj)[1]
    finally:
        controller.stop()
        other.stop(timeout=5)
        storage.close()
    row = ops_row(
        f"{store}: follower (candidate not live, held by west)",
        ops,
        int(ops["reconciles"]),
        "reconcile",
        f"{load_before} -> {load()}",
    )
    row.extra["status_names"] = holder
    row.extra.pop("reconciles/reconcile", None)
    row.extra["seconds"] = seconds
    return row


# ----- 3: crash failover and graceful handoff ---------------------------------------------------


class Sides:
    """One failover run: both clusters' controllers, candidates and watches in one namespace."""

    def __init__(self, clusters: dict[str, Any], url: str, workdir: Path):
        self.clusters = clusters
        self.workdir = workdir
        self.namespace = new_name("fo")
        self.children: list[Child] = []
        self.watches: dict[str, LeaseWatch] = {}
        for name, cluster in clusters.items():
            cluster.ensure_namespace(self.namespace)
            self.children.append(ControllerChild(
                name, cluster.kubeconfig, url, self.namespace, workdir,
                retry_period=CONTROLLER_RETRY,
            ).start())  # fmt: skip
        for child in self.children:
            assert isinstance(child, ControllerChild)
            child.wait_ready()
        for name, cluster in clusters.items():
            self.watches[name] = LeaseWatch(cluster.api_client(), self.namespace).start()

    def candidate(self, cluster: str, identity: str) -> CandidateChild:
        child = CandidateChild(
            cluster,
            self.clusters[cluster].kubeconfig,
            self.namespace,
            "singleton",
            identity,
            self.workdir,
            FAILOVER_TIMING,
        )
        self.children.append(child.start())
        return child

    def released_at(self, cluster: str, after: float) -> float | None:
        """First status in ``cluster`` after ``after`` that names no global holder."""
        for arrived, obj in list(self.watches[cluster].seen):
            if arrived > after and obj.get("status") and status_of(obj)[1] == "":
                return arrived
        return None

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop()
        for watch in self.watches.values():
            watch.stop()


def confirmed_signal(candidate: CandidateChild, started: float) -> float | None:
    """Start of the confirmed lock call that made ``candidate`` lead at ``started``."""
    calls = [c for c in candidate.calls() if c[2] and c[3] in ("create", "update")]
    return max((c[0] for c in calls if c[1] <= started + 0.05), default=None)


def settled(leader: CandidateChild, follower: CandidateChild, since: float) -> bool:
    """The leader renewed twice and the follower polled twice since ``since``."""
    renewals = [c for c in leader.calls() if c[2] and c[3] == "update" and c[0] > since]
    polls = [c for c in follower.calls() if c[3] == "get" and c[0] > since]
    return len(renewals) >= 2 and len(polls) >= 2


def failover_run(clusters: dict[str, Any], url: str, workdir: Path) -> dict[str, float]:
    d, _r, p = FAILOVER_TIMING
    sides = Sides(clusters, url, workdir)
    try:
        candidates = [sides.candidate("east", "app-0"), sides.candidate("west", "app-1")]
        leader = wait_for(
            lambda: next((c for c in candidates if c.leading()), None), 40, "a first leader"
        )
        (follower,) = [c for c in candidates if c is not leader]
        led_from = leader.first("started") or time.monotonic()
        wait_for(lambda: settled(leader, follower, led_from), 20, "leader and follower to settle")

        # Crash: kill -9 of the leader's process (no handler runs), at a random moment of the
        # candidates' poll cycle (settling ends right after a poll, which would bias the times).
        time.sleep(random.uniform(0, p))
        last_signal = max(c[0] for c in leader.calls() if c[2] and c[3] == "update")
        killed = leader.signal(signal.SIGKILL)
        assert leader.popen is not None
        leader.popen.wait(10)
        took_over = wait_for(
            lambda: follower.first("started", killed),
            d + 2 * p + 15,
            "the other candidate to lead after kill -9",
        )
        result = {
            "crash": took_over - killed,
            "crash_since_last_signal": killed - last_signal,
            "crash_old_side_released": _since(sides.released_at(leader.cluster, killed), killed),
            "crash_new_side_free": _since(sides.released_at(follower.cluster, killed), killed),
            "crash_new_signal": _since(confirmed_signal(follower, took_over), killed),
        }

        # The killed pod comes back (same identity) and follows; then a graceful stop.
        restarted = sides.candidate(leader.cluster, leader.identity)
        wait_for(
            lambda: settled(follower, restarted, took_over),
            20,
            "the new leader and the restarted follower to settle",
        )
        time.sleep(random.uniform(0, p))
        terminated = follower.signal(signal.SIGTERM)
        released = wait_for(
            lambda: follower.first("released", terminated), 10, "the leader to release"
        )
        ok = next(f[2] for f in follower.lines() if f[0] == "released")
        handed = wait_for(
            lambda: restarted.first("started", released),
            d + 15,
            "the restarted candidate to lead after the release",
        )
        result.update({
            "handoff": handed - released,
            "handoff_from_sigterm": handed - terminated,
            "handoff_release_ok": float(ok),
            "handoff_old_side_released":
                _since(sides.released_at(follower.cluster, released), released),
            "handoff_new_side_free":
                _since(sides.released_at(restarted.cluster, released), released),
            "handoff_new_signal": _since(confirmed_signal(restarted, handed), released),
        })  # fmt: skip
        return result
    finally:
        sides.close()


def _since(moment: float | None, origin: float) -> float:
    return math.nan if moment is None else moment - origin


def bench_failover(
    clusters: dict[str, Any], store: str, url: str, workdir: Path, runs: int, budget: float
) -> list[Row]:
    d, _r, p = FAILOVER_TIMING
    results = []
    load_before = load()
    started = time.monotonic()
    errors = []
    for _ in range(runs):
        if time.monotonic() - started > budget:
            break
        try:
            results.append(failover_run(clusters, url, workdir))
        except Exception as exc:  # a run that failed is reported, not hidden
            errors.append(f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
    context = {"runs": len(results), "load": f"{load_before} -> {load()}"}
    if errors:
        context["failed_runs"] = len(errors)
        context["first_error"] = errors[0][:200]
    if not results:
        return [Row("crash failover", f"{store}: no run completed", extra=context)]

    def column(key: str) -> list[float]:
        return [r[key] for r in results if not math.isnan(r[key])]

    def median_ms(key: str) -> float | None:
        values = column(key)
        return ms(statistics.median(values)) if values else None

    crash, handoff = column("crash"), column("handoff")
    crash_bound, handoff_bound = d + 2 * p, p
    return [
        Row(
            "crash failover", f"{store}: kill -9 leader -> other cluster's onstarted_leading",
            p50_ms=ms(statistics.median(crash)), p99_ms=ms(max(crash)),
            ratio=max(crash) / crash_bound,
            extra={"bound_ms": ms(crash_bound),
                   "within": f"{sum(v <= crash_bound for v in crash)}/{len(crash)}",
                   "runs_ms": [ms(v) for v in crash],
                   "kill_after_last_signal_ms": median_ms("crash_since_last_signal"),
                   "old_side_released_ms": median_ms("crash_old_side_released"),
                   "new_side_status_free_ms": median_ms("crash_new_side_free"),
                   "new_signal_ms": median_ms("crash_new_signal"),
                   **context},
        ),
        Row(
            "graceful handoff", f"{store}: release written -> other cluster's onstarted_leading",
            p50_ms=ms(statistics.median(handoff)), p99_ms=ms(max(handoff)),
            ratio=max(handoff) / handoff_bound,
            extra={"bound_ms": ms(handoff_bound),
                   "within": f"{sum(v <= handoff_bound for v in handoff)}/{len(handoff)}",
                   "runs_ms": [ms(v) for v in handoff],
                   "from_sigterm_ms": median_ms("handoff_from_sigterm"),
                   "releases_ok": f"{int(sum(column('handoff_release_ok')))}/{len(handoff)}",
                   "old_side_released_ms": median_ms("handoff_old_side_released"),
                   "new_side_status_free_ms": median_ms("handoff_new_side_free"),
                   "new_signal_ms": median_ms("handoff_new_signal"),
                   **context},
        ),
    ]  # fmt: skip


# ----- 4: leases one controller keeps renewed on time -------------------------------------------


class LoadDriver:
    """Signals N leases every retry period, spread evenly, and remembers every signal."""

    def __init__(self, api_client: Any, namespace: str, count: int):
        self.api = k8s.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.names = [f"lease-{i:04d}" for i in range(count)]
        self.latest: dict[str, dict[str, Any]] = {}
        self.confirmations: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self.signals: list[tuple[str, int, float, float]] = []
        """``(name, generation written, due, started)``"""
        self.conflicts = 0
        self.failures = 0
        self.puts: list[tuple[float, float]] = []
        """``(sent, seconds)`` of each PUT that succeeded."""
        self._lock = threading.Lock()

    @staticmethod
    def identity(name: str) -> str:
        return "app-" + name.rsplit("-", 1)[1]

    def on_event(self, obj: dict[str, Any], arrived: float) -> None:
        name = obj["metadata"]["name"]
        self.latest[name] = obj
        _, holder, observed = status_of(obj)
        if holder == self.identity(name):
            self.confirmations[name].append((arrived, observed))

    def spec(self, name: str) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity(name),
            "renewTime": format_time(dt.datetime.now(dt.UTC)),
            "leaseDurationSeconds": int(LOAD_TIMING.lease_duration),
            "renewDeadlineSeconds": int(LOAD_TIMING.renew_deadline),
            "retryPeriodSeconds": int(LOAD_TIMING.retry_period),
        }

    def create(self, name: str) -> None:
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": name},
            "spec": self.spec(name),
        }
        self.api.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body, _request_timeout=30
        )

    def signal(self, name: str, due: float) -> None:
        started = time.monotonic()
        current = self.latest.get(name)
        for attempt in range(3):
            if current is None or attempt > 0:
                current = self.api.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, name, _request_timeout=10
                )
            body = copy.deepcopy(current)
            body.pop("status", None)
            body["spec"] = {**body.get("spec", {}), **self.spec(name)}
            sent = time.monotonic()
            try:
                written = self.api.replace_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, name, body, _request_timeout=10
                )
                self.puts.append((sent, time.monotonic() - sent))
            except ApiException as exc:
                if exc.status == 409:
                    with self._lock:
                        self.conflicts += 1
                    continue
                raise
            with self._lock:
                self.signals.append((name, int(written["metadata"]["generation"]), due, started))
            return
        with self._lock:
            self.failures += 1

    def judge(self, window: tuple[float, float], bound: float) -> dict[str, Any]:
        """Latency of each signal started in ``window`` to the first status confirming it, if
        that arrived before the lease's next signal."""
        by_name: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
        for name, generation, due, started in self.signals:
            by_name[name].append((generation, due, started))
        latencies, lags, missed = [], [], 0
        for name, signals in by_name.items():
            signals.sort(key=lambda s: s[2])
            confirmations = sorted(self.confirmations.get(name, []))
            for index, (generation, due, started) in enumerate(signals):
                if not window[0] <= started < window[1]:
                    continue
                lags.append(started - due)
                until = signals[index + 1][2] if index + 1 < len(signals) else math.inf
                arrived = confirmed_at(confirmations, generation, started, until)
                if arrived is None:
                    missed += 1
                else:
                    latencies.append(arrived - started)
        total = len(latencies) + missed
        puts = [seconds for sent, seconds in self.puts if window[0] <= sent < window[1]]
        return {
            "put_p50": statistics.median(puts) if puts else math.nan,
            "put_p99": percentile(puts, 0.99) if puts else math.nan,
            "signals": total,
            "latencies": latencies,
            "on_time": sum(v <= bound for v in latencies) / total if total else math.nan,
            "strict": sum(v <= STRICT_BOUND for v in latencies) / total if total else math.nan,
            "missed": missed,
            "driver_lag_p99": percentile(lags, 0.99) if lags else math.nan,
        }


def load_step(
    cluster: Any, store: str, url: str, count: int, seconds: float, workdir: Path, workers: int
) -> Row:
    period = LOAD_TIMING.retry_period
    bound = confirmation_bound(LOAD_TIMING)
    namespace = new_name(f"load-{store}-{count}")
    cluster.ensure_namespace(namespace)
    controller = ControllerChild(
        "east",
        cluster.kubeconfig,
        url,
        namespace,
        workdir,
        retry_period=LOAD_CONTROLLER_RETRY,
        workers=workers,
    ).start()
    driver = LoadDriver(cluster.api_client(), namespace, count)
    watch: LeaseWatch | None = None
    pool = ThreadPoolExecutor(DRIVER_THREADS, thread_name_prefix="driver")
    try:
        controller.wait_ready()
        watch = LeaseWatch(cluster.api_client(), namespace, driver.on_event).start()
        list(pool.map(driver.create, driver.names))
        # The controller's first sight of each lease (generation 1) is not a heartbeat.
        wait_for(
            lambda: all(
                status_of(driver.latest.get(n, {"metadata": {}}))[2] >= 1 for n in driver.names
            ),
            30 + 0.2 * count,
            "the controller to see every lease",
            interval=0.1,
        )
        rounds = max(1, round(seconds / period))
        warmup = WARMUP_ROUNDS
        origin = time.monotonic() + 0.2
        window = (origin + warmup * period, origin + (warmup + rounds) * period)
        cpu: CpuWindow | None = None
        before: dict[str, float] = {}
        load_before = ""
        futures = []
        for round_index in range(warmup + rounds):
            if round_index == warmup:
                time.sleep(max(0.0, window[0] - time.monotonic()))
                load_before = load()
                cpu = CpuWindow([controller.pid, *cluster.pids])
                before = storage_ops(controller.metrics())
            for index, name in enumerate(driver.names):
                due = origin + round_index * period + index * period / count
                time.sleep(max(0.0, due - time.monotonic()))
                futures.append(pool.submit(driver.signal, name, due))
        time.sleep(max(0.0, window[1] - time.monotonic()))
        assert cpu is not None
        ops = difference(storage_ops(controller.metrics()), before)
        cpu_each, cpu_driver = cpu.percent()
        rss, peak = memory_mib(controller.pid)
        load_after = load()
        for future in futures:
            future.result(timeout=30)
        time.sleep(bound + 0.5)  # the last signals' confirmations
        verdict = driver.judge(window, bound)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if watch is not None:
            watch.stop()
        controller.stop()
    latencies = verdict["latencies"]
    signals = verdict["signals"]
    etcd_pid, apiserver_pid = cluster.pids
    return Row(
        f"leases on time (P={period:g} s)",
        f"{store}: {count} leases" + (f", {workers} workers" if workers != 4 else ""),
        ops_per_second=len(latencies) / (window[1] - window[0]),
        p50_ms=ms(statistics.median(latencies)) if latencies else None,
        p99_ms=ms(percentile(latencies, 0.99)) if latencies else None,
        extra={
            "on_time": f"{100 * verdict['on_time']:.1f}%",
            "within_750ms": f"{100 * verdict['strict']:.1f}%",
            "signals": signals,
            "missed": verdict["missed"],
            "bound_ms": ms(bound),
            "ctrl_cpu": f"{cpu_each[controller.pid]:.0f}%",
            "ctrl_rss_mib": round(rss, 1),
            "ctrl_peak_rss_mib": round(peak, 1),
            "apiserver_cpu": f"{cpu_each[apiserver_pid]:.0f}%",
            "etcd_cpu": f"{cpu_each[etcd_pid]:.0f}%",
            "driver_cpu": f"{cpu_driver:.0f}%",
            "update/signal": round(ops["update"] / signals, 3) if signals else None,
            "read/signal": round(ops["read"] / signals, 3) if signals else None,
            "reconciles/signal": round(ops["reconciles"] / signals, 2) if signals else None,
            "reconcile_mean_ms": ms(ops["reconcile_seconds"] / ops["reconciles"])
            if ops["reconciles"]
            else None,
            "queue_lag_mean_ms": ms(ops["lag_seconds"] / ops["lags"]) if ops["lags"] else None,
            "reconcile_errors": int(ops["errors"]),
            "conflicts": driver.conflicts,
            "driver_failures": driver.failures,
            "driver_lag_p99_ms": ms(verdict["driver_lag_p99"]),
            "put_p50_ms": ms(verdict["put_p50"]),
            "put_p99_ms": ms(verdict["put_p99"]),
            "seconds": round(window[1] - window[0], 1),
            "load": f"{load_before} -> {load_after}",
        },
    )


def bench_load(
    cluster: Any,
    store: str,
    url_for: Any,
    sizes: list[int],
    seconds: float,
    workdir: Path,
    workers: int,
    compare_workers: int,
) -> list[Row]:
    """Steps of N until one is saturated; then the first N that was not all on time again with
    ``compare_workers`` workers, to tell a controller short of workers from a machine short of
    CPU."""
    rows = []
    first_late = None
    for count in sizes:
        row = load_step(cluster, store, url_for(count), count, seconds, workdir, workers)
        rows.append(row)
        _progress(store, count, row)
        on_time = float(row.extra["on_time"].rstrip("%")) / 100
        if on_time < ALL_ON_TIME and first_late is None:
            first_late = count
        if on_time < SATURATED:
            break
    if first_late is not None and compare_workers and compare_workers != workers:
        row = load_step(
            cluster, store, url_for(first_late), first_late, seconds, workdir, compare_workers
        )
        rows.append(row)
        _progress(store, first_late, row)
    return rows


def _progress(store: str, count: int, row: Row) -> None:
    print(
        f"  load {store} N={count} ({row.subject}): on time {row.extra['on_time']}, "
        f"p99 {row.p99_ms} ms, controller CPU {row.extra['ctrl_cpu']}, "
        f"load {row.extra['load']}",
        flush=True,
    )


# ----- the run ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer calls and runs, shorter steps (a smoke run)"
    )
    parser.add_argument("--only", default="latency,ops,failover,load")
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument(
        "--failover-stores", default=None, help="stores for the failover runs (default: --stores)"
    )
    parser.add_argument("--runs", type=int, default=5, help="failover runs per store")
    parser.add_argument("--sizes", default="25,50,100,150,200,300")
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument(
        "--workers",
        type=int,
        default=4,
        help="the controller's --workers in the load steps (its default: 4)",
    )
    parser.add_argument(
        "--compare-workers",
        type=int,
        default=16,
        help="re-run the first saturated load step with this many workers (0: do not)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    stores = args.stores.split(",")
    failover_stores = (args.failover_stores or args.stores).split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.quick:
        args.runs, args.step_seconds, args.calls, args.compare_workers = 1, 8.0, 50, 0
        sizes = sizes[:2]

    wall = time.monotonic()
    context: dict[str, Any] = {"load_at_start": load(), "commit": _commit()}
    workdir = Path(tempfile.mkdtemp(prefix="mclease-bench-controller-"))
    print(f"work folder {workdir}; load {context['load_at_start']}", flush=True)
    testbed = _testbed()
    rows: list[Row] = []
    failed = []
    names = ["east", "west"] if "failover" in only else ["east"]
    clusters = testbed.start_clusters(names, workdir / "kube")
    pids = [pid for cluster in clusters.values() for pid in cluster.pids]
    try:
        for cluster in clusters.values():
            testbed.apply_manifest(cluster, crd_manifest())
            testbed.wait_crd_established(cluster, CRD_NAME)
        east = clusters["east"]
        with contextlib.ExitStack() as stack:
            redis = None
            if "redis" in stores + failover_stores:
                redis = stack.enter_context(redis_server())
            if redis is not None and redis.pid is not None:
                pids.append(redis.pid)

            def url(store: str, tag: str) -> str:
                if store == "sqlite":
                    return f"sqlite:///{workdir / f'global-{tag}.db'}"
                assert redis is not None
                return f"redis://{redis.address}/0?prefix=bench-{tag}&timeout=1"

            sections: list[tuple[str, Any]] = []
            for store in stores:
                if only & {"latency", "ops"}:
                    sections.append(
                        (
                            f"latency/ops {store}",
                            lambda s=store: bench_leader(
                                east,
                                s,
                                url(s, new_name("leader")),
                                workdir,
                                args.calls,
                                8 if args.quick else 20,
                                5 if args.quick else 10,
                                only,
                            ),
                        )
                    )
            if "failover" in only:
                for store in failover_stores:
                    sections.append(
                        (
                            f"failover {store}",
                            lambda s=store: bench_failover(
                                clusters,
                                s,
                                url(s, new_name("fo")),
                                workdir,
                                args.runs,
                                budget=60 + 40 * args.runs,
                            ),
                        )
                    )
            if "load" in only:
                for store in stores:
                    sections.append(
                        (
                            f"load {store}",
                            lambda s=store: bench_load(
                                east,
                                s,
                                lambda n, s=s: url(s, new_name(f"load{n}")),
                                sizes,
                                args.step_seconds,
                                workdir,
                                args.workers,
                                args.compare_workers,
                            ),
                        )
                    )
            for title, section in sections:
                began = time.monotonic()
                print(f"- {title} (load {load()})", flush=True)
                try:
                    rows.extend(section())
                except Exception as exc:
                    failed.append(title)
                    traceback.print_exc()
                    rows.append(Row(title, "FAILED", extra={"error": f"{exc}"[:300]}))
                print(f"  {title}: {time.monotonic() - began:.0f} s", flush=True)
    finally:
        for cluster in clusters.values():
            cluster.stop()
        for child in Child.started:
            child.stop()
    leftovers = _leftovers([*pids, *(c.pid for c in Child.started)])
    context.update({
        "load_at_end": load(),
        "wall_seconds": round(time.monotonic() - wall),
        "cpus": os.cpu_count(),
        "leftover_processes": leftovers or "none",
        "command": "python bench/controller.py " + " ".join(sys.argv[1:]),
    })  # fmt: skip
    if failed:
        context["failed_sections"] = failed
    report("controller", rows, context)
    if args.keep:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed or leftovers else 0


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' (work tree has uncommitted changes)' if dirty else ''}"


def _leftovers(pids: list[int]) -> list[str]:
    """Processes this run started that are still alive (by pid, never by name)."""
    found = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state != "Z":
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            found.append(f"{pid} {cmdline.decode(errors='replace')[:80]}")
    return found


if __name__ == "__main__":
    sys.exit(main())
