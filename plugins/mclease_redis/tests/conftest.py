"""Fixtures: a real ``redis-server`` on 127.0.0.1 and a free port, stopped after the session.

The binary comes from Debian's ``redis-server`` package (``hack/test-servers.sh`` installs it);
without it the tests fail, they do not skip.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

from mclease_core.testing import (
    MissingServerBinaryError,
    ServerProcess,
    find_server_binary,
    free_port,
)

StartRedis = Callable[..., AbstractContextManager[ServerProcess]]


def _binary() -> str:
    try:
        return find_server_binary(
            "redis-server", hint="run hack/test-servers.sh (apt-get install redis-server)"
        )
    except MissingServerBinaryError as exc:
        pytest.fail(str(exc), pytrace=False)


@contextmanager
def _start_redis(*extra: str) -> Iterator[ServerProcess]:
    binary = _binary()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mclease-redis-") as data:
        command = [
            binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", data,
            "--save", "", "--appendonly", "no", "--daemonize", "no", *extra,
        ]
        with ServerProcess(command, port=port, name="redis-server") as server:
            yield server


@pytest.fixture(scope="session")
def start_redis() -> StartRedis:
    """Start another redis-server (``with start_redis("--requirepass", "pw") as server:``)."""
    return _start_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[ServerProcess]:
    """One redis-server shared by the tests that do not stop it."""
    with _start_redis() as server:
        yield server
