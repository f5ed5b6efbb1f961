"""Fixtures: a real server of the store on 127.0.0.1 and a free port, stopped after the session.

Without the server binary the tests fail (naming how to install it); they never skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mclease_core.testing import (
    MissingServerBinaryError,
    ServerProcess,
    find_server_binary,
    free_port,
)


@pytest.fixture(scope="session")
def example_server() -> Iterator[ServerProcess]:
    try:
        binary = find_server_binary("example-server", hint="TODO: how to install it")
    except MissingServerBinaryError as exc:
        pytest.fail(str(exc), pytrace=False)
    port = free_port()
    command = [binary, "--listen", f"127.0.0.1:{port}"]  # TODO: loopback only, no persistence
    with ServerProcess(command, port=port, name="example-server") as server:
        yield server
