"""The shared storage conformance suite against a real redis-server."""

from __future__ import annotations

import pytest

from mclease_core import Storage
from mclease_core.conformance import StorageConformance, StorageHarness
from mclease_core.testing import ServerProcess, free_port
from mclease_redis import RedisStorage


class RedisHarness(StorageHarness):
    unavailable_within = 5.0

    def __init__(self, server: ServerProcess):
        self.server = server

    def url(self, namespace: str) -> str:
        return f"redis://{self.server.address}/0?prefix=conformance-{namespace}&timeout=5"

    def open(self, namespace: str) -> Storage:
        return RedisStorage.from_url(self.url(namespace))

    def open_unreachable(self) -> Storage:
        return RedisStorage.from_url(f"redis://127.0.0.1:{free_port()}/0?timeout=1")

    def corrupt(self, namespace: str, key: str) -> None:
        with RedisStorage.from_url(self.url(namespace)) as store:
            store.put_raw(key, b"{not json")


class TestRedisBackend(StorageConformance):
    @pytest.fixture
    def storage_harness(self, redis_server: ServerProcess) -> StorageHarness:
        return RedisHarness(redis_server)
