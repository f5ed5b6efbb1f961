"""Fixtures: a real ``etcd`` on 127.0.0.1 and free ports, stopped after the session.

The binary comes from Debian's ``etcd-server`` package (``hack/test-servers.sh`` installs it);
without it the tests fail, they do not skip. ``start_etcd`` starts more servers (one per test
that stops its server, one with TLS and authentication).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

from mclease_core import LeaseNotFoundError, StorageError
from mclease_core.testing import (
    MissingServerBinaryError,
    ServerProcess,
    find_server_binary,
    free_port,
)
from mclease_etcd import EtcdStorage

StartEtcd = Callable[..., AbstractContextManager[ServerProcess]]


def _binary() -> str:
    try:
        return find_server_binary(
            "etcd", hint="run hack/test-servers.sh (apt-get install etcd-server)"
        )
    except MissingServerBinaryError as exc:
        pytest.fail(str(exc), pytrace=False)


def _serves(url: str) -> bool:
    try:
        with EtcdStorage.from_url(url) as store:
            store.read("readiness-probe")
    except LeaseNotFoundError:
        return True
    except StorageError:
        return False
    return True


@contextmanager
def _start_etcd(
    *extra: str, scheme: str = "http", probe_url: Callable[[int], str] | None = None
) -> Iterator[ServerProcess]:
    binary = _binary()
    port, peer = free_port(), free_port()
    url = probe_url(port) if probe_url else f"etcd://127.0.0.1:{port}/probe?timeout=1"

    def ready() -> bool:
        return _serves(url)

    with tempfile.TemporaryDirectory(prefix="mclease-etcd-") as data:
        command = [
            binary, "--name", "test", "--data-dir", data,
            "--listen-client-urls", f"{scheme}://127.0.0.1:{port}",
            "--advertise-client-urls", f"{scheme}://127.0.0.1:{port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"test=http://127.0.0.1:{peer}",
            "--logger", "zap", "--log-level", "error", *extra,
        ]
        with ServerProcess(command, port=port, name="etcd", ready=ready) as server:
            yield server


@pytest.fixture(scope="session")
def start_etcd() -> StartEtcd:
    """Start another etcd (``with start_etcd("--auth-token-ttl", "1") as server:``)."""
    return _start_etcd


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[ServerProcess]:
    """One etcd shared by the tests that do not stop it."""
    with _start_etcd() as server:
        yield server
