"""The controller's watch against a real API server behind a proxy that can go silent.

Issue 8 item 11: a watch whose connection was dropped without a FIN or RST (a NAT or load
balancer forgetting it) blinded the controller forever while ``/healthz`` said ok.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from netproxy import TcpProxy

from mclease_core.backends import MemoryStorage
from mclease_core.controller import Controller, ControllerConfig
from mclease_core.controller._manager import watch_grace
from mclease_core.kube import GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.kube, pytest.mark.slow]

WATCH_TIMEOUT = 2.0


def wait_until(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not {what} within {timeout:g}s")
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def proxied(mcl_cluster: Any, namespace: str) -> Iterator[tuple[Controller, TcpProxy]]:
    host, port = mcl_cluster.url.removeprefix("https://").rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        configuration = copy.deepcopy(mcl_cluster.api_client().configuration)
        configuration.host = f"https://127.0.0.1:{proxy.port}"
        config = ControllerConfig(
            cluster="east",
            namespaces=[namespace],
            retry_period=0.5,
            metrics_address=None,
            health_address=None,
            watch_timeout=WATCH_TIMEOUT,
        )
        controller = Controller(
            k8s.ApiClient(configuration), MemoryStorage(uuid.uuid4().hex), config
        )
        thread = threading.Thread(target=controller.run, daemon=True)
        thread.start()
        try:
            wait_until(controller.ready, 20, "ready")
            yield controller, proxy
        finally:
            proxy.mode = "pass"
            controller.stop()
            thread.join(10)


def test_a_silently_dropped_watch_fails_health_and_is_re_established(
    mcl_cluster: Any, namespace: str, proxied: tuple[Controller, TcpProxy]
) -> None:
    controller, proxy = proxied
    assert controller.healthy()
    proxy.mode = "blackhole"
    limit = WATCH_TIMEOUT + watch_grace(WATCH_TIMEOUT)
    took = wait_until(lambda: not controller.healthy(), limit + 3, "unhealthy")
    assert took <= limit + 1.0
    proxy.mode = "pass"
    wait_until(controller.healthy, 30, "healthy again")
    api = k8s.CustomObjectsApi(mcl_cluster.api_client())
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MultiClusterLease",
        "metadata": {"name": "after", "namespace": namespace},
        "spec": {
            "holderIdentity": "pod-a",
            "leaseDurationSeconds": 6,
            "renewDeadlineSeconds": 2,
            "retryPeriodSeconds": 1,
        },
    }
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    def confirmed() -> bool:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "after")
        return bool((obj.get("status") or {}).get("globalHolderIdentity") == "pod-a")

    wait_until(confirmed, 10, "the create after the outage confirmed through the new watch")


def test_two_namespaces_are_both_watched(mcl_cluster: Any) -> None:
    """--namespace a --namespace b watched only a: the first watch never returned."""
    names = [f"t-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        mcl_cluster.ensure_namespace(name)
    config = ControllerConfig(
        cluster="east",
        namespaces=names,
        retry_period=0.5,
        metrics_address=None,
        health_address=None,
        watch_timeout=WATCH_TIMEOUT,
    )
    controller = Controller(mcl_cluster.api_client(), MemoryStorage(uuid.uuid4().hex), config)
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    api = k8s.CustomObjectsApi(mcl_cluster.api_client())
    try:
        wait_until(controller.ready, 20, "ready")
        for name in names:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "MultiClusterLease",
                "metadata": {"name": "job", "namespace": name},
                "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 6,
                         "renewDeadlineSeconds": 2, "retryPeriodSeconds": 1},
            }  # fmt: skip
            api.create_namespaced_custom_object(GROUP, VERSION, name, PLURAL, body)
        for name in names:

            def confirmed(name: str = name) -> bool:
                obj = api.get_namespaced_custom_object(GROUP, VERSION, name, PLURAL, "job")
                return bool((obj.get("status") or {}).get("globalHolderIdentity") == "pod-a")

            wait_until(confirmed, 10, f"the lease in {name} confirmed")
    finally:
        controller.stop()
        thread.join(10)
