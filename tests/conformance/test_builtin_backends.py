"""The conformance suite against the built-in backends, ``memory://`` and ``sqlite://``."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from pathlib import Path

import pytest

from mclease_core import LeaseNotFoundError, Storage
from mclease_core.backends import MemoryStorage, SQLiteStorage
from mclease_core.conformance import StorageConformance, StorageHarness
from tests.support import put_raw_record


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
        put_raw_record(MemoryStorage(self.store_name, prefix=namespace), key, b"{not json")


class SQLiteHarness(StorageHarness):
    def __init__(self, directory: Path):
        self.path = directory / "leases.db"

    def open(self, namespace: str) -> Storage:
        return SQLiteStorage(self.path, prefix=namespace, timeout=10.0)

    def url(self, namespace: str) -> str | None:
        return f"sqlite://{self.path}?prefix={namespace}&timeout=10"

    def open_unreachable(self) -> Storage:
        return SQLiteStorage(self.path.parent / "no-such-directory" / "leases.db", timeout=1.0)

    def corrupt(self, namespace: str, key: str) -> None:
        with SQLiteStorage(self.path, prefix=namespace) as store:
            with contextlib.suppress(LeaseNotFoundError):
                store.read(key)  # the first use creates the tables
            full_key = store._full_key(key)
        with contextlib.closing(sqlite3.connect(self.path)) as db, db:
            db.execute(
                "INSERT OR REPLACE INTO mclease_leases (key, version, data) VALUES (?, ?, ?)",
                (full_key, 1_000_000, b"\x00\xffgarbage"),
            )


class TestMemoryBackend(StorageConformance):
    @pytest.fixture
    def storage_harness(self) -> StorageHarness:
        return MemoryHarness()


class TestSQLiteBackend(StorageConformance):
    @pytest.fixture
    def storage_harness(self, tmp_path: Path) -> StorageHarness:
        return SQLiteHarness(tmp_path)
