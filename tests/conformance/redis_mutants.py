"""Planted bugs in the redis backend, each one a fault bug a backend author could write, and the
conformance suite run against each (collected only when named: the name has no ``test_``).

``test_mutants.py`` runs this module in a pytest subprocess and checks that the suite fails for
every mutant, in the test meant to catch it, and passes for the unmutated backend. The mutants
are subclasses of :class:`RedisStorage` that change one behaviour each:

(a) a write whose connection failed is retried once on a new connection: when the answer was
    lost after the write committed, the retry meets its own write and reports a conflict;
(b) a write whose outcome is unknown is reported as success;
(c) no socket timeouts: a frozen server hangs every call;
(d) a kept-open connection is not checked before sending (redis-py's pool asks ``can_read``):
    after a server restart the write goes out on a dead connection and is reported as outcome
    unknown, though the new server cannot have received it;
(e) update as read-then-write in three commands instead of one script: not atomic.

The harness gives no URL (racing processes would open the registered, unmutated backend by it),
so the multi-process races skip here; they run in the plugin's own conformance suite.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest
import redis

from mclease_core.conformance import ServerHarness, StorageConformance, StorageHarness
from mclease_core.plugin import (
    LeaseConflictError,
    LeaseData,
    LeaseObject,
    OutcomeUnknownError,
    Storage,
    encode_lease_data,
)
from mclease_core.testing import ServerProcess, server_or_fail
from mclease_dev.servers import redis_server as start_redis_server
from mclease_redis import RedisStorage


class LostWriteIsConflict(RedisStorage):
    """(a) Retries a write once after its connection failed (the backend drops a failed
    connection, so the retry goes out on a new one)."""

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        try:
            return super().create(key, data)
        except OutcomeUnknownError:
            return super().create(key, data)

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        try:
            return super().update(key, data, version=version)
        except OutcomeUnknownError:
            return super().update(key, data, version=version)

    def delete(self, key: str, *, version: int) -> None:
        try:
            super().delete(key, version=version)
        except OutcomeUnknownError:
            super().delete(key, version=version)


class LostWriteIsSuccess(RedisStorage):
    """(b) Reports a write of unknown outcome as done."""

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        try:
            return super().create(key, data)
        except OutcomeUnknownError:
            return LeaseObject(data, 1)

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        try:
            return super().update(key, data, version=version)
        except OutcomeUnknownError:
            return LeaseObject(data, version + 1)

    def delete(self, key: str, *, version: int) -> None:
        try:
            super().delete(key, version=version)
        except OutcomeUnknownError:
            return


class NoTimeouts(RedisStorage):
    """(c) Connects, sends and waits for answers without any timeout."""

    @classmethod
    def from_url(cls, url: str) -> RedisStorage:
        store = super().from_url(url)
        store._pool.connection_kwargs.update(socket_timeout=None, socket_connect_timeout=None)
        return store


class _UncheckedConnection(redis.Connection):
    def can_read(self, timeout: float = 0) -> bool:
        return False  # the pool then hands out a dead connection as if it were fine


class StaleConnectionUnchecked(RedisStorage):
    """(d) Sends on a kept-open connection without checking that the server still has it."""

    @classmethod
    def from_url(cls, url: str) -> RedisStorage:
        store = super().from_url(url)
        store._pool.connection_class = _UncheckedConnection
        return store


class UpdateInTwoSteps(RedisStorage):
    """(e) Compares the version, then writes: another writer can come in between."""

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        record, counter = self.keys(key)
        client = redis.Redis(connection_pool=self._pool)
        with self._errors(key, write=True):  # the backend's own mapping of redis-py's errors
            stored = client.hget(record, "version")
            if stored is None or int(stored) != version:
                raise LeaseConflictError(
                    f"expected version {version}, stored {stored!r}", key=key, backend="redis"
                )
            new_version = int(client.incr(counter))
            client.hset(record, mapping={"data": encode_lease_data(data), "version": new_version})
        return LeaseObject(data, new_version)


class MutantHarness(ServerHarness):
    url_template = "redis://{address}/0?prefix=mutants-{namespace}&timeout={timeout}"

    def __init__(self, process: ServerProcess, storage_class: type[RedisStorage]):
        super().__init__(process)
        self.storage_class = storage_class

    def open_url(self, url: str) -> Storage:
        return self.storage_class.from_url(url)

    def url(self, namespace: str) -> None:  # type: ignore[override]
        return None  # another process would open the registered, unmutated backend

    def open(self, namespace: str) -> RedisStorage:
        return self.storage_class.from_url(self._direct_url(namespace))

    def _direct_url(self, namespace: str) -> str:
        return self.url_at(namespace, self.process.address, self.timeout)

    def corrupt(self, namespace: str, key: str) -> None:
        record, _ = RedisStorage.from_url(self._direct_url(namespace)).keys(key)
        with redis.Redis(host=self.process.host, port=self.process.port) as client:
            client.hset(record, mapping={"data": b"{not json", "version": "1"})


@pytest.fixture(scope="session")
def redis_server() -> Iterator[ServerProcess]:
    with server_or_fail(start_redis_server()) as server:
        yield server


class _MutantSuite(StorageConformance):
    storage_class: ClassVar[type[RedisStorage]]

    @pytest.fixture
    def storage_harness(self, redis_server: ServerProcess) -> StorageHarness:
        return MutantHarness(redis_server, self.storage_class)


class TestUnmutated(_MutantSuite):
    storage_class = RedisStorage


class TestLostWriteIsConflict(_MutantSuite):
    storage_class = LostWriteIsConflict


class TestLostWriteIsSuccess(_MutantSuite):
    storage_class = LostWriteIsSuccess


class TestNoTimeouts(_MutantSuite):
    storage_class = NoTimeouts


class TestStaleConnectionUnchecked(_MutantSuite):
    storage_class = StaleConnectionUnchecked


class TestUpdateInTwoSteps(_MutantSuite):
    storage_class = UpdateInTwoSteps
