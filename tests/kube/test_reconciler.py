"""The reconciler against a real API server, one reconcile at a time, with a fake clock.

The global store is the in-memory reference (wrapped to inject outages), so every step is
deterministic; tests/e2e runs the same code as a process against real stores.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client as k8s

from mclease_core import FakeClock
from mclease_core.backends import MemoryStorage
from mclease_core.controller import Action, Reconciler
from mclease_core.kube import FINALIZER, GROUP, PLURAL, VERSION
from tests.support import FaultyStorage

pytestmark = pytest.mark.kube

D = 6


class Harness:
    def __init__(self, cluster: Any, namespace: str):
        self.api = k8s.CustomObjectsApi(cluster.api_client())
        self.namespace = namespace
        self.clock = FakeClock()
        self.store = FaultyStorage(MemoryStorage("reconciler-" + uuid.uuid4().hex[:8]), self.clock)
        self.reconciler = Reconciler(
            self.api, self.store, cluster="east", retry_period=1.0, clock=self.clock
        )
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "MultiClusterLease",
            "metadata": {"name": "job", "namespace": namespace},
            "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": D},
        }
        self.api.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body, _request_timeout=30
        )

    def object(self) -> dict[str, Any]:
        return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, "job")

    def signal(self, identity: str = "pod-a") -> None:
        obj = self.object()
        obj["spec"]["holderIdentity"] = identity
        obj["spec"]["renewTime"] = f"2026-11-26T12:00:{self.clock.monotonic() % 60:09.6f}Z"
        self.api.replace_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, "job", obj
        )

    def reconcile(self) -> Action | None:
        result = self.reconciler.reconcile(self.namespace, "job")
        return result.plan.action if result.plan else None

    def status(self) -> dict[str, Any]:
        return self.object().get("status", {})

    def condition(self, kind: str) -> dict[str, Any]:
        return next(c for c in self.status()["conditions"] if c["type"] == kind)


@pytest.fixture
def harness(mcl_cluster: Any, namespace: str) -> Harness:
    return Harness(mcl_cluster, namespace)


def test_first_sight_is_observed_and_a_change_is_confirmed(harness: Harness) -> None:
    assert harness.reconcile() is Action.OBSERVE
    status = harness.status()
    assert status["observedGeneration"] == 1
    assert status["globalHolderIdentity"] == ""
    assert FINALIZER in harness.object()["metadata"]["finalizers"]
    harness.signal()
    assert harness.reconcile() is Action.CONTEND
    status = harness.status()
    assert status["observedGeneration"] == 2
    assert status["globalHolderIdentity"] == "pod-a"
    assert status["globalHolderCluster"] == "east"
    assert status["fencingToken"] >= 1
    assert harness.condition("LockAcquiredInBackend")["status"] == "True"


def test_a_renewal_per_signal_is_one_conditional_write(harness: Harness) -> None:
    harness.reconcile()
    harness.signal()
    harness.reconcile()
    elector_counts = harness.reconciler._leases[f"{harness.namespace}/job"].elector.storage.counts()  # type: ignore[union-attr]
    for _ in range(5):
        harness.clock.advance(1.0)
        harness.signal()
        assert harness.reconcile() is Action.CONTEND
    after = harness.reconciler._leases[f"{harness.namespace}/job"].elector.storage.counts()  # type: ignore[union-attr]
    assert after["update"] - elector_counts["update"] == 5
    assert after["read"] == elector_counts["read"]


def test_a_store_outage_sets_the_condition_and_confirms_nobody(harness: Harness) -> None:
    harness.reconcile()
    harness.store.down = True
    harness.signal()
    assert harness.reconcile() is Action.CONTEND
    healthy = harness.condition("BackendHealthy")
    assert healthy["status"] == "False"
    assert "down" in healthy["message"]
    assert harness.status()["globalHolderIdentity"] != "pod-a"
    harness.store.down = False
    harness.signal()
    harness.reconcile()
    assert harness.status()["globalHolderIdentity"] == "pod-a"
    assert harness.condition("BackendHealthy")["status"] == "True"


def test_a_corrupt_global_record_sets_the_condition_and_does_not_crash(harness: Harness) -> None:
    harness.store.inner.put_raw(f"{harness.namespace}/job", b"{garbage")  # type: ignore[attr-defined]
    harness.signal()
    harness.reconcile()
    harness.signal()
    harness.reconcile()
    healthy = harness.condition("BackendHealthy")
    assert healthy["status"] == "False"
    assert "corrupt" in healthy["message"]
    assert harness.status()["globalHolderIdentity"] != "pod-a"


def test_an_empty_holder_releases_the_global_lease_at_once(harness: Harness) -> None:
    harness.reconcile()
    harness.signal()
    harness.reconcile()
    harness.signal("")
    assert harness.reconcile() is Action.RELEASE
    assert harness.store.inner.read(f"{harness.namespace}/job").data.is_released
    assert harness.status()["globalHolderIdentity"] == ""


def test_a_stale_candidate_is_released_a_lease_duration_after_its_last_signal(
    harness: Harness,
) -> None:
    harness.reconcile()
    harness.signal()
    harness.reconcile()
    harness.clock.advance(D - 0.1)
    assert harness.reconcile() is Action.CONTEND
    assert not harness.store.inner.read(f"{harness.namespace}/job").data.is_released
    harness.clock.advance(0.1)
    assert harness.reconcile() is Action.RELEASE
    assert harness.store.inner.read(f"{harness.namespace}/job").data.is_released


def test_deletion_keeps_the_finalizer_until_the_candidate_is_stale(harness: Harness) -> None:
    harness.reconcile()
    harness.signal()
    harness.reconcile()
    harness.api.delete_namespaced_custom_object(GROUP, VERSION, harness.namespace, PLURAL, "job")
    assert harness.reconcile() is Action.WAIT_TO_RELEASE
    assert FINALIZER in harness.object()["metadata"]["finalizers"]
    harness.clock.advance(D)
    assert harness.reconcile() is Action.RELEASE
    assert harness.store.inner.read(f"{harness.namespace}/job").data.is_released
    with pytest.raises(k8s.ApiException) as info:
        harness.object()
    assert info.value.status == 404


def test_the_metrics_count_one_store_write_per_renewal(harness: Harness) -> None:
    registry = harness.reconciler.metrics.registry

    def operations(kind: str) -> float:
        value = registry.get_sample_value(
            "mclease_storage_operation_seconds_count", {"operation": kind}
        )
        return value or 0.0

    harness.reconcile()
    harness.signal()
    harness.reconcile()
    before = {kind: operations(kind) for kind in ("read", "update", "create")}
    for _ in range(4):
        harness.clock.advance(1.0)
        harness.signal()
        harness.reconcile()
    assert operations("update") - before["update"] == 4
    assert operations("read") == before["read"]
    assert operations("create") == before["create"]
    assert (
        registry.get_sample_value(
            "mclease_lease_leader_here", {"namespace": harness.namespace, "name": "job"}
        )
        == 1
    )


def test_no_renewal_without_a_new_signal(harness: Harness) -> None:
    """One renewal per signal: periodic reconciles of a live candidate write nothing, so a
    candidate whose signals stop is not kept leading past its last signal's lease."""
    harness.reconcile()
    harness.signal()
    harness.reconcile()
    counts = harness.reconciler._leases[f"{harness.namespace}/job"].elector.storage.counts  # type: ignore[union-attr]
    before = counts()
    for _ in range(5):
        harness.clock.advance(1.0)  # past the controller's own term (0.75 D) without a signal
        assert harness.reconcile() is Action.CONTEND
    after = counts()
    assert after["update"] == before["update"]
    assert after["create"] == before["create"]
