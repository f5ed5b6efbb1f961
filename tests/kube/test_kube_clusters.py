"""The two-cluster fixture: east and west share nothing but the machine."""

from __future__ import annotations

import base64

import pytest
import yaml
from kubernetes import client as k8s

from mclease_dev.kube import KubeCluster, apply_manifest, wait_crd_established
from mclease_dev.leases import CRD_FILE, CRD_NAME, Leases, lease_body

pytestmark = pytest.mark.kube


def test_east_and_west_are_separate_control_planes(kube_clusters: dict[str, KubeCluster]) -> None:
    east, west = kube_clusters["east"], kube_clusters["west"]
    assert east.running
    assert west.running
    assert east.readyz()
    assert west.readyz()
    assert len({east.port, west.port, east.etcd_port, west.etcd_port}) == 4
    assert east.ca_file.read_bytes() != west.ca_file.read_bytes()
    assert east.kubeconfig != west.kubeconfig


def test_objects_in_one_cluster_are_not_in_the_other(kube_clusters: dict[str, KubeCluster]) -> None:
    east, west = kube_clusters["east"], kube_clusters["west"]
    apply_manifest(east, CRD_FILE.read_text())
    wait_crd_established(east, CRD_NAME)
    east.ensure_namespace("app")
    Leases(east.api_client(), "app").create(lease_body("only-east"))

    namespaces = k8s.CoreV1Api(west.api_client()).list_namespace().items
    west_ns = {n.metadata.name for n in namespaces if n.metadata}
    assert "app" not in west_ns
    west_crds = k8s.ApiextensionsV1Api(west.api_client()).list_custom_resource_definition()
    assert CRD_NAME not in {c.metadata.name for c in west_crds.items if c.metadata}


def test_credentials_of_one_cluster_do_not_work_on_the_other(
    kube_clusters: dict[str, KubeCluster],
) -> None:
    east, west = kube_clusters["east"], kube_clusters["west"]
    west.kubeconfig_for_service_account("default", "probe")  # the same account exists in west
    config = yaml.safe_load(east.kubeconfig_for_service_account("default", "probe").read_text())
    (entry,) = config["clusters"]
    entry["cluster"]["server"] = west.url
    stray = west.workdir / "east-token-at-west.kubeconfig"

    stray.write_text(yaml.safe_dump(config))
    result = west.kubectl("get", "namespaces", kubeconfig=stray, check=False)
    assert result.returncode != 0
    assert "certificate signed by unknown authority" in result.stderr, "separate CAs"

    entry["cluster"]["certificate-authority-data"] = base64.b64encode(
        west.ca_file.read_bytes()
    ).decode()
    stray.write_text(yaml.safe_dump(config))
    result = west.kubectl("get", "namespaces", kubeconfig=stray, check=False)
    assert result.returncode != 0
    # 401: west does not trust east's service-account signing key.
    assert "You must be logged in to the server" in result.stderr, "separate signing keys"
