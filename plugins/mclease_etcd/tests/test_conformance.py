"""The shared storage conformance suite, fault tests included, against a real etcd."""

from __future__ import annotations

import pyetcd  # type: ignore[import-untyped]
import pytest

from mclease_core.conformance import ServerHarness, StorageConformance, StorageHarness
from mclease_core.testing import ServerProcess
from mclease_etcd import EtcdStorage


class EtcdHarness(ServerHarness):
    url_template = "etcd://{address}/conformance/{namespace}?timeout={timeout}"

    def corrupt(self, namespace: str, key: str) -> None:
        full_key = EtcdStorage.from_url(self.url(namespace)).full_key(key)
        client = pyetcd.client(host=self.process.host, port=self.process.port, timeout=5)
        try:
            client.put(full_key, b"{not json")
        finally:
            client.close()


class TestEtcdBackend(StorageConformance):
    @pytest.fixture
    def storage_harness(self, etcd_server: ServerProcess) -> StorageHarness:
        return EtcdHarness(etcd_server)
