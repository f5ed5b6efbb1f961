"""What the controller benchmarks share: the clusters and the store, timings, typed records.

:class:`ElectionBed` starts what every benchmark of ``bench/controller.py`` runs against: control
planes of the Kubernetes test bed ("east", and "west" when the failover runs; etcd +
kube-apiserver each) with the MultiClusterLease CRD installed, and the global store (a SQLite file
per run, or one ``redis-server`` on a free port); it stops all of it and tells, by pid, what it
started that is still alive. The records (:class:`LeaseStatus`, :class:`Confirmation`) name
the fields the benchmarks read from watched objects; a candidate's lock calls come as the
harness's :class:`~mclease_dev.records.LockCall`.

The benchmarks start the development harness's processes themselves
(:class:`~mclease_dev.multicluster.ControllerProcess`,
:class:`~mclease_dev.multicluster.CandidateProcess`, as the cluster's admin:
:func:`_kubebench.admin_site`) and poll with :func:`mclease_core.testing.wait_until`; the bed
stops whichever of them are still running when it closes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

from _kubebench import CpuWindow, LeaseWatch, admin_site, difference, memory_mib, storage_ops
from kubernetes.leaderelection.leaderelectionrecord import LeaderElectionRecord

from mclease_core import LeaseTiming
from mclease_core._closing import Closing
from mclease_core._crd import CRD_NAME, crd_manifest
from mclease_core.kube._lock import confirmation_bound
from mclease_core.testing import ServerProcess, wait_until
from mclease_dev import REPO_ROOT
from mclease_dev.kube import KubeCluster, apply_manifest, start_clusters, wait_crd_established
from mclease_dev.multicluster import CandidateProcess, ControllerProcess
from mclease_dev.processes import ManagedProcess
from mclease_dev.servers import FAKE_GCS_BUCKET, etcd_server, fake_gcs_server, redis_server

__all__ = [
    "CONTROLLER_RETRY",
    "FAILOVER_TIMING",
    "LATENCY_TIMING",
    "LOAD_CONTROLLER_RETRY",
    "LOAD_TIMING",
    "STRICT_BOUND",
    "Confirmation",
    "CpuWindow",
    "ElectionBed",
    "LeaseStatus",
    "LeaseWatch",
    "admin_site",
    "confirmations_of",
    "confirmed_at",
    "difference",
    "load_average",
    "lock_record",
    "memory_mib",
    "metered_controller",
    "ms",
    "new_name",
    "percentile",
    "running",
    "storage_ops",
    "wait_for_found",
]


def shortest_valid_timing(renew_deadline: int, retry_period: int, at_least: int) -> LeaseTiming:
    """The timing with the smallest whole D >= ``at_least`` the lock accepts with R and P."""
    duration = at_least
    while True:
        timing = LeaseTiming(duration, renew_deadline, retry_period)
        try:
            confirmation_bound(timing)
        except ValueError:
            duration += 1
            continue
        return timing


LATENCY_TIMING = LeaseTiming(20, 10, 2)
"""The lock's defaults."""
FAILOVER_TIMING = shortest_valid_timing(3, 1, at_least=6)
"""R=3, P=1 and the shortest whole lease duration the lock accepts with them."""
LOAD_TIMING = LeaseTiming(20, 10, 2)
"""The lock's defaults."""
STRICT_BOUND = 0.75
"""A second, stricter bound the load benchmark reports (see docs/benchmarks.md)."""
CONTROLLER_RETRY = 0.5
"""The controllers' reconcile period in the latency, ops and failover benchmarks."""
LOAD_CONTROLLER_RETRY = 2.0
"""The controller's reconcile period in the load benchmark (its default)."""


# ----- records --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LeaseStatus:
    """What the benchmarks read of a watched MultiClusterLease object."""

    generation: int
    global_holder: str
    """``status.globalHolderIdentity``; empty when no cluster holds the global lease."""
    observed_generation: int

    @classmethod
    def of(cls, obj: dict[str, Any]) -> LeaseStatus:
        status = obj.get("status") or {}
        return cls(
            generation=int(obj["metadata"].get("generation") or 0),
            global_holder=str(status.get("globalHolderIdentity") or ""),
            observed_generation=int(status.get("observedGeneration") or 0),
        )


@dataclasses.dataclass(frozen=True)
class Confirmation:
    """A watched status confirming a candidate: when it arrived and the generation it observed."""

    arrived: float
    observed_generation: int


def confirmations_of(
    seen: Sequence[tuple[float, dict[str, Any]]], identity: str
) -> list[Confirmation]:
    """Each watched status that confirms ``identity``, in arrival order."""
    found = []
    for arrived, obj in seen:
        status = LeaseStatus.of(obj)
        if status.global_holder == identity:
            found.append(Confirmation(arrived, status.observed_generation))
    return found


