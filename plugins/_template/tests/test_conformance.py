"""The shared storage conformance suite, fault tests included, against a real example server."""

from __future__ import annotations

import pytest
from mclease_example import ExampleStorage

from mclease_core.conformance import ServerHarness, StorageConformance, StorageHarness
from mclease_core.testing import ServerProcess


class ExampleHarness(ServerHarness):
    # {timeout}: 5 s for the ordinary tests, 1 s for the fault tests (they wait for it)
    url_template = "example://{address}/conformance/{namespace}?timeout={timeout}"

    def corrupt(self, namespace: str, key: str) -> None:
        """Write bytes that are no lease record under ``key``, with the store's own client
        (not the backend): e.g. ``raw_client.put(store.full_key(key), b"{not json")``."""
        full_key = ExampleStorage.from_url(self.url(namespace)).full_key(key)
        raise NotImplementedError(f"TODO: store b'{{not json' under {full_key!r} with a raw client")


class TestExampleBackend(StorageConformance):
    @pytest.fixture
    def storage_harness(self, example_server: ServerProcess) -> StorageHarness:
        return ExampleHarness(example_server)
