"""The controller's watch against a real API server behind a proxy that can go silent.

Issue 8 item 11: a watch whose connection was dropped without a FIN or RST (a NAT or load
balancer forgetting it) blinded the controller forever while ``/healthz`` said ok.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from kubernetes import client as k8s

from mclease_core.controller import Controller
from mclease_core.controller._manager import watch_grace
from mclease_core.kube import GROUP, PLURAL, VERSION
from mclease_dev.netproxy import TcpProxy

pytestmark = [pytest.mark.kube, pytest.mark.slow]

# What the ``controller_running`` fixture (tests/kube/conftest.py) gives.
RunningController = Callable[..., AbstractContextManager[Controller]]

WATCH_TIMEOUT = 2.0


def wait_until(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not {what} within {timeout:g}s")
        time.sleep(0.05)
    return time.monotonic() - started


def create_lease(api: k8s.CustomObjectsApi, namespace: str, name: str) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MultiClusterLease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "holderIdentity": "pod-a",
            "leaseDurationSeconds": 6,
            "renewDeadlineSeconds": 2,
            "retryPeriodSeconds": 1,
        },
    }
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def confirmed_for_pod_a(api: k8s.CustomObjectsApi, namespace: str, name: str) -> bool:
    obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return bool((obj.get("status") or {}).get("globalHolderIdentity") == "pod-a")


@pytest.fixture
def proxied(
    mcl_cluster: Any, namespace: str, controller_running: RunningController
) -> Iterator[tuple[Controller, TcpProxy]]:
    host, port = mcl_cluster.url.removeprefix("https://").rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        configuration = copy.deepcopy(mcl_cluster.api_client().configuration)
        configuration.host = f"https://127.0.0.1:{proxy.port}"
        with controller_running(
            k8s.ApiClient(configuration), [namespace], watch_timeout=WATCH_TIMEOUT
        ) as controller:
            try:
                wait_until(controller.ready, 20, "ready")
                yield controller, proxy
            finally:
                proxy.mode = "pass"


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
    create_lease(api, namespace, "after")
    wait_until(
        lambda: confirmed_for_pod_a(api, namespace, "after"),
        10,
        "the create after the outage confirmed through the new watch",
    )


def test_two_namespaces_are_both_watched(
    mcl_cluster: Any, controller_running: RunningController
) -> None:
    """--namespace a --namespace b watched only a: the first watch never returned."""
    names = [f"t-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        mcl_cluster.ensure_namespace(name)
    api = k8s.CustomObjectsApi(mcl_cluster.api_client())
    with controller_running(
        mcl_cluster.api_client(), names, watch_timeout=WATCH_TIMEOUT
    ) as controller:
        wait_until(controller.ready, 20, "ready")
        for name in names:
            create_lease(api, name, "job")
        for name in names:
            wait_until(
                lambda name=name: confirmed_for_pod_a(api, name, "job"),
                10,
                f"the lease in {name} confirmed",
            )