def confirmed_at(
    confirmations: Sequence[Confirmation], generation: int, after: float, before: float
) -> float | None:
    """When a status confirming ``generation`` (or later) first arrived in ``[after, before)``."""
    for confirmation in confirmations:
        if (
            after <= confirmation.arrived < before
            and confirmation.observed_generation >= generation
        ):
            return confirmation.arrived
    return None


# ----- small helpers --------------------------------------------------------------------------


def load_average() -> str:
    """The machine's 1-, 5- and 15-minute load, printed with every result."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)


def new_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def lock_record(identity: str, duration: float) -> LeaderElectionRecord:
    now = str(dt.datetime.now())
    return LeaderElectionRecord(identity, str(int(duration)), now, now)


def metered_controller(
    cluster: KubeCluster,
    url: str,
    namespace: str,
    workdir: Path,
    *,
    retry_period: float = CONTROLLER_RETRY,
    extra_args: Sequence[str] = (),
) -> ControllerProcess:
    """The controller of the benchmarks: one per cluster and namespace, ``/metrics`` served."""
    return ControllerProcess(
        admin_site(cluster, namespace),
        url,
        workdir,
        tag=f"-{namespace}",
        retry_period=retry_period,
        metrics=True,
        extra_args=extra_args,
    )


ChildT = TypeVar("ChildT", bound=ManagedProcess)
FoundT = TypeVar("FoundT")


def wait_for_found(find: Callable[[], FoundT | None], timeout: float, what: str) -> FoundT:
    """:func:`~mclease_core.testing.wait_until` a ``find`` that answers ``None`` until what it
    looks for exists (polled every 20 ms: the moments it finds are measured)."""
    found = wait_until(find, timeout=timeout, interval=0.02, message=what)
    if found is None:  # wait_until returns only a true value
        raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
    return found


@contextlib.contextmanager
def running(child: ChildT) -> Iterator[ChildT]:
    try:
        yield child
    finally:
        child.terminate()


# ----- the bed --------------------------------------------------------------------------------


class ElectionBed(Closing):
    """Clusters with the CRD, the global store, and the work folder of one benchmark run.

    Use as a context manager: entering starts the clusters and the stores' servers; on exit every
    controller and candidate a benchmark started (those of :attr:`ManagedProcess.started`), then
    the servers and the clusters are stopped.
    """

    def __init__(
        self, workdir: Path, cluster_names: Sequence[str], *, stores: Sequence[str]
    ) -> None:
        self.workdir = workdir
        self.cluster_names = list(cluster_names)
        self.stores = set(stores)
        self.clusters: dict[str, KubeCluster] = {}
        self.servers: dict[str, ServerProcess] = {}
        """The server of each store kind that has one (redis, etcd, gcs)."""
        self.pids: list[int] = []
        """Every process the bed started (the benchmarks' children are in
        :attr:`ManagedProcess.started`)."""
        self._stack = contextlib.ExitStack()

    @property
    def east(self) -> KubeCluster:
        return self.clusters["east"]

    def _on_enter(self) -> None:
        self.clusters = start_clusters(self.cluster_names, self.workdir / "kube")
        for cluster in self.clusters.values():
            self._stack.callback(cluster.stop)
            self.pids += cluster.pids
        for cluster in self.clusters.values():
            apply_manifest(cluster, crd_manifest())
            wait_crd_established(cluster, CRD_NAME)
        starters: dict[str, Callable[[], AbstractContextManager[ServerProcess]]] = {
            "redis": redis_server,
            "etcd": etcd_server,
            "gcs": fake_gcs_server,
        }
        for kind, start in starters.items():
            if kind in self.stores:
                server = self.servers[kind] = self._stack.enter_context(start())
                if server.pid is not None:
                    self.pids.append(server.pid)

    def close(self) -> None:
        for process in ManagedProcess.started:
            if isinstance(process, ControllerProcess | CandidateProcess):
                process.terminate()
        self._stack.close()

    def url(self, store: str, tag: str) -> str:
        """A fresh global store of kind ``store`` (sqlite, redis, etcd, gcs) named by ``tag``."""
        if store == "sqlite":
            return f"sqlite:///{self.workdir / f'global-{tag}.db'}"
        server = self.servers.get(store)
        if server is None:
            raise ValueError(f"no {store!r} store in this run")
        if store == "redis":
            return f"redis://{server.address}/0?prefix=bench-{tag}&timeout=1"
        if store == "etcd":
            return f"etcd://{server.address}/bench-{tag}?timeout=1"
        return (
            f"gs://{FAKE_GCS_BUCKET}/bench-{tag}?endpoint=http://{server.address}"
            "&anonymous=true&timeout=2&deadline=4"
        )

    def leftovers(self) -> list[str]:
        """Processes this run started that are still alive (by pid, never by name)."""
        found = []
        for pid in [*self.pids, *(process.pid for process in ManagedProcess.started)]:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                continue
            if state != "Z":
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                found.append(f"{pid} {cmdline.decode(errors='replace')[:80]}")
        return found


def commit() -> str:
    """The checkout's commit, and whether the work tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' (work tree has uncommitted changes)' if dirty else ''}"
