"""Test doubles that wrap a real backend to inject failures the real one cannot produce on demand.

They are not mocks of a store: every operation that is not failed on purpose goes to the wrapped
backend (the in-memory reference or SQLite).
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable
from typing import Any

from mclease_core import (
    ConfigurationError,
    FakeClock,
    LeaseData,
    LeaseObject,
    OutcomeUnknownError,
    Storage,
    StorageUnavailableError,
)
from mclease_core.backends import MemoryStorage
from mclease_core.plugin import Capabilities

Fault = str | float | Callable[[], object]


def raw_record(**fields: Any) -> bytes:
    """A stored lease record in the codec's format, written by hand with ``fields`` changed and
    nothing checked: for forging corrupt, hostile or odd records (``put_raw_record``, the
    decoder)."""
    document = {
        "format": 1,
        "holderIdentity": "x",
        "holderCluster": "west",
        "leaseDurationSeconds": 6,
        "acquireTime": "2026-11-26T12:00:00+00:00",
        "renewTime": "2026-11-26T12:00:00+00:00",
        "leaseTransitions": 0,
        "fencingToken": None,
        **fields,
    }
    return json.dumps(document, allow_nan=True).encode()


def put_raw_record(store: Storage, key: str, raw: bytes) -> None:
    """Store ``raw`` under ``key`` of a ``memory://`` store, bypassing the codec: straight into
    the store's private dict (the memory store's "raw client"), with a fresh version."""
    assert isinstance(store, MemoryStorage), f"raw records only for memory stores, not {store!r}"
    records = store._store
    with records.lock:
        records.records[store._full_key(key)] = (raw, records.next_version())


class FaultyStorage(Storage):
    """Delegates to ``inner``; ``fail_next[op]`` queues faults for the next calls of ``op``.

    A fault is ``"unavailable"`` (raise without touching the store), ``"lost-response"`` (apply
    the write, then raise OutcomeUnknownError), ``"unknown-not-applied"`` (raise
    OutcomeUnknownError without applying), a number of seconds the call takes on ``clock``, or a
    callable run while the call is in flight (before it is applied).
    """

    def __init__(self, inner: Storage, clock: FakeClock | None = None):
        self.inner = inner
        self.clock = clock
        self.fail_next: dict[str, collections.deque[Fault]] = collections.defaultdict(
            collections.deque
        )
        self.down = False
        self.refusing = False
        """Every call raises ConfigurationError, as a store that refuses rotated credentials."""

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def _call(
        self, op: str, key: str, apply: Callable[[], LeaseObject | None]
    ) -> LeaseObject | None:
        if self.down:
            raise StorageUnavailableError("store is down (injected)", key=key, backend="faulty")
        if self.refusing:
            raise ConfigurationError("the store refused the credentials (injected)")
        fault = self.fail_next[op].popleft() if self.fail_next[op] else None
        if callable(fault):
            fault()
            return apply()
        if isinstance(fault, float | int) and self.clock is not None:
            self.clock.advance(float(fault))
            return apply()
        if fault == "unavailable":
            raise StorageUnavailableError("injected outage", key=key, backend="faulty")
        if fault == "unknown-not-applied":
            raise OutcomeUnknownError("injected lost request", key=key, backend="faulty")
        result = apply()
        if fault == "lost-response":
            raise OutcomeUnknownError("injected lost response", key=key, backend="faulty")
        return result

    def read(self, key: str) -> LeaseObject:
        result = self._call("read", key, lambda: self.inner.read(key))
        assert result is not None
        return result

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        result = self._call("create", key, lambda: self.inner.create(key, data))
        assert result is not None
        return result

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        result = self._call("update", key, lambda: self.inner.update(key, data, version=version))
        assert result is not None
        return result

    def delete(self, key: str, *, version: int) -> None:
        self._call("delete", key, lambda: self.inner.delete(key, version=version))
