"""Fixtures for tests against real kube-apiservers; the machinery is :mod:`mclease_dev.kube`.

Session-scoped control planes are started once and shared: ``kube_cluster`` (one cluster) and
``kube_clusters`` (two, "east" and "west", sharing nothing but the machine). Tests that change
objects use the function-scoped ``namespace`` so they do not see each other's objects.
``controller_running`` runs the real controller in-process (a thread, the in-memory store) for
as long as a ``with`` block lasts, so each test or fixture decides what outlives it.
Missing binaries make these fixtures FAIL (not skip) and say how to build them (``kube_assets``,
in ``tests/conftest.py``).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from mclease_core.backends import MemoryStorage
from mclease_core.controller import Controller, ControllerConfig
from mclease_core.plugin import Storage
from mclease_dev.kube import (
    KubeAssets,
    KubeCluster,
    apply_manifest,
    running_clusters,
    start_cluster,
    wait_crd_established,
)
from mclease_dev.leases import CRD_FILE, CRD_NAME


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
    with running_clusters(
        ["east", "west"], tmp_path_factory.mktemp("kube-pair"), kube_assets
    ) as clusters:
        yield clusters


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


RunningController = Callable[..., contextlib.AbstractContextManager[Controller]]


@pytest.fixture
def controller_running() -> RunningController:
    """``with controller_running(api_client, namespaces, **config) as controller:`` runs a
    controller for "east" (retry period 0.5 s, no metrics or health server, unless ``config``
    says otherwise) on ``storage`` (default: a fresh in-memory store), and stops it
    (``join_timeout``) on leaving."""

    @contextlib.contextmanager
    def run(
        api_client: Any,
        namespaces: Sequence[str],
        *,
        join_timeout: float = 10,
        storage: Storage | None = None,
        **config: Any,
    ) -> Iterator[Controller]:
        settings: dict[str, Any] = {
            "cluster": "east",
            "retry_period": 0.5,
            "metrics_address": None,
            "health_address": None,
            **config,
        }
        controller = Controller(
            api_client,
            storage or MemoryStorage(uuid.uuid4().hex),
            ControllerConfig(namespaces=list(namespaces), **settings),
        )
        thread = threading.Thread(target=controller.run, daemon=True)
        thread.start()
        try:
            yield controller
        finally:
            controller.stop()
            thread.join(join_timeout)

    return run
