"""Fixtures: a real ``fake-gcs-server`` (memory backend) on 127.0.0.1 and a free port.

The binary is ``$MCLEASE_FAKE_GCS_SERVER``, or the one ``hack/fake-gcs-server.sh`` builds from the
Go module proxy into the repository's cache, or ``fake-gcs-server`` on ``PATH``. Without it the
tests fail (``hack/test-servers.sh`` builds it), they do not skip.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from mclease_core.testing import ServerProcess
from mclease_dev.servers import fake_gcs_server, fake_gcs_server_binary, found_or_fail


@pytest.fixture(scope="session")
def fake_gcs_binary() -> str:
    return found_or_fail(fake_gcs_server_binary)


@pytest.fixture(scope="session")
def fake_gcs_version(fake_gcs_binary: str) -> str | None:
    """The release the binary was built from, when its cache folder names it."""
    match = re.search(r"fake-gcs-server-(\d+\.\d+\.\d+)", fake_gcs_binary)
    return match.group(1) if match else None


@pytest.fixture(scope="session")
def raw_client() -> Callable[[ServerProcess], Any]:
    """A plain google-cloud-storage client of a fake-gcs-server, to look behind the backend."""

    def client(server: ServerProcess) -> Any:
        return storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": f"http://{server.address}"},
        )

    return client


@pytest.fixture(scope="session")
def start_gcs(fake_gcs_binary: str) -> Callable[[], AbstractContextManager[ServerProcess]]:
    """Start another fake-gcs-server with the test bucket (``with start_gcs() as server:``)."""
    return functools.partial(fake_gcs_server, fake_gcs_binary)


@pytest.fixture(scope="session")
def gcs_server(
    start_gcs: Callable[[], AbstractContextManager[ServerProcess]],
) -> Iterator[ServerProcess]:
    """One fake-gcs-server shared by the tests that do not stop it."""
    with start_gcs() as server:
        yield server
