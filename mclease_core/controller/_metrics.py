"""Prometheus metrics of the election controller, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
            "Latency of global store operations",
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
        self.reconcile_errors = Counter(
            "mclease_reconcile_errors",
            "Reconciles that failed and were retried",
            registry=self.registry,
        )
