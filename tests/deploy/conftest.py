"""Fixtures of the deployment-as-shipped tests (see shipped.py for what "as shipped" means).

Session scope: the release (the Dockerfile's wheel build and install into a fresh venv, about a
minute with a warm pip cache). Module scope: two test-bed clusters whose API servers keep an audit
log (which requests each identity sent), and one password-protected redis-server as the shared
store. Missing binaries fail the tests with how to install them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mclease_core.testing import ServerProcess, server_or_fail
from mclease_dev.canaries import CANARY_PASSWORDS
from mclease_dev.kube import KubeAssets, KubeCluster, running_clusters
from mclease_dev.servers import redis_server
from tests.deploy import shipped

STORE_PASSWORD = CANARY_PASSWORDS[0]
"""The shared Redis's password: it reaches the controllers only through the Secret."""


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> shipped.Release:
    return shipped.install_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def audited_clusters(
    kube_assets: KubeAssets, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, KubeCluster]]:
    root = tmp_path_factory.mktemp("clusters")
    with running_clusters(["east", "west"], root, kube_assets, audit=True) as clusters:
        yield clusters


@pytest.fixture(scope="module")
def protected_redis() -> Iterator[ServerProcess]:
    with server_or_fail(redis_server("--requirepass", STORE_PASSWORD)) as server:
        yield server


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
