"""Prometheus metrics of the election controller, in a registry of its own, a storage wrapper
that measures every global store operation, and a work queue that counts itself.

Operators scrape controllers built on controller-runtime with the same dashboards and alerts
everywhere, so the generic series carry controller-runtime's names, types and labels:
``controller_runtime_reconcile_*`` (label ``controller``), ``workqueue_*`` (labels ``name`` and
``controller``, both :data:`CONTROLLER`), client-go's ``leader_election_master_status{name}``
for the replica election, and the process and Python collectors (controller-runtime's process
and Go collectors). What is ours alone is ``mclease_*``.

The work queue maps onto client-go's like this: a key is *added* when it starts waiting (an add
for a key already waiting only moves its due time earlier, as client-go drops an add of a dirty
item); its *queue duration* runs from its due time to the worker's ``get`` (client-go: from
entering the ready queue); *depth* counts the keys that are due and not handed out (client-go's
ready queue; keys waiting for a later time are in neither). A *retry* is a reconcile re-queued
because it failed or must start over (controller-runtime's ``AddRateLimited``); the periodic
re-queue every reconcile asks for is ``result="requeue_after"``, as ``RequeueAfter`` is there.

They replace ``mclease_reconcile_seconds``, ``mclease_reconcile_lag_seconds`` and
``mclease_reconcile_errors_total``: ``controller_runtime_reconcile_time_seconds``,
``workqueue_queue_duration_seconds`` and ``controller_runtime_reconcile_errors_total`` measure
the same.

Per-lease series (``namespace``, ``name``) are removed when the lease is forgotten (deleted, or
gone from a fresh list), so ``/metrics`` does not grow with every lease that ever existed.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from .. import __version__
from .._errors import StorageError
from .._storage import Capabilities, ChangeFeed, LeaseData, LeaseObject, Storage
from ._queue import WorkQueue

_T = TypeVar("_T")

CONTROLLER = "multiclusterlease"
"""The ``controller`` (and work queue ``name``) label: controller-runtime's default, the kind in
lower case."""

RESULTS = ("success", "error", "requeue", "requeue_after")
"""``controller_runtime_reconcile_total`` results: done; failed (retried with backoff); must start
over (a stale copy, a replica that lost its term); done until the periodic re-queue."""

RETRIED = frozenset({"error", "requeue"})

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_RECONCILE_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8),
    *(0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25),
    *(30, 40, 50, 60),
)
"""controller-runtime's buckets for ``controller_runtime_reconcile_time_seconds``."""
_QUEUE_BUCKETS = tuple(float(f"1e{exponent}") for exponent in range(-8, 4))
"""client-go's workqueue buckets: 10 ns to 1000 s, a factor of ten apart."""


class Metrics:
    """Every series of one controller, in ``registry`` (a new one unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.controller = CONTROLLER
        self._add_runtime()
        self._add_lease_series()
        self._add_store_series()
        self._add_reconcile_series()
        self._add_queue_series()

    # ----- definitions ---------------------------------------------------------------------------

    def _add_runtime(self) -> None:
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        build = Gauge(
            "mclease_build_info",
            "Always 1; the labels say which mclease and which Python this process runs",
            ["version", "python"],
            registry=self.registry,
        )
        build.labels(__version__, platform.python_version()).set(1)
        self.replica_leader = Gauge(
            "leader_election_master_status",
            "1 while this replica holds the controller's replica lease (it is the active one), "
            "0 while it is a standby; 'name' is the lease's name (only with --leader-elect)",
            ["name"],
            registry=self.registry,
        )

    def _add_lease_series(self) -> None:
        self.is_leader = Gauge(
            "mclease_lease_leader_here",
            "1 while this cluster's candidate is the confirmed global leader of the lease",
            ["namespace", "name"],
            registry=self.registry,
        )
        self.transitions = Gauge(
            "mclease_lease_transitions",
            "Global leader changes of the lease, as recorded in the global store",
            ["namespace", "name"],
            registry=self.registry,
        )
        self.late_signals = Counter(
            "mclease_late_signals",
            "Signals first reconciled after their candidate stopped waiting for a confirmation "
            "(not renewed: renewing could not make anyone lead)",
            registry=self.registry,
        )
        self.status_rejections = Counter(
            "mclease_status_rejections",
            "Status writes the API server refused as invalid (a value its schema cannot hold)",
            registry=self.registry,
        )

    def _add_store_series(self) -> None:
        self.storage_seconds = Histogram(
            "mclease_storage_operation_seconds",
            "Latency of global store operations (its _count is the number of operations)",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.storage_errors = Counter(
            "mclease_storage_errors",
            "Failed global store operations by error type",
            ["operation", "error"],
            registry=self.registry,
        )
        self.store_changes = Counter(
            "mclease_store_changes",
            "Changes of a lease's global record by another writer, reported by the store's change "
            "feed, that queued a reconcile at once",
            registry=self.registry,
        )
        self.store_watch_connected = Gauge(
            "mclease_store_watch_connected",
            "1 while the store's change feed is connected (followers then read only after a "
            "change), 0 while it is not or the store cannot watch",
            registry=self.registry,
        )

    def _add_reconcile_series(self) -> None:
        by_controller = ["controller"]
        self.reconciles = Counter(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            ["controller", "result"],
            registry=self.registry,
        )
        for result in RESULTS:  # every result from the start, as controller-runtime does
            self.reconciles.labels(self.controller, result)
        self.reconcile_errors = Counter(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            by_controller,
            registry=self.registry,
        ).labels(self.controller)
        self.reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            by_controller,
            buckets=_RECONCILE_BUCKETS,
            registry=self.registry,
        ).labels(self.controller)
        self.max_workers = Gauge(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            by_controller,
            registry=self.registry,
        ).labels(self.controller)
        self.active_workers = Gauge(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            by_controller,
            registry=self.registry,
        ).labels(self.controller)

    def _add_queue_series(self) -> None:
        by_queue = ["name", "controller"]
        queue = (self.controller, self.controller)

        def gauge(name: str, description: str) -> Gauge:
            return Gauge(name, description, by_queue, registry=self.registry).labels(*queue)

        def counter(name: str, description: str) -> Counter:
            return Counter(name, description, by_queue, registry=self.registry).labels(*queue)

        def histogram(name: str, description: str) -> Histogram:
            return Histogram(
                name, description, by_queue, buckets=_QUEUE_BUCKETS, registry=self.registry
            ).labels(*queue)

        self.queue_depth = gauge("workqueue_depth", "Current depth of workqueue")
        self.queue_adds = counter("workqueue_adds", "Total number of adds handled by workqueue")
        self.queue_retries = counter(
            "workqueue_retries", "Total number of retries handled by workqueue"
        )
        self.queue_wait = histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
        )
        self.work_time = histogram(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
        )
        self.unfinished_work = gauge(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been "
            "observed by work_duration. Large values indicate stuck threads",
        )
        self.longest_running = gauge(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running",
        )

    # ----- bookkeeping ---------------------------------------------------------------------------

    def record_reconcile(self, result: str, seconds: float) -> None:
        """One reconcile ended with ``result`` (one of :data:`RESULTS`) after ``seconds``."""
        if result not in RESULTS:
            raise ValueError(f"reconcile result must be one of {RESULTS}, got {result!r}")
        self.reconciles.labels(self.controller, result).inc()
        self.reconcile_time.observe(seconds)
        if result == "error":
            self.reconcile_errors.inc()
        if result in RETRIED:
            self.queue_retries.inc()

    def watch_replica(self, lease_name: str, leading: Callable[[], bool]) -> None:
        """``leader_election_master_status{name=lease_name}`` asks ``leading`` at each scrape:
        the replica's term on the monotonic clock, not the last callback."""
        self.replica_leader.labels(lease_name).set_function(lambda: 1.0 if leading() else 0.0)

    def forget_lease(self, namespace: str, name: str) -> None:
        """Drop the series of a lease that no longer exists here."""
        self.is_leader.remove(namespace, name)
        self.transitions.remove(namespace, name)


