"""The shared storage conformance suite, fault tests included, against fake-gcs-server."""

from __future__ import annotations

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from mclease_core.conformance import ServerHarness, StorageConformance, StorageHarness
from mclease_core.testing import ServerProcess
from mclease_dev.servers import FAKE_GCS_BUCKET
from mclease_gcs import GCSStorage


class GCSHarness(ServerHarness):
    url_template = (
        f"gs://{FAKE_GCS_BUCKET}/conformance/{{namespace}}?endpoint=http://{{address}}"
        "&anonymous=true&timeout={timeout}&deadline={deadline}"
    )

    def url_at(self, namespace: str, address: str, timeout: float) -> str:
        return self.url_template.format(
            address=address, namespace=namespace, timeout=timeout, deadline=2 * timeout
        )

    def is_write_request(self, chunk: bytes) -> bool:
        return not chunk.startswith((b"GET ", b"HEAD "))

    def corrupt(self, namespace: str, key: str) -> None:
        name = GCSStorage.from_url(self.url(namespace)).object_name(key)
        client = storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": f"http://{self.process.address}"},
        )
        try:  # google-cloud-storage < 2.18 has no context manager on Client
            client.bucket(FAKE_GCS_BUCKET).blob(name).upload_from_string(b"{not json")
        finally:
            client.close()


class TestGCSBackend(StorageConformance):
    @pytest.fixture
    def storage_harness(self, gcs_server: ServerProcess) -> StorageHarness:
        return GCSHarness(gcs_server)
