"""``jsonfile:///path/store.json[?prefix=P]``: a third-party backend, written as the docs say.

All records of a store live in one JSON file; every operation takes an exclusive ``flock`` on a
lock file beside it, reads, changes and atomically replaces the file. Slow, but correct across
threads and processes of one machine, which is all mclease's tests need from it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mclease_core import (
    Backend,
    Capabilities,
    ConfigurationError,
    LeaseAlreadyExistsError,
    LeaseConflictError,
    LeaseData,
    LeaseNotFoundError,
    LeaseObject,
    Storage,
    StorageUnavailableError,
    decode_lease_data,
    encode_lease_data,
    hookimpl,
    validate_key,
)


class JsonFileStorage(Storage):
    def __init__(self, path: Path, prefix: str = "") -> None:
        self.path = path
        self.prefix = prefix
        self._thread_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> JsonFileStorage:
        parts = urllib.parse.urlsplit(url)
        if parts.netloc or not parts.path:
            raise ConfigurationError(
                f"invalid jsonfile URL {url!r}: expected jsonfile:///path.json"
            )
        prefix = dict(urllib.parse.parse_qsl(parts.query)).get("prefix", "")
        return cls(Path(parts.path), prefix)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(operation_timeout=1.0)

    def read(self, key: str) -> LeaseObject:
        with self._locked(key) as state:
            record = state["records"].get(self._full(key))
        if record is None:
            raise LeaseNotFoundError("no lease record", key=key, backend="jsonfile")
        return LeaseObject(
            decode_lease_data(record["data"], key=key, backend="jsonfile"), record["version"]
        )

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        with self._locked(key, write=True) as state:
            if self._full(key) in state["records"]:
                raise LeaseAlreadyExistsError(
                    "lease record already exists", key=key, backend="jsonfile"
                )
            return self._store(state, key, data)

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        with self._locked(key, write=True) as state:
            self._check(state, key, version)
            return self._store(state, key, data)

    def delete(self, key: str, *, version: int) -> None:
        with self._locked(key, write=True) as state:
            self._check(state, key, version)
            del state["records"][self._full(key)]

    def corrupt(self, key: str) -> None:
        """For the conformance harness: store bytes that are not a lease record."""
        with self._locked(key, write=True) as state:
            state["records"][self._full(key)] = {"version": 1, "data": "not a record"}

    def _full(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}"

    def _store(self, state: dict[str, Any], key: str, data: LeaseData) -> LeaseObject:
        full = self._full(key)
        version = state["versions"].get(full, 0) + 1
        state["versions"][full] = version
        state["records"][full] = {"version": version, "data": encode_lease_data(data).decode()}
        return LeaseObject(data, version)

    def _check(self, state: dict[str, Any], key: str, version: int) -> None:
        record = state["records"].get(self._full(key))
        if record is None or record["version"] != version:
            raise LeaseConflictError(f"expected version {version}", key=key, backend="jsonfile")

    @contextlib.contextmanager
    def _locked(self, key: str, write: bool = False) -> Iterator[dict[str, Any]]:
        validate_key(key)
        try:
            lock = open(self.path.with_suffix(".lock"), "a")  # noqa: SIM115
        except OSError as exc:
            raise StorageUnavailableError(
                f"cannot open {self.path}: {exc}", key=key, backend="jsonfile"
            ) from exc
        with self._thread_lock, lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = (
                json.loads(self.path.read_text())
                if self.path.exists()
                else {"records": {}, "versions": {}}
            )
            yield state
            if write:
                temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
                temporary.write_text(json.dumps(state))
                temporary.replace(self.path)


@hookimpl
def mclease_backends() -> list[Backend]:
    return [
        Backend(
            "jsonfile", JsonFileStorage.from_url, "one flock'ed JSON file", "jsonfile:///path.json"
        )
    ]
