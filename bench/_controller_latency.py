"""Benchmarks 1 and 2 of ``bench/controller.py``: confirmation latency and storage operations.

One cluster, one ``mclease controller`` (``--retry-period 0.5``), one ``MultiClusterLeaseLock``
(its defaults D=20, R=10, P=2) doing ``get`` + ``update`` in a loop.

``latency``: from the signal (the call's start, ``last_confirmation.signalled_at``) to the call
returning confirmed (the lock polls status every 20 ms), and to the confirming status arriving on
a watch of the object. Upstream's lock polls status once a second, so its latency is at least the
time to its next one-second poll.

``ops``: the controller's own counters (``mclease_storage_operation_seconds_count`` by operation,
``controller_runtime_reconcile_time_seconds_count``) scraped before and after: per confirmed
renewal (the latency loop's back-to-back renewals, then a candidate-like renewal every second
between the controller's 0.5 s periodic reconciles), and per reconcile of a follower lease (its
candidate is not live; another cluster, here an elector in this process, holds the global
lease).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from _common import Row
from _controller_bed import (
    LATENCY_TIMING,
    LeaseStatus,
    LeaseWatch,
    confirmations_of,
    confirmed_at,
    difference,
    load_average,
    lock_record,
    metered_controller,
    ms,
    new_name,
    percentile,
    running,
    storage_ops,
)
from kubernetes import client as k8s

from mclease_core import LeaderElector, LeaseTiming, load_backends
from mclease_core.kube import MultiClusterLeaseLock
from mclease_core.kube._lock import confirmation_bound
from mclease_core.kube._resource import API_VERSION, GROUP, KIND, PLURAL, VERSION, format_time
from mclease_core.testing import wait_until
from mclease_dev.kube import KubeCluster
from mclease_dev.multicluster import ControllerProcess

LEASE = "bench"
IDENTITY = "app-0"


@dataclasses.dataclass(frozen=True)
class Renewal:
    """One ``get`` + ``update`` of the lock."""

    confirmed: bool
    returned_at: float


@dataclasses.dataclass(frozen=True)
class LatencySample:
    """A confirmed renewal: its signal, its return, and the generation it wrote."""

    signalled_at: float
    returned_at: float
    generation: int


def bench_leader(
    cluster: KubeCluster,
    store: str,
    url: str,
    workdir: Path,
    calls: int,
    steady_seconds: float,
    follower_seconds: float,
    only: set[str],
) -> list[Row]:
    """The ``latency`` rows and the ``ops`` rows (those in ``only``) of one store."""
    namespace = new_name(f"lat-{store}")
    cluster.ensure_namespace(namespace)
    rows: list[Row] = []
    bound = confirmation_bound(LATENCY_TIMING)
    controller = metered_controller(cluster, url, namespace, workdir)
    with running(controller):
        controller.start()
        controller.wait_ready()
        watch = LeaseWatch(cluster.api_client(), namespace).start()
        lock = MultiClusterLeaseLock(
            LEASE,
            namespace,
            IDENTITY,
            lease_duration=int(LATENCY_TIMING.lease_duration),
            renew_deadline=int(LATENCY_TIMING.renew_deadline),
            retry_period=int(LATENCY_TIMING.retry_period),
            api_client=cluster.api_client(),
        )

        def renew() -> Renewal:
            lock.get(LEASE, namespace)
            confirmed = lock.update(
                LEASE, namespace, lock_record(IDENTITY, LATENCY_TIMING.lease_duration)
            )
            return Renewal(confirmed, time.monotonic())

        # The first sight of an object is not a heartbeat: the create is never confirmed.
        lock.create(LEASE, namespace, lock_record(IDENTITY, LATENCY_TIMING.lease_duration))
        wait_until(
            lambda: renew().confirmed, timeout=10, interval=0.0, message="a first confirmation"
        )
        for _ in range(10):
            renew()
        load_before = load_average()
        before = storage_ops(controller.metrics())
        samples: list[LatencySample] = []
        failed = 0
        for _ in range(calls):
            renewal = renew()
            confirmation = lock.last_confirmation
            if renewal.confirmed and confirmation is not None:
                samples.append(
                    LatencySample(
                        confirmation.signalled_at, renewal.returned_at, confirmation.generation
                    )
                )
            else:
                failed += 1
            time.sleep(0.05)
        ops = difference(storage_ops(controller.metrics()), before)
        time.sleep(0.3)
        confirmations = confirmations_of(watch.seen, IDENTITY)
        returned = [sample.returned_at - sample.signalled_at for sample in samples]
        visible = [
            arrived - sample.signalled_at
            for sample in samples
            if (
                arrived := confirmed_at(
                    confirmations, sample.generation, sample.signalled_at, sample.returned_at + 1
                )
            )
            is not None
        ]
        load_text = f"{load_before} -> {load_average()}"
        context = {"load": load_text, "bound_ms": ms(bound)}
        if "latency" in only:
            rows.append(
                latency_row(
                    f"{store}: lock.update, signal -> returns confirmed",
                    returned,
                    {"calls": calls, "confirmed": len(samples), "failed": failed},
                    {**context, "upstream": ">= its next 1 s status poll"},
                )
            )
            rows.append(
                latency_row(
                    f"{store}: signal -> confirming status on a watch",
                    visible,
                    {"matched": len(visible)},
                    context,
                )
            )
        if "ops" in only:
            rows.append(
                ops_row(
                    f"{store}: leader, {len(samples)} back-to-back renewals",
                    ops,
                    len(samples),
                    "renewal",
                    load_text,
                )
            )
            rows.append(steady_renewals(controller, renew, store, steady_seconds))
        watch.stop()
    if "ops" in only:
        rows.append(follower_reads(cluster, store, url, workdir, follower_seconds))
    return rows


def latency_row(
    subject: str, latencies: list[float], counts: Mapping[str, object], notes: Mapping[str, object]
) -> Row:
    """A ``confirmation latency`` row: p50, p99 and max of ``latencies``, then ``notes``."""
    return Row(
        "confirmation latency",
        subject,
        p50_ms=ms(statistics.median(latencies)),
        p99_ms=ms(percentile(latencies, 0.99)),
        extra={**counts, "max_ms": ms(max(latencies)), **notes},
    )


def ops_row(subject: str, ops: dict[str, float], count: int, per: str, load_text: str) -> Row:
    """Storage operations and reconciles per ``per`` (a renewal, a reconcile)."""
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


def steady_renewals(
    controller: ControllerProcess, renew: Callable[[], Renewal], store: str, seconds: float
) -> Row:
    """A renewal every second (a P=1 candidate) with the controller's periodic reconciles
    (every 0.5-0.6 s) in between."""
    load_before = load_average()
    before = storage_ops(controller.metrics())
    confirmed = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        confirmed += renew().confirmed
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    ops = difference(storage_ops(controller.metrics()), before)
    return ops_row(
        f"{store}: leader, a renewal every 1 s, controller reconciles every 0.5 s",
        ops,
        confirmed,
        "renewal",
        f"{load_before} -> {load_average()}",
    )


def follower_reads(
    cluster: KubeCluster, store: str, url: str, workdir: Path, seconds: float
) -> Row:
    """A lease whose local candidate is not live while another cluster holds the global lease."""
    namespace = new_name(f"fol-{store}")
    cluster.ensure_namespace(namespace)
    storage = load_backends().open(url)
    other = LeaderElector(
        storage, f"{namespace}/{LEASE}", IDENTITY, cluster="west", timing=LeaseTiming(6, 3, 1)
    )
    controller = metered_controller(cluster, url, namespace, workdir)
    try:
        controller.start()
        other.start()
        controller.wait_ready()
        wait_until(other.is_leader, timeout=10, message="the other cluster's elector to lead")
        api = k8s.CustomObjectsApi(cluster.api_client())
        api.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": LEASE},
                "spec": {
                    "holderIdentity": "app-1",
                    "renewTime": format_time(dt.datetime.now(dt.UTC)),
                    "leaseDurationSeconds": 6,
                    "renewDeadlineSeconds": 3,
                    "retryPeriodSeconds": 1,
                },
            },
        )
        time.sleep(2)
        load_before = load_average()
        before = storage_ops(controller.metrics())
        time.sleep(seconds)
        ops = difference(storage_ops(controller.metrics()), before)
        found = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, LEASE)
        assert isinstance(found, dict)
        holder = LeaseStatus.of(found).global_holder
    finally:
        controller.terminate()
        other.stop(timeout=5)
        storage.close()
    row = ops_row(
        f"{store}: follower (candidate not live, held by west)",
        ops,
        int(ops["reconciles"]),
        "reconcile",
        f"{load_before} -> {load_average()}",
    )
    row.extra["status_names"] = holder
    row.extra.pop("reconciles/reconcile", None)
    row.extra["seconds"] = seconds
    return row
