"""Fixtures for tests against real kube-apiservers; the machinery is in testbed.py.

Session-scoped control planes are started once and shared: ``kube_cluster`` (one cluster) and
``kube_clusters`` (two, "east" and "west", sharing nothing but the machine). Tests that change
objects use the function-scoped ``namespace`` so they do not see each other's objects.
Missing binaries make these fixtures FAIL (not skip) and say how to build them.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from mcl_objects import CRD_FILE, CRD_NAME
from testbed import (
    AssetsMissingError,
    KubeAssets,
    KubeCluster,
    apply_manifest,
    find_assets,
    start_cluster,
    start_clusters,
    wait_crd_established,
)


@pytest.fixture(scope="session")
def kube_assets() -> KubeAssets:
    """The kube-apiserver / etcd / kubectl binaries; fails the test when they are missing."""
    try:
        return find_assets()
    except AssetsMissingError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def kube_cluster(
    kube_assets: KubeAssets, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeCluster]:
    """One running cluster: ``.kubeconfig`` (admin) and ``.api_client()``."""
    cluster = start_cluster("solo", tmp_path_factory.mktemp("kube-solo"), kube_assets)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kube_clusters(
    kube_assets: KubeAssets, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, KubeCluster]]:
    """Two independent clusters, ``{"east": ..., "west": ...}``."""
    clusters = start_clusters(["east", "west"], tmp_path_factory.mktemp("kube-pair"), kube_assets)
    try:
        yield clusters
    finally:
        for cluster in clusters.values():
            cluster.stop()


@pytest.fixture(scope="session")
def mcl_cluster(kube_cluster: KubeCluster) -> KubeCluster:
    """``kube_cluster`` with the MultiClusterLease CRD installed and Established."""
    apply_manifest(kube_cluster, CRD_FILE.read_text())
    wait_crd_established(kube_cluster, CRD_NAME)
    return kube_cluster


@pytest.fixture
def namespace(kube_cluster: KubeCluster) -> str:
    """A fresh namespace in ``kube_cluster`` (left behind: the cluster is thrown away)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube_cluster.ensure_namespace(name)
    return name
