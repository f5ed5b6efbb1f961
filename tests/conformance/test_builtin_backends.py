"""The conformance suite against the built-in backends, ``memory://`` and ``sqlite://``."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mclease_core import Storage
from mclease_core.backends import MemoryStorage, SQLiteStorage
from mclease_core.conformance import StorageConformance, StorageHarness


class MemoryHarness(StorageHarness):
    def __init__(self) -> None:
        self.store_name = "conformance-" + uuid.uuid4().hex[:8]

    def open(self, namespace: str) -> Storage:
        return MemoryStorage(self.store_name, prefix=namespace)

    def url(self, namespace: str) -> str | None:
        return None  # an in-process store cannot be reached from another process

    def open_unreachable(self) -> Storage | None:
        return None  # an in-process store cannot be unreachable

    def corrupt(self, namespace: str, key: str) -> None:
        MemoryStorage(self.store_name, prefix=namespace).put_raw(key, b"{not json")


class SQLiteHarness(StorageHarness):
    unavailable_within = 5.0

    def __init__(self, directory: Path):
        self.path = directory / "leases.db"

    def open(self, namespace: str) -> Storage:
        return SQLiteStorage(self.path, prefix=namespace, timeout=10.0)

    def url(self, namespace: str) -> str | None:
        return f"sqlite://{self.path}?prefix={namespace}&timeout=10"

    def open_unreachable(self) -> Storage:
        return SQLiteStorage(self.path.parent / "no-such-directory" / "leases.db", timeout=1.0)

    def corrupt(self, namespace: str, key: str) -> None:
        SQLiteStorage(self.path, prefix=namespace).put_raw(key, b"\x00\xffgarbage")


class TestMemoryBackend(StorageConformance):
    @pytest.fixture
    def storage_harness(self) -> StorageHarness:
        return MemoryHarness()


class TestSQLiteBackend(StorageConformance):
    @pytest.fixture
    def storage_harness(self, tmp_path: Path) -> StorageHarness:
        return SQLiteHarness(tmp_path)
