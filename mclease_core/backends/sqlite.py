"""``sqlite:///path/to/file.db[?prefix=P&timeout=S]``: the embedded default backend.

One SQLite file holds the leases of every process on one machine that opens it. Each operation is
one ``BEGIN IMMEDIATE`` transaction, so compare-and-swap is atomic across threads and processes;
``timeout`` (seconds, default 5) bounds how long an operation waits for the file's write lock
before it raises :class:`StorageUnavailableError`. The file runs in WAL mode with
``synchronous=FULL``: an acknowledged write survives a crash of the process or the machine.

Versions come from a per-key counter table that is never deleted from, so they keep growing
across delete and recreate.

``watch()`` polls ``PRAGMA data_version`` on a connection of its own every
:data:`WATCH_POLL` seconds (it changes when any other connection commits; asking costs no disk
read) and, when it changed, reads the prefix's versions and reports what differs from the last
look: a few microseconds while nothing changes, one range scan per commit.

Not for: several machines. SQLite on a network file system does not give these guarantees; use a
networked backend (etcd, Redis, GCS) for leases shared between clusters.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from .._codec import decode_lease_data, encode_lease_data
from .._errors import (
    ConfigurationError,
    CorruptRecordError,
    LeaseAlreadyExistsError,
    LeaseConflictError,
    LeaseNotFoundError,
    StorageError,
    StorageUnavailableError,
)
from .._limits import check_duration
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
from .._urls import redact, seconds_option, url_options

log = logging.getLogger("mclease.sqlite")

DEFAULT_TIMEOUT = 5.0
WATCH_POLL = 0.02
"""Seconds between two change checks of a feed."""
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mclease_leases (
    key TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS mclease_versions (
    key TEXT PRIMARY KEY,
    last_version INTEGER NOT NULL
);
"""


