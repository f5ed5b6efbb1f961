"""The controller on a store with a change feed, against a real API server: a follower lease
costs no store read while another cluster renews, and another cluster's release reaches status at
once, not at the next periodic reconcile (docs/safety.md, rule 16)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from kubernetes import client as k8s

from mclease_core import LeaderElector, LeaseTiming
from mclease_core.backends import MemoryStorage
from mclease_core.controller import Controller
from mclease_core.kube import GROUP, PLURAL, VERSION
from mclease_core.testing import wait_until

pytestmark = [pytest.mark.kube]

RunningController = Callable[..., AbstractContextManager[Controller]]

PERIODIC = 30.0
"""The controller's retry period: no periodic reconcile happens within a test."""


def store_reads(controller: Controller) -> float:
    metric = controller.metrics.registry.get_sample_value(
        "mclease_storage_operation_seconds_count", {"operation": "read"}
    )
    return metric or 0.0


def global_holder(api: k8s.CustomObjectsApi, namespace: str) -> str:
    obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "job")
    return str((obj.get("status") or {}).get("globalHolderIdentity") or "")


def test_a_follower_reads_nothing_while_another_cluster_renews_and_sees_its_release_at_once(
    mcl_cluster: Any, namespace: str, controller_running: RunningController
) -> None:
    name = uuid.uuid4().hex
    west = LeaderElector(
        MemoryStorage(name),
        f"{namespace}/job",
        "pod-w",
        cluster="west",
        timing=LeaseTiming(6, 4, 1),
        release_on_stop=True,
    )
    api = k8s.CustomObjectsApi(mcl_cluster.api_client())
    with controller_running(
        mcl_cluster.api_client(), [namespace], storage=MemoryStorage(name), retry_period=PERIODIC
    ) as controller:
        wait_until(controller.ready, timeout=20, message="the controller to be ready")
        assert controller.changes is not None
        assert controller.changes.connected
        west.start()
        wait_until(west.is_leader, timeout=10, message="west to lead")
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "MultiClusterLease",
            "metadata": {"name": "job", "namespace": namespace},
            "spec": {"holderIdentity": "", "leaseDurationSeconds": 6},  # no local candidate
        }
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        wait_until(
            lambda: global_holder(api, namespace) == "west/pod-w",
            timeout=10,
            message="status to name west's holder",
        )
        reads = store_reads(controller)
        changes = controller.metrics.store_changes._value.get()
        time.sleep(3.5)  # west renews three times
        assert controller.metrics.store_changes._value.get() >= changes + 3
        assert store_reads(controller) == reads, "the follower read the record it was told of"
        west.stop(timeout=5)
        released = time.monotonic()
        wait_until(
            lambda: global_holder(api, namespace) == "",
            timeout=PERIODIC / 2,
            message="status to show the release",
        )
        assert time.monotonic() - released < PERIODIC / 2
