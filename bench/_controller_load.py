"""Benchmark 4 of ``bench/controller.py``: how many leases one controller keeps renewed on time.

One controller (its default ``--retry-period 2``), N leases whose candidates have D=20, R=10,
P=2. A load driver in this process signals every lease every 2 s, spread evenly (a PUT of the
whole object with a new ``renewTime``, as the lock does), and a watch of the namespace tells, for
each signal, when a status confirming it arrived (``observedGeneration`` >= the written
generation and ``globalHolderIdentity`` = the candidate). On time: within the lock's call bound C
(``confirmation_bound`` at run time); also reported: within :data:`STRICT_BOUND`. Missed: no
confirmation before the lease's next signal. CPU from ``/proc/<pid>/stat`` over the measured
window, memory from ``/proc/<pid>/status``.

Steps of N stop once a step is clearly saturated (under :data:`SATURATED` on time); the first step
under :data:`ALL_ON_TIME` runs again with more controller workers, to tell a controller short of
workers from a machine short of CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import Row
from _controller_bed import (
    LOAD_CONTROLLER_RETRY,
    LOAD_TIMING,
    STRICT_BOUND,
    Confirmation,
    CpuWindow,
    LeaseStatus,
    LeaseWatch,
    confirmed_at,
    difference,
    load_average,
    memory_mib,
    metered_controller,
    ms,
    new_name,
    percentile,
    storage_ops,
)
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from mclease_core.kube._lock import confirmation_bound
from mclease_core.kube._resource import API_VERSION, GROUP, KIND, PLURAL, VERSION, format_time
from mclease_core.testing import wait_until
from mclease_dev.kube import KubeCluster

DRIVER_THREADS = 8
WARMUP_ROUNDS = 2
"""Load rounds before the measured window: the first acquisitions (a create, an event) and the
controller's catching up with them are not steady state."""
SATURATED = 0.8
"""A load step with fewer signals confirmed on time than this ends the steps of that store."""
ALL_ON_TIME = 0.99
"""The first load step below this runs again with ``compare_workers`` workers."""
DEFAULT_WORKERS = 4
"""The controller's own default ``--workers``."""


@dataclasses.dataclass(frozen=True)
class Signal:
    """One PUT of a lease's spec that the API server accepted."""

    name: str
    generation: int
    """The generation the PUT wrote: a confirming status observes it or a later one."""
    due: float
    """When the driver's schedule wanted it sent."""
    started: float
    """When the driver started it (a GET and retries on conflict may come before the PUT)."""


@dataclasses.dataclass(frozen=True)
class Put:
    """A successful PUT: when it was sent and how long the API server took."""

    sent: float
    seconds: float


@dataclasses.dataclass(frozen=True)
class Window:
    """The measured part of a load step, on ``time.monotonic()``."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def __contains__(self, moment: float) -> bool:
        return self.start <= moment < self.end


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The signals started in the measured window, judged against their confirmations."""

    latencies: list[float]
    """Signal started to the first status confirming it, for each confirmed signal."""
    signals: int
    missed: int
    on_time: float
    """Share of the signals confirmed within the call bound (NaN without signals)."""
    strict: float
    """Share of the signals confirmed within :data:`STRICT_BOUND`."""
    put_p50: float
    put_p99: float
    driver_lag_p99: float
    """How late the driver started signals against their schedule."""


