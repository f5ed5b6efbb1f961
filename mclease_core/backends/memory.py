"""``memory://[name][/prefix]``: the in-process reference backend.

It is the model the conformance suite and the unit tests compare against: every rule of the
storage contract, nothing else. Stores are shared by name within one process (``memory://a`` opened
twice sees the same records) and vanish with it, so it is for tests and demos only. ``watch()``
hands every write to each feed of the store as it happens, under the store's lock, so the order
of a feed is the order of the writes.
"""

from __future__ import annotations

import collections
import threading
import urllib.parse
from typing import ClassVar

from .._codec import decode_lease_data, encode_lease_data
from .._errors import (
    ConfigurationError,
    CorruptRecordError,
    LeaseAlreadyExistsError,
    LeaseConflictError,
    LeaseNotFoundError,
)
from .._storage import (
    RESYNC,
    Capabilities,
    Change,
    ChangeFeed,
    LeaseData,
    LeaseObject,
    Storage,
    validate_key,
)
from .._urls import redact


class _MemoryStore:
    """The records of one named store; versions come from one counter, so they never go back."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: dict[str, tuple[bytes, int]] = {}
        self.last_version = 0
        self.feeds: list[_MemoryFeed] = []

    def next_version(self) -> int:
        self.last_version += 1
        return self.last_version

    def changed(self, full_key: str, record: tuple[bytes, int] | None) -> None:
        """Called under ``lock`` after each write: tell every feed."""
        for feed in self.feeds:
            feed.offer(full_key, record)


class _MemoryFeed(ChangeFeed):
    def __init__(self, store: _MemoryStore, prefix: str) -> None:
        self._store = store
        self._prefix = f"{prefix}/" if prefix else ""
        self._cond = threading.Condition()
        self._pending: collections.deque[Change] = collections.deque([RESYNC])
        with store.lock:
            store.feeds.append(self)

    @property
    def connected(self) -> bool:
        return True

    def offer(self, full_key: str, record: tuple[bytes, int] | None) -> None:
        if not full_key.startswith(self._prefix):
            return
        key = full_key[len(self._prefix) :]
        decoded = None
        if record is not None:
            try:
                data = decode_lease_data(record[0], key=key, backend="memory")
            except CorruptRecordError:
                pass  # reported as unknown: a read of it raises
            else:
                decoded = LeaseObject(data, record[1])
        with self._cond:
            self._pending.append(Change(key, decoded))
            self._cond.notify_all()

    def next(self, timeout: float) -> list[Change]:
        with self._cond:
            if not self._pending:
                self._cond.wait(timeout)
            changes = list(self._pending)
            self._pending.clear()
        return changes

    def close(self) -> None:
        with self._store.lock:
            if self in self._store.feeds:
                self._store.feeds.remove(self)


class MemoryStorage(Storage):
    """A view of a named in-process store under a key prefix."""

    _stores: ClassVar[dict[str, _MemoryStore]] = {}
    _stores_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str = "", prefix: str = "") -> None:
        with self._stores_lock:
            self._store = self._stores.setdefault(name, _MemoryStore())
        self.name = name
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str) -> MemoryStorage:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "memory" or parts.query or parts.fragment:
            raise ConfigurationError(
                f"invalid memory URL {redact(url)!r}: expected memory://[name][/prefix]"
            )
        return cls(name=parts.netloc, prefix=parts.path.strip("/"))

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(shared_across_processes=False, operation_timeout=0.0, watch=True)

    def watch(self) -> ChangeFeed:
        return _MemoryFeed(self._store, self.prefix)

    def _full_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def read(self, key: str) -> LeaseObject:
        full = self._full_key(key)
        with self._store.lock:
            found = self._store.records.get(full)
        if found is None:
            raise LeaseNotFoundError("no lease record", key=key, backend="memory")
        raw, version = found
        return LeaseObject(decode_lease_data(raw, key=key, backend="memory"), version)

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        full = self._full_key(key)
        with self._store.lock:
            if full in self._store.records:
                raise LeaseAlreadyExistsError(
                    "lease record already exists", key=key, backend="memory"
                )
            version = self._store.next_version()
            self._store.records[full] = (encode_lease_data(data), version)
            self._store.changed(full, self._store.records[full])
        return LeaseObject(data, version)

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        full = self._full_key(key)
        with self._store.lock:
            self._check_version(key, full, version)
            version = self._store.next_version()
            self._store.records[full] = (encode_lease_data(data), version)
            self._store.changed(full, self._store.records[full])
        return LeaseObject(data, version)

    def delete(self, key: str, *, version: int) -> None:
        full = self._full_key(key)
        with self._store.lock:
            self._check_version(key, full, version)
            del self._store.records[full]
            self._store.changed(full, None)

    def _check_version(self, key: str, full: str, version: int) -> None:
        current = self._store.records.get(full)
        if current is None:
            raise LeaseConflictError(
                f"expected version {version}, but the record does not exist",
                key=key,
                backend="memory",
            )
        if current[1] != version:
            raise LeaseConflictError(
                f"expected version {version}, stored version is {current[1]}",
                key=key,
                backend="memory",
            )
