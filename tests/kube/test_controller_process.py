"""``mclease controller`` as processes: replica election, health and metrics endpoints."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from mclease_core.testing import wait_until
from mclease_dev import multicluster
from mclease_dev.kube import KubeCluster
from mclease_dev.processes import http_get

pytestmark = [pytest.mark.kube, pytest.mark.slow]


class ControllerProcess(multicluster.ControllerProcess):
    """One replica, as the cluster's admin, with replica election and ``/metrics`` served."""

    def __init__(self, cluster: KubeCluster, workdir: Path, namespace: str, name: str):
        site = multicluster.Site(cluster, namespace, cluster.kubeconfig, cluster.kubeconfig)
        election = [
            *("--leader-elect", "--leader-elect-namespace", namespace),
            *("--leader-elect-lease-duration", "3", "--leader-elect-renew-deadline", "2"),
            *("--leader-elect-retry-period", "0.5"),
        ]
        storage = f"sqlite://{workdir / 'global.db'}"
        super().__init__(site, storage, workdir, tag=f"-{name}", metrics=True, extra_args=election)
        self.start()

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self.popen is not None
        return self.popen

    def get(self, port: int | None, path: str) -> tuple[int, str]:
        assert port is not None
        return http_get(port, path)

    def stop(self) -> None:
        self.terminate()


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    return wait_until(condition, timeout=timeout, message=what)


def active_identity(cluster: Any, namespace: str) -> str:
    leases = k8s.CoordinationV1Api(cluster.api_client()).list_namespaced_lease(namespace).items
    held = [
        lease.spec.holder_identity
        for lease in leases
        if lease.metadata.name.startswith("mclease-controller")
    ]
    return held[0] if held else ""


@pytest.fixture
def replicas(mcl_cluster: Any, namespace: str, tmp_path: Path) -> Iterator[list[ControllerProcess]]:
    started = [
        ControllerProcess(mcl_cluster, tmp_path, namespace, f"replica-{i}") for i in range(2)
    ]
    try:
        yield started
    finally:
        for replica in started:
            replica.stop()


def test_one_replica_is_active_and_the_other_takes_over_after_kill_9(
    mcl_cluster: Any, namespace: str, replicas: list[ControllerProcess]
) -> None:
    holder = wait_for(lambda: active_identity(mcl_cluster, namespace), 30, "an active replica")
    active = next(r for r in replicas if holder.endswith(f"_{r.process.pid}"))
    standby = next(r for r in replicas if r is not active)
    for replica in replicas:
        assert wait_for(
            lambda r=replica: r.get(r.health_port, "/healthz")[0] == 200, 10, "/healthz"
        )
        assert wait_for(lambda r=replica: r.get(r.health_port, "/readyz")[0] == 200, 10, "/readyz")
    status, metrics = active.get(active.metrics_port, "/metrics")
    assert status == 200
    assert "controller_runtime_reconcile_time_seconds" in metrics
    os.kill(active.process.pid, signal.SIGKILL)
    new_holder = wait_for(
        lambda: (h := active_identity(mcl_cluster, namespace)) != holder and h, 15, "a takeover"
    )
    assert new_holder.endswith(f"_{standby.process.pid}")


def test_the_health_endpoint_answers_404_for_unknown_paths(
    mcl_cluster: Any, replicas: list[ControllerProcess]
) -> None:
    replica = replicas[0]
    assert wait_for(lambda: replica.get(replica.health_port, "/healthz")[0] == 200, 10, "/healthz")
    assert replica.get(replica.health_port, "/nope")[0] == 404