class LoadDriver:
    """Signals N leases every retry period, spread evenly, and remembers every signal."""

    def __init__(self, api_client: Any, namespace: str, count: int) -> None:
        self.api = k8s.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.names = [f"lease-{i:04d}" for i in range(count)]
        self.latest: dict[str, dict[str, Any]] = {}
        self.confirmations: dict[str, list[Confirmation]] = defaultdict(list)
        self.signals: list[Signal] = []
        self.puts: list[Put] = []
        self.conflicts = 0
        self.failures = 0
        self._lock = threading.Lock()

    @staticmethod
    def identity(name: str) -> str:
        return "app-" + name.rsplit("-", 1)[1]

    def on_event(self, obj: dict[str, Any], arrived: float) -> None:
        name = obj["metadata"]["name"]
        self.latest[name] = obj
        status = LeaseStatus.of(obj)
        if status.global_holder == self.identity(name):
            self.confirmations[name].append(Confirmation(arrived, status.observed_generation))

    def seen_by_controller(self, name: str) -> bool:
        """The controller has written a status for the lease's first generation."""
        obj = self.latest.get(name)
        return obj is not None and LeaseStatus.of(obj).observed_generation >= 1

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
                current = self._get(name)
            body = copy.deepcopy(current)
            body.pop("status", None)
            body["spec"] = {**body.get("spec", {}), **self.spec(name)}
            sent = time.monotonic()
            try:
                written = self.api.replace_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, name, body, _request_timeout=10
                )
                self.puts.append(Put(sent, time.monotonic() - sent))
            except ApiException as exc:
                if exc.status == 409:
                    with self._lock:
                        self.conflicts += 1
                    continue
                raise
            generation = int(_as_object(written)["metadata"]["generation"])
            with self._lock:
                self.signals.append(Signal(name, generation, due, started))
            return
        with self._lock:
            self.failures += 1

    def _get(self, name: str) -> dict[str, Any]:
        return _as_object(
            self.api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, _request_timeout=10
            )
        )

    def judge(self, window: Window, bound: float) -> Verdict:
        """Latency of each signal started in ``window`` to the first status confirming it, if
        that arrived before the lease's next signal."""
        by_name: dict[str, list[Signal]] = defaultdict(list)
        for signal in self.signals:
            by_name[signal.name].append(signal)
        latencies: list[float] = []
        lags: list[float] = []
        missed = 0
        for name, signals in by_name.items():
            signals.sort(key=lambda s: s.started)
            confirmations = sorted(self.confirmations.get(name, []), key=_arrival_order)
            for index, signal in enumerate(signals):
                if signal.started not in window:
                    continue
                lags.append(signal.started - signal.due)
                until = signals[index + 1].started if index + 1 < len(signals) else math.inf
                arrived = confirmed_at(confirmations, signal.generation, signal.started, until)
                if arrived is None:
                    missed += 1
                else:
                    latencies.append(arrived - signal.started)
        total = len(latencies) + missed
        puts = [put.seconds for put in self.puts if put.sent in window]
        return Verdict(
            latencies=latencies,
            signals=total,
            missed=missed,
            on_time=sum(v <= bound for v in latencies) / total if total else math.nan,
            strict=sum(v <= STRICT_BOUND for v in latencies) / total if total else math.nan,
            put_p50=statistics.median(puts) if puts else math.nan,
            put_p99=percentile(puts, 0.99) if puts else math.nan,
            driver_lag_p99=percentile(lags, 0.99) if lags else math.nan,
        )


def _arrival_order(confirmation: Confirmation) -> tuple[float, int]:
    return confirmation.arrived, confirmation.observed_generation


def _as_object(answer: object) -> dict[str, Any]:
    """The Kubernetes client's custom-object answers are JSON objects typed ``object``."""
    if not isinstance(answer, dict):
        raise TypeError(f"expected a JSON object from the API server, got {type(answer).__name__}")
    return answer


