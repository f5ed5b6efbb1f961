"""The shared storage conformance suite, fault tests included, against a real redis-server."""

from __future__ import annotations

import pytest
import redis

from mclease_core.conformance import ServerHarness, StorageConformance, StorageHarness
from mclease_core.testing import ServerProcess
from mclease_redis import RedisStorage


class RedisHarness(ServerHarness):
    url_template = "redis://{address}/0?prefix=conformance-{namespace}&timeout={timeout}"

    def corrupt(self, namespace: str, key: str) -> None:
        record, _ = RedisStorage.from_url(self.url(namespace)).keys(key)
        with redis.Redis(host=self.process.host, port=self.process.port) as client:
            client.hset(record, mapping={"data": b"{not json", "version": "1"})


class TestRedisBackend(StorageConformance):
    @pytest.fixture
    def storage_harness(self, redis_server: ServerProcess) -> StorageHarness:
        return RedisHarness(redis_server)