class SQLiteStorage(Storage):
    """Lease records in one SQLite file, safe across threads and processes of one machine."""

    def __init__(self, path: str | Path, *, prefix: str = "", timeout: float = DEFAULT_TIMEOUT):
        try:
            timeout = check_duration("sqlite timeout", timeout)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        self.path = Path(path)
        self.prefix = prefix
        self.timeout = timeout
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str) -> SQLiteStorage:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "sqlite" or parts.netloc or not parts.path or parts.fragment:
            raise ConfigurationError(
                f"invalid sqlite URL {redact(url)!r}: expected sqlite:///absolute/path.db or "
                "sqlite:relative/path.db, with optional ?prefix=NAME&timeout=SECONDS"
            )
        options = url_options(url, {"prefix", "timeout"}, backend="sqlite")
        timeout = seconds_option(options, "timeout", DEFAULT_TIMEOUT, url=url, backend="sqlite")
        return cls(
            urllib.parse.unquote(parts.path), prefix=options.get("prefix", ""), timeout=timeout
        )

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(operation_timeout=self.timeout + 1.0, watch=True)

    def watch(self) -> ChangeFeed:
        return _SQLiteFeed(self.path, self.prefix, self.timeout)

    def read(self, key: str) -> LeaseObject:
        full = self._full_key(key)
        found = self._run(key, lambda db: _stored(db, full, key), write=False)
        if found is None:
            raise LeaseNotFoundError("no lease record", key=key, backend="sqlite")
        return found

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        full = self._full_key(key)
        raw = encode_lease_data(data)

        def transaction(db: sqlite3.Connection) -> int:
            if db.execute("SELECT 1 FROM mclease_leases WHERE key = ?", (full,)).fetchone():
                raise LeaseAlreadyExistsError(
                    "lease record already exists", key=key, backend="sqlite"
                )
            version = _next_version(db, full)
            db.execute(
                "INSERT INTO mclease_leases (key, version, data) VALUES (?, ?, ?)",
                (full, version, raw),
            )
            return version

        return LeaseObject(data, self._run(key, transaction))

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        full = self._full_key(key)
        raw = encode_lease_data(data)

        def transaction(db: sqlite3.Connection) -> int:
            _check_version(db, key, full, version)
            new_version = _next_version(db, full)
            db.execute(
                "UPDATE mclease_leases SET version = ?, data = ? WHERE key = ?",
                (new_version, raw, full),
            )
            return new_version

        return LeaseObject(data, self._run(key, transaction))

    def delete(self, key: str, *, version: int) -> None:
        full = self._full_key(key)

        def transaction(db: sqlite3.Connection) -> None:
            _check_version(db, key, full, version)
            db.execute("DELETE FROM mclease_leases WHERE key = ?", (full,))

        self._run(key, transaction)

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _full_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _run(
        self, key: str, transaction: Callable[[sqlite3.Connection], _T], *, write: bool = True
    ) -> _T:
        """Run ``transaction`` mapping SQLite errors. A write runs in one transaction that takes
        the write lock up front (``BEGIN IMMEDIATE``), so a compare-and-swap never has to upgrade
        a read lock; a read is one statement, atomic on its own."""
        with self._lock, self._mapped_errors(key):
            db = self._connect()
            if not write:
                return transaction(db)
            db.execute("BEGIN IMMEDIATE")
            try:
                result = transaction(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = _open(self.path, self.timeout)
        return self._connection

    @contextmanager
    def _mapped_errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except StorageError:
            raise
        except sqlite3.OperationalError as exc:
            self._drop_connection()
            raise StorageUnavailableError(
                f"SQLite file {str(self.path)!r} is unavailable: {exc}; check that its directory "
                "exists and is writable, and that no process holds its lock longer than "
                f"{self.timeout}s",
                key=key,
                backend="sqlite",
            ) from exc
        except sqlite3.DatabaseError as exc:
            self._drop_connection()
            raise CorruptRecordError(
                f"SQLite file {str(self.path)!r} is not a valid mclease database: {exc}; "
                "point the URL at another file or remove this one",
                key=key,
                backend="sqlite",
            ) from exc

    def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _open(path: Path, timeout: float) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
    except BaseException:
        db.close()
        raise
    return db


class _SQLiteFeed(ChangeFeed):
    """Changes under one prefix of one file, found by comparing versions after each commit."""

    def __init__(self, path: Path, prefix: str, timeout: float) -> None:
        self._path = path
        self._prefix = f"{prefix}/" if prefix else ""
        self._timeout = timeout
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._data_version: int | None = None
        self._versions: dict[str, int] = {}

    @property
    def connected(self) -> bool:
        return self._db is not None

    def next(self, timeout: float) -> list[Change]:
        deadline = time.monotonic() + timeout
        while not self._closed:
            try:
                changes = self._check()
            except sqlite3.Error as exc:
                self._drop(exc)
                changes = []
            if changes or time.monotonic() + WATCH_POLL > deadline:
                return changes
            time.sleep(WATCH_POLL)
        return []

    def close(self) -> None:
        self._closed = True
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def _check(self) -> list[Change]:
        if self._db is None:
            self._db = _open(self._path, self._timeout)
            self._data_version = None
            self._versions = {}
            resync = True
        else:
            resync = False
        db = self._db
        db.execute("BEGIN")  # one snapshot: data_version, the versions and the records read
        try:
            data_version: int = db.execute("PRAGMA data_version").fetchone()[0]
            if data_version == self._data_version:
                return []
            self._data_version = data_version
            low = self._prefix
            versions = {
                key[len(low) :]: version
                for key, version in db.execute(
                    "SELECT key, version FROM mclease_leases WHERE substr(key, 1, ?) = ?",
                    (len(low), low),
                )
            }
            if resync:
                self._versions = versions
                return [RESYNC]
            changed = [key for key, v in versions.items() if self._versions.get(key) != v]
            changes = [Change(key, self._record(db, key)) for key in changed]
        finally:
            db.execute("COMMIT")
        changes += [Change(key) for key in self._versions if key not in versions]
        self._versions = versions
        return changes

    def _record(self, db: sqlite3.Connection, key: str) -> LeaseObject | None:
        try:
            return _stored(db, self._prefix + key, key)
        except CorruptRecordError:
            return None  # reported as unknown: a read of it raises

    def _drop(self, exc: sqlite3.Error) -> None:
        if self._db is not None and not self._closed:
            log.warning("lost the change feed of SQLite file %r: %s", str(self._path), exc)
            self._db.close()
            self._db = None


def _stored(db: sqlite3.Connection, full_key: str, key: str) -> LeaseObject | None:
    """The record under ``full_key`` (``None``: there is none); :class:`CorruptRecordError` if
    its bytes do not decode."""
    row = db.execute(
        "SELECT data, version FROM mclease_leases WHERE key = ?", (full_key,)
    ).fetchone()
    if row is None:
        return None
    return LeaseObject(decode_lease_data(row[0], key=key, backend="sqlite"), row[1])


def _next_version(db: sqlite3.Connection, full_key: str) -> int:
    row = db.execute(
        "INSERT INTO mclease_versions (key, last_version) VALUES (?, 1) "
        "ON CONFLICT (key) DO UPDATE SET last_version = last_version + 1 "
        "RETURNING last_version",
        (full_key,),
    ).fetchone()
    version: int = row[0]
    return version


def _check_version(db: sqlite3.Connection, key: str, full_key: str, expected: int) -> None:
    row = db.execute("SELECT version FROM mclease_leases WHERE key = ?", (full_key,)).fetchone()
    if row is None:
        raise LeaseConflictError(
            f"expected version {expected}, but the record does not exist", key=key, backend="sqlite"
        )
    if row[0] != expected:
        raise LeaseConflictError(
            f"expected version {expected}, stored version is {row[0]}", key=key, backend="sqlite"
        )
