"""Fixtures: a real ``redis-server`` on 127.0.0.1 and a free port, stopped after the session.

The binary comes from Debian's ``redis-server`` package (``hack/test-servers.sh`` installs it);
without it the tests fail, they do not skip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from mclease_core.testing import ServerProcess
from mclease_dev.servers import redis_server, started_or_fail


@pytest.fixture(scope="session")
def start_redis() -> Callable[..., AbstractContextManager[ServerProcess]]:
    """Start another redis-server (``with start_redis("--requirepass", "pw") as server:``)."""
    return started_or_fail(redis_server)


@pytest.fixture(scope="session", name="redis_server")
def shared_redis_server(
    start_redis: Callable[..., AbstractContextManager[ServerProcess]],
) -> Iterator[ServerProcess]:
    """One redis-server shared by the tests that do not stop it."""
    with start_redis() as server:
        yield server
