"""Fixtures: a real ``etcd`` on 127.0.0.1 and free ports, stopped after the session.

The binary comes from Debian's ``etcd-server`` package (``hack/test-servers.sh`` installs it);
without it the tests fail, they do not skip. ``start_etcd`` starts more servers (one per test
that stops its server, one with TLS and authentication).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from mclease_core.testing import ServerProcess
from mclease_dev.servers import etcd_server, started_or_fail


@pytest.fixture(scope="session")
def start_etcd() -> Callable[..., AbstractContextManager[ServerProcess]]:
    """Start another etcd (``with start_etcd("--auth-token-ttl", "1") as server:``)."""
    return started_or_fail(etcd_server)


@pytest.fixture(scope="session", name="etcd_server")
def shared_etcd_server(
    start_etcd: Callable[..., AbstractContextManager[ServerProcess]],
) -> Iterator[ServerProcess]:
    """One etcd shared by the tests that do not stop it."""
    with start_etcd() as server:
        yield server
