"""Fixtures of the end-to-end tests: two real clusters, a global store, a fresh test bed per test.

Session scope: two control planes of the test bed ("east" and "west", each its own etcd and
kube-apiserver, about 5 s to start) with the MultiClusterLease CRD and the controller's RBAC from
``config/rbac/``; one ``redis-server``. Function scope: a fresh namespace in both clusters (the
global lease key is ``namespace/name``, so it also isolates the global store), a fresh store
(a new SQLite file, or a new Redis key prefix; a test that asks for ``own_redis`` gets that
server), and a :class:`~mclease_dev.multicluster.ProcessGroup` whose controllers and
candidates are stopped (SIGTERM, then SIGKILL) when the test ends.

Measurements the tests take (takeover times, handoff, confirmation latency) are printed in a
table at the end of the run.

Not for: the product's assertions (the tests) or process plumbing
(:mod:`mclease_dev.multicluster`). Missing binaries (kube-apiserver, etcd, redis-server) FAIL
the tests with how to install them.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mclease_core.testing import ServerProcess, server_or_fail
from mclease_dev import multicluster
from mclease_dev.kube import KubeAssets, KubeCluster, running_clusters
from mclease_dev.servers import redis_server

STORES = ["sqlite", "redis"]
REDIS_TIMEOUT = 1.0
"""Seconds per Redis connect/read/write in the store URL (the plugin's default is 5)."""


@dataclasses.dataclass(frozen=True)
class PreparedCluster:
    cluster: KubeCluster
    controller_kubeconfig: Path


@dataclasses.dataclass(frozen=True)
class Measurement:
    test: str
    what: str
    value: float
    bound: float | None = None


_MEASUREMENTS = pytest.StashKey[list[Measurement]]()


@dataclasses.dataclass
class Bed:
    """One test's view: a site (namespace) per cluster, the store URL, the processes."""

    sites: dict[str, multicluster.Site]
    store_url: str
    store: str
    group: multicluster.ProcessGroup
    workdir: Path
    _record: list[Measurement]
    _test: str

    def controllers(self, *names: str) -> dict[str, multicluster.ControllerProcess]:
        """Start a controller per named cluster (default: all), side by side; wait until ready."""
        chosen = names or tuple(self.sites)
        started = {
            n: self.group.controller(self.sites[n], self.store_url, wait=False) for n in chosen
        }
        for process in started.values():
            process.wait_ready()
        return started

    def candidate(self, cluster: str, identity: str) -> multicluster.CandidateProcess:
        return self.group.candidate(self.sites[cluster], identity)

    def measure(self, what: str, value: float, bound: float | None = None) -> None:
        self._record.append(Measurement(self._test, what, value, bound))


@pytest.fixture(scope="session")
def e2e_clusters(
    kube_assets: KubeAssets, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, PreparedCluster]]:
    root = tmp_path_factory.mktemp("e2e-kube")
    with running_clusters(["east", "west"], root, kube_assets) as clusters:
        yield {
            name: PreparedCluster(cluster, multicluster.prepare_cluster(cluster))
            for name, cluster in clusters.items()
        }


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[ServerProcess]:
    with server_or_fail(redis_server()) as server:
        yield server


def redis_url(server: ServerProcess, prefix: str) -> str:
    return f"redis://{server.address}/0?prefix={prefix}&timeout={REDIS_TIMEOUT:g}"


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    """The global store's kind; tests that take it run once per kind."""
    return str(request.param)


@pytest.fixture
def bed(
    request: pytest.FixtureRequest,
    e2e_clusters: dict[str, PreparedCluster],
    tmp_path: Path,
) -> Iterator[Bed]:
    kind: str = request.getfixturevalue("store") if "store" in request.fixturenames else "sqlite"
    if "own_redis" in request.fixturenames:  # a test that stops and starts its own Redis
        kind = "redis"
        url = redis_url(request.getfixturevalue("own_redis"), "e2e")
    elif kind == "redis":
        url = redis_url(request.getfixturevalue("shared_redis"), f"e2e-{uuid.uuid4().hex[:8]}")
    else:
        url = f"sqlite:///{tmp_path / 'global.db'}"
    namespace = multicluster.new_namespace_name()
    sites = {
        name: multicluster.Site(
            prepared.cluster,
            namespace,
            prepared.controller_kubeconfig,
            multicluster.prepare_namespace(prepared.cluster, namespace),
        )
        for name, prepared in e2e_clusters.items()
    }
    group = multicluster.ProcessGroup(tmp_path)
    record = request.config.stash.setdefault(_MEASUREMENTS, [])
    bed = Bed(sites, url, kind, group, tmp_path, record, request.node.name)
    try:
        yield bed
    finally:
        group.stop_all()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(f"\nstore {url}\n{group.logs()}")
        leftovers = [p for p in group.processes if p.alive()]
        assert not leftovers, f"processes outlived the test: {leftovers}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if call.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    measurements = terminalreporter.config.stash.get(_MEASUREMENTS, [])
    if not measurements:
        return
    terminalreporter.section("mclease e2e measurements (seconds)")
    width = max(len(m.test) for m in measurements)
    for m in measurements:
        bound = f"  (bound {m.bound:.2f})" if m.bound is not None else ""
        terminalreporter.write_line(f"{m.test:<{width}}  {m.what:<44} {m.value:6.2f}{bound}")
