"""metadata.generation, which the signal-then-poll protocol rests on (design brief section 2).

A candidate waits for ``status.observedGeneration >=`` the generation its own write produced,
so spec writes must bump the generation and status writes must not.
"""

from __future__ import annotations

import pytest

from mclease_dev.kube import KubeCluster
from mclease_dev.leases import Leases, lease_body, micro_time

pytestmark = pytest.mark.kube


def test_generation_grows_on_spec_changes_only(mcl_cluster: KubeCluster, namespace: str) -> None:
    leases = Leases(mcl_cluster.api_client(), namespace)

    def generation() -> int:
        return int(leases.get("gen")["metadata"]["generation"])

    assert leases.create(lease_body("gen"))["metadata"]["generation"] == 1
    leases.patch("gen", {"spec": {"renewTime": micro_time(), "holderIdentity": "pod-b"}})
    assert generation() == 2
    leases.patch("gen", {"spec": {"retryPeriodSeconds": 3}})
    assert generation() == 3

    status = leases.patch_status("gen", {"observedGeneration": 3, "globalHolderIdentity": "pod-b"})
    assert status["metadata"]["generation"] == 3
    leases.patch_status("gen", {"fencingToken": 9})
    assert generation() == 3

    leases.patch("gen", {"metadata": {"labels": {"team": "a"}}})
    assert generation() == 3, "metadata-only changes must not look like a new signal"

    body = leases.get("gen")
    body["spec"]["holderIdentity"] = "pod-c"
    body["status"] = {"globalHolderIdentity": "sneaky"}
    replaced = leases.replace(body)
    assert replaced["metadata"]["generation"] == 4
    assert replaced["status"]["globalHolderIdentity"] == "pod-b", "status ignored on main resource"


def test_unchanged_spec_write_keeps_generation(mcl_cluster: KubeCluster, namespace: str) -> None:
    leases = Leases(mcl_cluster.api_client(), namespace)
    body = leases.create(lease_body("same"))
    leases.patch("same", {"spec": dict(body["spec"])})
    assert leases.get("same")["metadata"]["generation"] == 1
