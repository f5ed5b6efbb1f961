"""Fixtures: a real ``fake-gcs-server`` (memory backend) on 127.0.0.1 and a free port.

The binary is found, in order, at ``$MCLEASE_FAKE_GCS_SERVER``, in the repository's cache where
``hack/fake-gcs-server.sh`` builds it from the Go module proxy, or on ``PATH``. Without it the tests
fail (``hack/test-servers.sh`` builds it), they do not skip.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from mclease_core.testing import (
    MissingServerBinaryError,
    ServerProcess,
    find_server_binary,
    free_port,
)

BUCKET = "mclease-test"
BUILD_SCRIPT = Path(__file__).resolve().parents[3] / "hack" / "fake-gcs-server.sh"
StartGCS = Callable[[], AbstractContextManager[ServerProcess]]


def _cached_binary() -> list[str]:
    if not BUILD_SCRIPT.is_file():
        return []
    found = subprocess.run(["bash", str(BUILD_SCRIPT), "--path"], capture_output=True, text=True)
    return [found.stdout.strip()] if found.returncode == 0 else []


@pytest.fixture(scope="session")
def fake_gcs_binary() -> str:
    candidates = [os.environ.get("MCLEASE_FAKE_GCS_SERVER", ""), *_cached_binary()]
    try:
        return find_server_binary(
            "fake-gcs-server", candidates=[c for c in candidates if c],
            hint="run hack/test-servers.sh (it builds fake-gcs-server from the Go module proxy), "
            "or set MCLEASE_FAKE_GCS_SERVER",
        )
    except MissingServerBinaryError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def fake_gcs_version(fake_gcs_binary: str) -> str | None:
    """The release the binary was built from, when the cache folder names it."""
    match = re.search(r"fake-gcs-server-(\d+\.\d+\.\d+)", fake_gcs_binary)
    return match.group(1) if match else None


def _raw_client(server: ServerProcess) -> storage.Client:
    return storage.Client(project="test", credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": f"http://{server.address}"})


@pytest.fixture(scope="session")
def raw_client() -> Callable[[ServerProcess], storage.Client]:
    """A plain google-cloud-storage client of a fake-gcs-server, to look behind the backend."""
    return _raw_client


@pytest.fixture(scope="session")
def start_gcs(fake_gcs_binary: str) -> StartGCS:
    """Start another fake-gcs-server with the test bucket (``with start_gcs() as server:``)."""

    @contextmanager
    def start() -> Iterator[ServerProcess]:
        port = free_port()
        command = [
            fake_gcs_binary, "-backend", "memory", "-scheme", "http", "-host", "127.0.0.1",
            "-port", str(port), "-public-host", f"127.0.0.1:{port}",
            "-external-url", f"http://127.0.0.1:{port}", "-log-level", "error",
        ]
        with ServerProcess(command, port=port, name="fake-gcs-server") as server:
            create_bucket(server)
            yield server

    return start


def create_bucket(server: ServerProcess) -> None:
    client = _raw_client(server)
    client.create_bucket(BUCKET)
    client.close()


@pytest.fixture(scope="session")
def gcs_server(start_gcs: StartGCS) -> Iterator[ServerProcess]:
    """One fake-gcs-server shared by the tests that do not stop it."""
    with start_gcs() as server:
        yield server
