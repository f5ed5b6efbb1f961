"""``mclease controller`` as processes: replica election, health and metrics endpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from mclease_core.testing import free_port

pytestmark = [pytest.mark.kube, pytest.mark.slow]


class ControllerProcess:
    def __init__(self, cluster: Any, workdir: Path, namespace: str, name: str):
        self.metrics_port, self.health_port = free_port(), free_port()
        self.log = (workdir / f"{name}.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mclease_core._cli",
                "controller",
                "--cluster-name",
                "east",
                "--storage",
                f"sqlite://{workdir / 'global.db'}",
                "--kubeconfig",
                str(cluster.kubeconfig),
                "--namespace",
                namespace,
                "--retry-period",
                "0.5",
                "--metrics-bind-address",
                f"127.0.0.1:{self.metrics_port}",
                "--health-probe-bind-address",
                f"127.0.0.1:{self.health_port}",
                "--leader-elect",
                "--leader-elect-namespace",
                namespace,
                "--leader-elect-lease-duration",
                "3",
                "--leader-elect-renew-deadline",
                "2",
                "--leader-elect-retry-period",
                "0.5",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def get(self, port: int, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def wait_for(condition, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


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
