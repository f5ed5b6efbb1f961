"""Prometheus metrics of the election controller, in a registry of its own, and a storage
wrapper that measures every global store operation."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .._errors import StorageError
from .._storage import Capabilities, LeaseData, LeaseObject, Storage

_T = TypeVar("_T")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
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
        self.reconcile_seconds = Histogram(
            "mclease_reconcile_seconds",
            "Duration of one reconcile of one lease",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.reconcile_lag = Histogram(
            "mclease_reconcile_lag_seconds",
            "Time from a lease being queued (watch event or timer) to its reconcile starting",
            buckets=_LATENCY_BUCKETS,
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
        self.reconcile_errors = Counter(
            "mclease_reconcile_errors",
            "Reconciles that failed and were retried",
            registry=self.registry,
        )


class MeteredStorage(Storage):
    """Delegates to ``inner``, timing each operation and counting failures by error type."""

    def __init__(self, inner: Storage, metrics: Metrics):
        self.inner = inner
        self.metrics = metrics

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

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