class MeteredWorkQueue(WorkQueue):
    """The work queue, counted in ``metrics``' ``workqueue_*`` series (see the module notes).
    ``clock`` (monotonic seconds) times the work between ``get`` and ``done``."""

    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._metrics = metrics
        self._clock = clock
        self._working: dict[str, float] = {}
        self._working_lock = threading.Lock()
        metrics.queue_depth.set_function(self.ready)
        metrics.unfinished_work.set_function(lambda: self.unfinished_work()[0])
        metrics.longest_running.set_function(lambda: self.unfinished_work()[1])

    def add(self, key: str, delay: float = 0.0) -> None:
        with self._cond:
            waiting = key in self._due or key in self._dirty
            super().add(key, delay)
        if not waiting:
            self._metrics.queue_adds.inc()

    def get(self, timeout: float | None = None) -> tuple[str, float] | None:
        item = super().get(timeout)
        if item is not None:
            key, waited = item
            self._metrics.queue_wait.observe(waited)
            with self._working_lock:
                self._working[key] = self._clock()
        return item

    def done(self, key: str) -> None:
        with self._working_lock:
            started = self._working.pop(key, None)
        if started is not None:
            self._metrics.work_time.observe(self._clock() - started)
        super().done(key)

    def ready(self) -> int:
        """Keys that are due and not handed out to a worker yet."""
        with self._cond:
            now = time.monotonic()
            return sum(1 for due in self._due.values() if due <= now)

    def unfinished_work(self) -> tuple[float, float]:
        """Seconds the keys handed out and not done have been worked on: (sum, longest)."""
        now = self._clock()
        with self._working_lock:
            ages = [now - started for started in self._working.values()]
        return sum(ages), max(ages, default=0.0)


class MeteredStorage(Storage):
    """Delegates to ``inner``, timing each operation and counting failures by error type."""

    def __init__(self, inner: Storage, metrics: Metrics):
        self.inner = inner
        self.metrics = metrics

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def watch(self) -> ChangeFeed:
        return self.inner.watch()

    def _measure(self, operation: str, call: Callable[[], _T]) -> _T:
        started = time.monotonic()
        try:
            return call()
        except StorageError as exc:
            self.metrics.storage_errors.labels(operation, type(exc).__name__).inc()
            raise
        finally:
            self.metrics.storage_seconds.labels(operation).observe(time.monotonic() - started)

    def read(self, key: str) -> LeaseObject:
        return self._measure("read", lambda: self.inner.read(key))

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        return self._measure("create", lambda: self.inner.create(key, data))

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        return self._measure("update", lambda: self.inner.update(key, data, version=version))

    def delete(self, key: str, *, version: int) -> None:
        self._measure("delete", lambda: self.inner.delete(key, version=version))

    def close(self) -> None:
        self.inner.close()
