"""A :class:`Storage` wrapper that counts operations, so cost per renewal can be asserted.

Not a metrics exporter: the controller's Prometheus metrics build on these counts elsewhere.
"""

from __future__ import annotations

import collections
import threading

from ._storage import Capabilities, ChangeFeed, LeaseData, LeaseObject, Storage


class CountingStorage(Storage):
    """Delegates to ``inner`` and counts each operation by name (``read``, ``create``, ...)."""

    def __init__(self, inner: Storage):
        self.inner = inner
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def watch(self) -> ChangeFeed:
        return self.inner.watch()

    def counts(self) -> dict[str, int]:
        """A snapshot: operation name -> calls made (failed calls included)."""
        with self._lock:
            return {op: self._counts[op] for op in ("read", "create", "update", "delete")}

    def _count(self, operation: str) -> None:
        with self._lock:
            self._counts[operation] += 1

    def read(self, key: str) -> LeaseObject:
        self._count("read")
        return self.inner.read(key)

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        self._count("create")
        return self.inner.create(key, data)

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        self._count("update")
        return self.inner.update(key, data, version=version)

    def delete(self, key: str, *, version: int) -> None:
        self._count("delete")
        self.inner.delete(key, version=version)

    def close(self) -> None:
        self.inner.close()