def load_step(
    cluster: KubeCluster,
    store: str,
    url: str,
    count: int,
    seconds: float,
    workdir: Path,
    workers: int,
) -> Row:
    """``count`` leases signalled for ``seconds`` (after warm-up rounds) against one controller."""
    period = LOAD_TIMING.retry_period
    bound = confirmation_bound(LOAD_TIMING)
    namespace = new_name(f"load-{store}-{count}")
    cluster.ensure_namespace(namespace)
    controller = metered_controller(
        cluster,
        url,
        namespace,
        workdir,
        retry_period=LOAD_CONTROLLER_RETRY,
        extra_args=("--workers", str(workers)),
    )
    driver = LoadDriver(cluster.api_client(), namespace, count)
    watch: LeaseWatch | None = None
    pool = ThreadPoolExecutor(DRIVER_THREADS, thread_name_prefix="driver")
    try:
        controller.start()
        controller.wait_ready()
        watch = LeaseWatch(cluster.api_client(), namespace, driver.on_event).start()
        list(pool.map(driver.create, driver.names))
        # The controller's first sight of each lease (generation 1) is not a heartbeat.
        wait_until(
            lambda: all(driver.seen_by_controller(name) for name in driver.names),
            timeout=30 + 0.2 * count,
            interval=0.1,
            message="the controller to see every lease",
        )
        rounds = max(1, round(seconds / period))
        origin = time.monotonic() + 0.2
        window = Window(origin + WARMUP_ROUNDS * period, origin + (WARMUP_ROUNDS + rounds) * period)
        cpu: CpuWindow | None = None
        before: dict[str, float] = {}
        load_before = ""
        futures: list[Future[None]] = []
        for round_index in range(WARMUP_ROUNDS + rounds):
            if round_index == WARMUP_ROUNDS:
                time.sleep(max(0.0, window.start - time.monotonic()))
                load_before = load_average()
                cpu = CpuWindow([controller.pid, *cluster.pids])
                before = storage_ops(controller.metrics())
            for index, name in enumerate(driver.names):
                due = origin + round_index * period + index * period / count
                time.sleep(max(0.0, due - time.monotonic()))
                futures.append(pool.submit(driver.signal, name, due))
        time.sleep(max(0.0, window.end - time.monotonic()))
        assert cpu is not None
        ops = difference(storage_ops(controller.metrics()), before)
        cpu_each, cpu_driver = cpu.percent()
        rss, peak = memory_mib(controller.pid)
        load_after = load_average()
        for future in futures:
            future.result(timeout=30)
        time.sleep(bound + 0.5)  # the last signals' confirmations
        verdict = driver.judge(window, bound)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if watch is not None:
            watch.stop()
        controller.terminate()
    latencies = verdict.latencies
    signals = verdict.signals
    etcd_pid, apiserver_pid = cluster.pids

    def cpu_ms_per_renewal(pid: int) -> float | None:
        """CPU-milliseconds of ``pid`` per confirmed renewal (the issue-12 goal: 0.5 for ours)."""
        if not latencies:
            return None
        return round(cpu_each[pid] / 100 * window.seconds * 1000 / len(latencies), 2)

    return Row(
        f"leases on time (P={period:g} s)",
        f"{store}: {count} leases" + (f", {workers} workers" if workers != DEFAULT_WORKERS else ""),
        ops_per_second=len(latencies) / window.seconds,
        p50_ms=ms(statistics.median(latencies)) if latencies else None,
        p99_ms=ms(percentile(latencies, 0.99)) if latencies else None,
        extra={
            "on_time": f"{100 * verdict.on_time:.1f}%",
            "within_750ms": f"{100 * verdict.strict:.1f}%",
            "signals": signals,
            "missed": verdict.missed,
            "bound_ms": ms(bound),
            "ctrl_cpu": f"{cpu_each[controller.pid]:.0f}%",
            "ctrl_cpu_ms/renewal": cpu_ms_per_renewal(controller.pid),
            "apiserver_cpu_ms/renewal": cpu_ms_per_renewal(apiserver_pid),
            "etcd_cpu_ms/renewal": cpu_ms_per_renewal(etcd_pid),
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
            "driver_lag_p99_ms": ms(verdict.driver_lag_p99),
            "put_p50_ms": ms(verdict.put_p50),
            "put_p99_ms": ms(verdict.put_p99),
            "seconds": round(window.seconds, 1),
            "load": f"{load_before} -> {load_after}",
        },
    )


def bench_load(
    cluster: KubeCluster,
    store: str,
    url_for: Callable[[int], str],
    sizes: list[int],
    seconds: float,
    workdir: Path,
    workers: int,
    compare_workers: int,
) -> list[Row]:
    """Steps of N until one is saturated; then the first N that was not all on time again with
    ``compare_workers`` workers (0: not)."""
    rows = []
    first_late = None
    for count in sizes:
        row, on_time = _step(cluster, store, url_for, count, seconds, workdir, workers)
        rows.append(row)
        if on_time < ALL_ON_TIME and first_late is None:
            first_late = count
        if on_time < SATURATED:
            break
    if first_late is not None and compare_workers and compare_workers != workers:
        row, _ = _step(cluster, store, url_for, first_late, seconds, workdir, compare_workers)
        rows.append(row)
    return rows


def _step(
    cluster: KubeCluster,
    store: str,
    url_for: Callable[[int], str],
    count: int,
    seconds: float,
    workdir: Path,
    workers: int,
) -> tuple[Row, float]:
    """One load step, its progress line printed; the row and its share on time."""
    row = load_step(cluster, store, url_for(count), count, seconds, workdir, workers)
    on_time = str(row.extra["on_time"])
    print(
        f"  load {store} N={count} ({row.subject}): on time {on_time}, "
        f"p99 {row.p99_ms} ms, controller CPU {row.extra['ctrl_cpu']} "
        f"({row.extra['ctrl_cpu_ms/renewal']} ms/renewal, API server "
        f"{row.extra['apiserver_cpu_ms/renewal']} ms/renewal), "
        f"load {row.extra['load']}",
        flush=True,
    )
    return row, float(on_time.rstrip("%")) / 100
