"""The shared storage conformance suite against a real etcd."""

from __future__ import annotations

import pytest

from mclease_core import Storage
from mclease_core.conformance import StorageConformance, StorageHarness
from mclease_core.testing import ServerProcess, free_port
from mclease_etcd import EtcdStorage


class EtcdHarness(StorageHarness):
    unavailable_within = 5.0

    def __init__(self, server: ServerProcess):
        self.server = server

    def url(self, namespace: str) -> str:
        return f"etcd://{self.server.address}/conformance/{namespace}?timeout=5"

    def open(self, namespace: str) -> Storage:
        return EtcdStorage.from_url(self.url(namespace))

    def open_unreachable(self) -> Storage:
        return EtcdStorage.from_url(f"etcd://127.0.0.1:{free_port()}/x?timeout=1")

    def corrupt(self, namespace: str, key: str) -> None:
        with EtcdStorage.from_url(self.url(namespace)) as store:
            store.put_raw(key, b"{not json")


class TestEtcdBackend(StorageConformance):
    @pytest.fixture
    def storage_harness(self, etcd_server: ServerProcess) -> StorageHarness:
        return EtcdHarness(etcd_server)
