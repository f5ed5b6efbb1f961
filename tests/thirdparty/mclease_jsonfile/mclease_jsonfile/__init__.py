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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mclease_core.plugin import (
    Backend,
    Capabilities,
    LeaseData,
    LeaseObject,
    Option,
    Storage,
    StorageUnavailableError,
    StorageURL,
    already_exists,
    conflict,
    decode_lease_data,
    encode_lease_data,
    hookimpl,
    map_errors,
    not_found,
    validate_key,
)

PREFIX = Option.text("prefix")


class JsonFileStorage(Storage):
    def __init__(self, path: Path, prefix: str = "") -> None:
        self.path = path
        self.prefix = prefix
        self._thread_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> JsonFileStorage:
        parsed = StorageURL.parse(
            url,
            backend="jsonfile",
            schemes=("jsonfile",),
            options=[PREFIX],
            hosts="none",
            takes_credentials=False,
            usage="expected jsonfile:///path.json[?prefix=NAME]",
        )
        if not parsed.path:
            raise parsed.error("the path of the JSON file is missing")
        return cls(Path(parsed.path), parsed.get(PREFIX))

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(operation_timeout=1.0)

    def read(self, key: str) -> LeaseObject:
        with self._locked(key) as state:
            record = state["records"].get(self._full(key))
        if record is None:
            raise not_found(key, "jsonfile")
        return LeaseObject(
            decode_lease_data(record["data"], key=key, backend="jsonfile"), record["version"]
        )

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        with self._locked(key, write=True) as state:
            if self._full(key) in state["records"]:
                raise already_exists(key, "jsonfile")
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
        if record is None:
            raise conflict(key, "jsonfile", expected=version, missing=True)
        if record["version"] != version:
            raise conflict(key, "jsonfile", expected=version, stored=record["version"])

    @contextlib.contextmanager
    def _locked(self, key: str, write: bool = False) -> Iterator[dict[str, Any]]:
        validate_key(key)
        with map_errors({OSError: StorageUnavailableError}, key=key, backend="jsonfile"):
            lock = open(self.path.with_suffix(".lock"), "a")  # noqa: SIM115
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
