"""``CoordinationLeaseStorage`` (the controller's replica election) passes the conformance suite
against a real API server."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s

from mclease_core import Storage
from mclease_core.conformance import StorageConformance, StorageHarness
from mclease_core.kube import CoordinationLeaseStorage
from mclease_core.kube._lease_storage import object_name

pytestmark = pytest.mark.kube


class LeaseHarness(StorageHarness):
    def __init__(self, cluster: Any):
        self.cluster = cluster

    def open(self, namespace: str) -> Storage:
        self.cluster.ensure_namespace(namespace)
        return CoordinationLeaseStorage(self.cluster.api_client(), namespace)

    def url(self, namespace: str) -> str | None:
        return None  # needs an API client, not a URL

    def open_unreachable(self) -> Storage:
        configuration = k8s.Configuration()
        configuration.host = "https://127.0.0.1:9"
        configuration.retries = 0
        return CoordinationLeaseStorage(k8s.ApiClient(configuration), "default", timeout=1.0)

    def corrupt(self, namespace: str, key: str) -> None:
        body = k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(name=object_name(key)),
            spec=k8s.V1LeaseSpec(holder_identity="someone"),  # no times, no duration
        )
        k8s.CoordinationV1Api(self.cluster.api_client()).create_namespaced_lease(namespace, body)


class TestCoordinationLeaseStorage(StorageConformance):
    @pytest.fixture
    def storage_harness(self, kube_cluster: Any) -> StorageHarness:
        return LeaseHarness(kube_cluster)


def test_a_refused_request_is_a_configuration_error_naming_the_role(
    kube_cluster: Any, namespace: str
) -> None:
    """RBAC that does not cover the Lease is not an outage to retry: the elector stops and the
    controller exits with the fix (the shipped Role once lacked ``patch``, and the Lease once went
    to ``default``, outside the Role's namespace)."""
    from mclease_core import ConfigurationError

    nobody = kube_cluster.kubeconfig_for_service_account(namespace, "no-rbac")
    storage = CoordinationLeaseStorage(kube_cluster.api_client(nobody), namespace)
    with pytest.raises(ConfigurationError) as refused:
        storage.read("mclease-controller-east")
    message = str(refused.value)
    assert "403 Forbidden" in message
    assert 'cannot get resource "leases"' in message
    assert "config/rbac/leader_election_role.yaml" in message
    assert f"namespace {namespace!r}" in message
    assert "\n" not in message
