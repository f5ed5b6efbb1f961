"""The shared storage conformance suite against a real example server."""

from __future__ import annotations

import pytest
from mclease_example import ExampleStorage

from mclease_core import Storage
from mclease_core.conformance import StorageConformance, StorageHarness
from mclease_core.testing import ServerProcess, free_port


class ExampleHarness(StorageHarness):
    unavailable_within = 5.0

    def __init__(self, server: ServerProcess):
        self.server = server

    def url(self, namespace: str) -> str:
        return f"example://{self.server.address}/conformance/{namespace}?timeout=5"

    def open(self, namespace: str) -> Storage:
        return ExampleStorage.from_url(self.url(namespace))

    def open_unreachable(self) -> Storage:
        return ExampleStorage.from_url(f"example://127.0.0.1:{free_port()}/x?timeout=1")

    def corrupt(self, namespace: str, key: str) -> None:
        with ExampleStorage.from_url(self.url(namespace)) as store:
            store.put_raw(key, b"{not json")


class TestExampleBackend(StorageConformance):
    @pytest.fixture
    def storage_harness(self, example_server: ServerProcess) -> StorageHarness:
        return ExampleHarness(example_server)
