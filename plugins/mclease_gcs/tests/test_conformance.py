"""The shared storage conformance suite against fake-gcs-server."""

from __future__ import annotations

import pytest

from mclease_core import Storage
from mclease_core.conformance import StorageConformance, StorageHarness
from mclease_core.testing import ServerProcess, free_port
from mclease_dev.servers import FAKE_GCS_BUCKET
from mclease_gcs import GCSStorage

BUCKET = FAKE_GCS_BUCKET


def gcs_url(address: str, path: str, options: str = "timeout=5&deadline=10") -> str:
    return f"gs://{BUCKET}/{path}?endpoint=http://{address}&anonymous=true&{options}"


class GCSHarness(StorageHarness):
    unavailable_within = 5.0

    def __init__(self, server: ServerProcess):
        self.server = server

    def url(self, namespace: str) -> str:
        return gcs_url(self.server.address, f"conformance/{namespace}")

    def open(self, namespace: str) -> Storage:
        return GCSStorage.from_url(self.url(namespace))

    def open_unreachable(self) -> Storage:
        return GCSStorage.from_url(gcs_url(f"127.0.0.1:{free_port()}", "x", "timeout=1&deadline=2"))

    def corrupt(self, namespace: str, key: str) -> None:
        with GCSStorage.from_url(self.url(namespace)) as store:
            store.put_raw(key, b"{not json")


class TestGCSBackend(StorageConformance):
    @pytest.fixture
    def storage_harness(self, gcs_server: ServerProcess) -> StorageHarness:
        return GCSHarness(gcs_server)
