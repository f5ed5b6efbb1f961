"""``redis://[[user]:password@]host:port/db?prefix=P&timeout=S`` (``rediss://`` for TLS).

One lease is two keys that share a hash tag: ``<prefix>:{<key>}:record``, a hash holding the
encoded record and its version, and ``<prefix>:{<key>}:version``, the counter new versions come
from. The counter is never deleted, so versions keep growing across delete and recreate. Every
write is one Lua script (see ``_scripts``), atomic on a single Redis server and, thanks to the hash
tag, on a Redis Cluster shard. ``{``, ``}`` and ``%`` in keys and prefixes are percent-encoded so
the tag is always the whole key.

Each operation takes a connection from the pool (connecting if needed), sends one command and
reads one answer, with ``timeout`` on the connect and on every socket read and write, and no
retries: a failure to connect means nothing was sent (:class:`StorageUnavailableError`), a failure
after sending a write means it may have been applied (:class:`OutcomeUnknownError`).

Not for: stores that must survive a failover without losing writes. Redis replication is
asynchronous; a promoted replica can lack acknowledged writes, so two leaders are possible after a
failover (``may_lose_writes``). Nor for Redis Cluster client routing: point the URL at
the shard that owns the lease's slot, or at a single server.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.connection import ConnectionPool, parse_url
from redis.retry import Retry

from mclease_core import (
    Capabilities,
    ConfigurationError,
    CorruptRecordError,
    LeaseAlreadyExistsError,
    LeaseConflictError,
    LeaseData,
    LeaseNotFoundError,
    LeaseObject,
    OutcomeUnknownError,
    Storage,
    StorageError,
    StorageUnavailableError,
    decode_lease_data,
    encode_lease_data,
    seconds_option,
    validate_key,
)

from . import _scripts

DEFAULT_PREFIX = "mclease"
DEFAULT_TIMEOUT = 5.0
_OUR_OPTIONS = {"prefix", "timeout"}
_TLS_OPTIONS = {
    "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"
}
_PASSED_OPTIONS = _TLS_OPTIONS | {"client_name"}
_UNAVAILABLE_REPLIES = {"CLUSTERDOWN", "LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "BUSY"}


def escape(text: str) -> str:
    """Percent-encode the characters that would break a hash tag (and ``%`` itself)."""
    return text.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


class RedisStorage(Storage):
    """Lease records in one Redis database, written with Lua compare-and-swap scripts."""

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        scheme: str = "redis",
    ):
        self._pool = pool
        self.prefix = prefix
        self.timeout = timeout
        self.scheme = scheme
        self._digests = {script: _scripts.sha1(script) for script in
                         (_scripts.CREATE, _scripts.UPDATE, _scripts.DELETE)}

    @classmethod
    def from_url(cls, url: str) -> RedisStorage:
        """Open a store from a ``redis://`` or ``rediss://`` URL without connecting."""
        parts = urllib.parse.urlsplit(url)
        options = _parse_options(url, parts)
        prefix = options.pop("prefix", DEFAULT_PREFIX)
        timeout = seconds_option(options, "timeout", DEFAULT_TIMEOUT, url=url, backend="redis")
        options.pop("timeout", None)
        query = urllib.parse.urlencode(options)
        try:  # redis-py parses the options it knows, ``timeout`` (a float) among them
            kwargs = parse_url(  # type: ignore[no-untyped-call]
                urllib.parse.urlunsplit(parts._replace(query=query))
            )
        except ValueError as exc:
            raise ConfigurationError(f"invalid redis URL {url!r}: {exc}") from exc
        kwargs.pop("timeout", None)
        pool = ConnectionPool(
            **kwargs,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(pool, prefix=prefix, timeout=timeout, scheme=parts.scheme)

    @property
    def capabilities(self) -> Capabilities:
        # connect, then at most two round trips (EVALSHA, and EVAL if the script was not loaded)
        return Capabilities(may_lose_writes=True, operation_timeout=3 * self.timeout + 1)

    def keys(self, key: str) -> tuple[str, str]:
        """The record key and the version-counter key of lease ``key`` (same hash slot)."""
        validate_key(key)
        base = f"{escape(self.prefix)}:{{{escape(key)}}}"
        return f"{base}:record", f"{base}:version"

    # ----- the four operations ---------------------------------------------------------------

    def read(self, key: str) -> LeaseObject:
        record, _ = self.keys(key)
        with self._errors(key, write=False):
            raw, version = self._command("HMGET", record, "data", "version")
        if raw is None and version is None:
            raise LeaseNotFoundError("no lease record", key=key, backend=self.scheme)
        if raw is None or version is None:
            raise self._corrupt(key, "the record hash lacks its data or version field")
        data = decode_lease_data(raw, key=key, backend=self.scheme)
        return LeaseObject(data, self._version(key, version))

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        keys = self.keys(key)
        with self._errors(key, write=True):
            status, *rest = self._script(_scripts.CREATE, keys, encode_lease_data(data))
        if status != _scripts.CREATED:
            raise LeaseAlreadyExistsError(
                "lease record already exists", key=key, backend=self.scheme
            )
        return LeaseObject(data, int(rest[0]))

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        keys = self.keys(key)
        with self._errors(key, write=True):
            answer = self._script(_scripts.UPDATE, keys, str(version), encode_lease_data(data))
        self._check_swap(key, version, answer)
        return LeaseObject(data, int(answer[1]))

    def delete(self, key: str, *, version: int) -> None:
        keys = self.keys(key)
        with self._errors(key, write=True):
            answer = self._script(_scripts.DELETE, keys, str(version))
        self._check_swap(key, version, answer)

    def put_raw(self, key: str, raw: bytes, version: int = 1) -> None:
        """Store ``raw`` as the record under ``key``, bypassing the codec (tests of corruption)."""
        record, _ = self.keys(key)
        with self._errors(key, write=True):
            self._command("HSET", record, "data", raw, "version", str(version))

    def close(self) -> None:
        self._pool.disconnect()

    # ----- helpers -----------------------------------------------------------------------------

    def _check_swap(self, key: str, expected: int, answer: list[Any]) -> None:
        status = answer[0]
        if status == _scripts.MISSING_OR_PRESENT:
            raise LeaseConflictError(
                f"expected version {expected}, but the record does not exist",
                key=key, backend=self.scheme,
            )
        if status == _scripts.MISMATCH:
            stored = answer[1].decode("ascii", "replace")
            raise LeaseConflictError(
                f"expected version {expected}, stored version is {stored}",
                key=key, backend=self.scheme,
            )

    def _refused(self, key: str, exc: redis.ResponseError) -> StorageError:
        """An error reply: nothing was applied. Busy or failing-over servers are unavailable."""
        code = str(exc).split(" ", 1)[0].upper()
        if code == "WRONGTYPE":
            return self._corrupt(key, f"a key of the lease has the wrong type ({exc})")
        if code in _UNAVAILABLE_REPLIES or "cluster is down" in str(exc).lower():
            return StorageUnavailableError(f"Redis cannot serve the lease now: {exc}", key=key,
                                           backend=self.scheme)
        if code in ("MOVED", "ASK"):
            return StorageError(
                f"this Redis node does not own the lease's hash slot ({exc}); point the URL at "
                "the cluster node that does", key=key, backend=self.scheme,
            )
        return StorageError(f"Redis refused the command: {exc}", key=key, backend=self.scheme)

    def _version(self, key: str, raw: bytes) -> int:
        try:
            return int(raw)
        except ValueError as exc:
            raise self._corrupt(key, f"version {raw!r} is not an integer") from exc

    def _corrupt(self, key: str, problem: str) -> CorruptRecordError:
        return CorruptRecordError(
            f"stored lease record is corrupt: {problem}; delete the record to let electors "
            "recreate it",
            key=key, backend=self.scheme,
        )

    def _script(self, script: str, keys: tuple[str, str], *args: str | bytes) -> list[Any]:
        try:
            answer = self._command("EVALSHA", self._digests[script], 2, *keys, *args)
        except redis.exceptions.NoScriptError:
            answer = self._command("EVAL", script, 2, *keys, *args)
        return list(answer)

    def _command(self, *args: Any) -> Any:
        """Send one command on a pooled connection. Connecting errors propagate as
        :class:`_NotSentError`; errors after sending propagate unchanged."""
        try:
            connection = self._pool.get_connection()
        except redis.AuthenticationError:
            raise
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise _NotSentError(str(exc)) from exc
        try:
            connection.send_command(*args)  # type: ignore[no-untyped-call]
            return connection.read_response()
        except (redis.ConnectionError, redis.TimeoutError):
            connection.disconnect()  # type: ignore[no-untyped-call]
            raise
        finally:
            self._pool.release(connection)

    @contextmanager
    def _errors(self, key: str, *, write: bool) -> Iterator[None]:
        """Map redis-py's exceptions to the storage errors, chaining the cause."""
        where = self._pool.connection_kwargs.get("host", "the server")
        try:
            yield
        except StorageError:
            raise
        except redis.AuthenticationError as exc:
            raise StorageError(
                f"Redis at {where} refused the credentials: {exc}; check the URL's user and "
                "password", key=key, backend=self.scheme,
            ) from exc
        except _NotSentError as exc:
            raise StorageUnavailableError(
                f"cannot reach Redis at {where}: {exc}", key=key, backend=self.scheme
            ) from exc.__cause__
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if write:
                raise OutcomeUnknownError(
                    f"the connection to Redis at {where} failed after the write was sent ({exc}); "
                    "it may have been applied: re-read the record",
                    key=key, backend=self.scheme,
                ) from exc
            raise StorageUnavailableError(
                f"Redis at {where} did not answer: {exc}", key=key, backend=self.scheme
            ) from exc
        except redis.ResponseError as exc:
            raise self._refused(key, exc) from exc
        except redis.RedisError as exc:
            raise StorageError(f"Redis failed: {exc}", key=key, backend=self.scheme) from exc


class _NotSentError(Exception):
    """Connecting failed: nothing reached the server."""


def _parse_options(url: str, parts: urllib.parse.SplitResult) -> dict[str, str]:
    if parts.scheme not in ("redis", "rediss") or not parts.hostname or parts.fragment:
        raise ConfigurationError(
            f"invalid redis URL {url!r}: expected redis://[[user]:password@]host[:port][/db]"
            "[?prefix=NAME&timeout=SECONDS] or rediss://... for TLS"
        )
    if parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise ConfigurationError(f"invalid redis URL {url!r}: the path must be a database number")
    options = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(options) - _OUR_OPTIONS - _PASSED_OPTIONS
    if unknown:
        raise ConfigurationError(
            f"unknown redis URL option(s) {sorted(unknown)} in {url!r}; supported: "
            f"{', '.join(sorted(_OUR_OPTIONS | _PASSED_OPTIONS))}"
        )
    if parts.scheme == "redis" and set(options) & _TLS_OPTIONS:
        raise ConfigurationError(f"TLS options need the rediss:// scheme in {url!r}")
    return options

