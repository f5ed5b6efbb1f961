"""Plumbing of the controller benchmarks: a lease watcher, metrics, /proc samples.

For: recording every MultiClusterLease change of a namespace with the moment it arrived, reading
the controller's Prometheus counters, and a process's CPU time and memory from ``/proc``.
Measures nothing by itself.

The child processes are the harness's own (:class:`mclease_dev.multicluster.ControllerProcess`,
:class:`mclease_dev.multicluster.CandidateProcess`), started by the benchmarks directly; the one
thing the benchmarks add is where they run: :func:`admin_site`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch

from mclease_core.kube._resource import GROUP, PLURAL, VERSION
from mclease_dev.kube import KubeCluster
from mclease_dev.multicluster import Site

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def admin_site(cluster: KubeCluster, namespace: str) -> Site:
    """The benchmarks run controllers and candidates as the cluster's admin."""
    return Site(cluster, namespace, cluster.kubeconfig, cluster.kubeconfig)


def storage_ops(metrics: dict[str, float]) -> dict[str, float]:
    """Global store operations by kind, and reconciles, from a scrape."""
    ops = {
        op: metrics.get(f'mclease_storage_operation_seconds_count{{operation="{op}"}}', 0.0)
        for op in ("read", "create", "update", "delete")
    }
    ctl = '{controller="multiclusterlease"}'
    queue = '{controller="multiclusterlease",name="multiclusterlease"}'
    ops["reconciles"] = metrics.get(f"controller_runtime_reconcile_time_seconds_count{ctl}", 0.0)
    ops["reconcile_seconds"] = metrics.get(
        f"controller_runtime_reconcile_time_seconds_sum{ctl}", 0.0
    )
    ops["lag_seconds"] = metrics.get(f"workqueue_queue_duration_seconds_sum{queue}", 0.0)
    ops["lags"] = metrics.get(f"workqueue_queue_duration_seconds_count{queue}", 0.0)
    ops["errors"] = metrics.get(f"controller_runtime_reconcile_errors_total{ctl}", 0.0)
    return ops


def difference(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before.get(key, 0.0) for key in after}


class LeaseWatch:
    """Records every MultiClusterLease of a namespace as it arrives: ``(monotonic time, obj)``.

    ``on_event(obj, arrived)`` (optional) runs in the watch thread for each object.
    """

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        on_event: Callable[[dict[str, Any], float], None] | None = None,
    ):
        self.api = k8s.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.on_event = on_event
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{namespace}", daemon=True)
        self.errors = 0

    def start(self) -> LeaseWatch:
        self._thread.start()
        if not self._ready.wait(15):
            raise TimeoutError(f"the watch of {self.namespace} did not start")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _record(self, obj: dict[str, Any]) -> None:
        arrived = time.monotonic()
        if self.on_event is not None:
            self.on_event(obj, arrived)
        else:
            self.seen.append((arrived, obj))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                listing = self.api.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, _request_timeout=30
                )
                assert isinstance(listing, dict)
                for obj in listing.get("items", []):
                    self._record(obj)
                version = listing["metadata"]["resourceVersion"]
                self._ready.set()
                stream = k8s_watch.Watch()
                while not self._stop.is_set():
                    for event in stream.stream(
                        self.api.list_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        self.namespace,
                        PLURAL,
                        resource_version=version,
                        timeout_seconds=2,
                        allow_watch_bookmarks=True,
                    ):
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            raise RuntimeError(f"watch error: {obj}")
                        version = obj["metadata"]["resourceVersion"]
                        if event["type"] in ("ADDED", "MODIFIED"):
                            self._record(obj)
                        if self._stop.is_set():
                            stream.stop()
                            break
            except Exception:
                self.errors += 1
                self._stop.wait(0.2)


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of ``pid`` in clock ticks (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def memory_mib(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of ``pid`` in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


class CpuWindow:
    """CPU used by some processes between :meth:`__init__` and :meth:`percent` (% of one core)."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.started = time.monotonic()
        self.ticks = {pid: cpu_ticks(pid) for pid in pids}
        self.own = os.times()

    def percent(self) -> tuple[dict[int, float], float]:
        """Per pid, and this process (the load driver)."""
        elapsed = time.monotonic() - self.started
        each = {
            pid: 100 * (cpu_ticks(pid) - ticks) / CLOCK_TICKS / elapsed
            for pid, ticks in self.ticks.items()
        }
        now = os.times()
        own = (now.user + now.system) - (self.own.user + self.own.system)
        return each, 100 * own / elapsed
