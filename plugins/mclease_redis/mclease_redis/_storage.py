"""``redis://[user@]host:port/db?prefix=P&timeout=S&password_file=F`` (``rediss://`` for TLS).

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

The password (and an ACL user name) comes from exactly one of the URL's user info, the option
``password_file=`` (a mounted Secret) or ``$MCLEASE_STORAGE_PASSWORD``, resolved by the core's
:func:`mclease_core._urls.credentials`. redis-py asks a credential provider for them on every new
connection, and ours reads the files again then: a rotated Secret is used by the next connection,
while connected ones stay authenticated. The URL handed to redis-py has no user info, every
message names the URL through :func:`redact`, and a refused password is a
:class:`ConfigurationError` (retrying cannot help) that says where the password came from.

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
from redis.credentials import CredentialProvider
from redis.retry import Retry

from mclease_core import (
    CREDENTIAL_OPTIONS,
    PASSWORD_ENV,
    Capabilities,
    ConfigurationError,
    CorruptRecordError,
    Credentials,
    LeaseAlreadyExistsError,
    LeaseConflictError,
    LeaseData,
    LeaseNotFoundError,
    LeaseObject,
    OutcomeUnknownError,
    Storage,
    StorageError,
    StorageUnavailableError,
    credentials,
    decode_lease_data,
    encode_lease_data,
    redact,
    reject_stray_at,
    seconds_option,
    url_options,
    validate_key,
)
from mclease_core._limits import excerpt

from . import _scripts

DEFAULT_PREFIX = "mclease"
DEFAULT_TIMEOUT = 5.0
_OUR_OPTIONS = {"prefix", "timeout"}
_TLS_OPTIONS = {
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
}
_PASSED_OPTIONS = _TLS_OPTIONS | {"client_name"}
_USAGE = (
    "expected redis://[user@]host[:port][/db][?prefix=NAME&timeout=SECONDS&password_file=PATH"
    "&username_file=PATH] (or the password in $MCLEASE_STORAGE_PASSWORD, or "
    "redis://[user]:password@host...) or rediss://... for TLS"
)
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
        self._digests = {
            script: _scripts.sha1(script)
            for script in (_scripts.CREATE, _scripts.UPDATE, _scripts.DELETE)
        }

    @classmethod
    def from_url(cls, url: str) -> RedisStorage:
        """Open a store from a ``redis://`` or ``rediss://`` URL without connecting (but reading
        a ``password_file``, so that a wrong path fails here)."""
        parts = urllib.parse.urlsplit(url)
        options = _parse_options(url, parts)
        provider = _credential_provider(credentials(parts, options, backend="redis"))
        prefix = options.pop("prefix", DEFAULT_PREFIX)
        timeout = seconds_option(options, "timeout", DEFAULT_TIMEOUT, url=url, backend="redis")
        for name in ("timeout", *CREDENTIAL_OPTIONS):
            options.pop(name, None)
        # redis-py never sees the user info: the provider hands it the credentials
        anonymous = parts._replace(
            netloc=parts.netloc.rpartition("@")[2], query=urllib.parse.urlencode(options)
        )
        try:  # redis-py parses the options it knows, ``timeout`` (a float) among them
            kwargs = parse_url(urllib.parse.urlunsplit(anonymous))  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise ConfigurationError(f"invalid redis URL {redact(url)!r}: {exc}") from exc
        kwargs.pop("timeout", None)
        pool = ConnectionPool(
            **kwargs,
            credential_provider=provider,
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
                key=key,
                backend=self.scheme,
            )
        if status == _scripts.MISMATCH:
            stored = answer[1].decode("ascii", "replace")
            raise LeaseConflictError(
                f"expected version {expected}, stored version is {stored}",
                key=key,
                backend=self.scheme,
            )

    @property
    def _provider(self) -> _FileCredentials | None:
        provider = self._pool.connection_kwargs.get("credential_provider")
        return provider if isinstance(provider, _FileCredentials) else None

    def _credentials_refused(
        self, where: str, exc: redis.AuthenticationError
    ) -> ConfigurationError:
        provider = self._provider
        if provider is None:
            return ConfigurationError(
                f"Redis at {where} requires a password; give it with password_file=PATH, "
                f"${PASSWORD_ENV} or the URL"
            )
        found = provider.credentials
        user = f" and the user name {found.username!r}" if found.username else ""
        return ConfigurationError(
            f"Redis at {where} refused the credentials ({excerpt(self._detail(exc), 80)}); "
            f"check the password in {found.password_from}{user}"
        )

    def _detail(self, exc: BaseException) -> str:
        """A redis-py error's text, with the password scrubbed should a server ever echo it."""
        provider = self._provider
        return provider.scrub(str(exc)) if provider is not None else str(exc)

    def _refused(self, key: str, exc: redis.ResponseError) -> StorageError:
        """An error reply: nothing was applied. Busy or failing-over servers are unavailable."""
        detail = self._detail(exc)
        code = detail.split(" ", 1)[0].upper()
        if code == "WRONGTYPE":
            return self._corrupt(key, f"a key of the lease has the wrong type ({detail})")
        if code in _UNAVAILABLE_REPLIES or "cluster is down" in detail.lower():
            return StorageUnavailableError(
                f"Redis cannot serve the lease now: {detail}", key=key, backend=self.scheme
            )
        if code in ("MOVED", "ASK"):
            return StorageError(
                f"this Redis node does not own the lease's hash slot ({detail}); point the URL at "
                "the cluster node that does",
                key=key,
                backend=self.scheme,
            )
        return StorageError(f"Redis refused the command: {detail}", key=key, backend=self.scheme)

    def _version(self, key: str, raw: bytes) -> int:
        try:
            return int(raw)
        except ValueError as exc:
            raise self._corrupt(key, f"version {raw!r} is not an integer") from exc

    def _corrupt(self, key: str, problem: str) -> CorruptRecordError:
        return CorruptRecordError(
            f"stored lease record is corrupt: {problem}; delete the record to let electors "
            "recreate it",
            key=key,
            backend=self.scheme,
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
            raise _NotSentError(self._detail(exc)) from exc
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
        except _CredentialsUnreadableError as exc:
            raise exc.error from exc.error.__cause__
        except redis.AuthenticationError as exc:
            raise self._credentials_refused(where, exc) from exc
        except _NotSentError as exc:
            raise StorageUnavailableError(
                f"cannot reach Redis at {where}: {exc}", key=key, backend=self.scheme
            ) from exc.__cause__
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if write:
                raise OutcomeUnknownError(
                    f"the connection to Redis at {where} failed after the write was sent "
                    f"({self._detail(exc)}); it may have been applied: re-read the record",
                    key=key,
                    backend=self.scheme,
                ) from exc
            raise StorageUnavailableError(
                f"Redis at {where} did not answer: {self._detail(exc)}",
                key=key,
                backend=self.scheme,
            ) from exc
        except redis.ResponseError as exc:
            raise self._refused(key, exc) from exc
        except redis.RedisError as exc:
            raise StorageError(
                f"Redis failed: {self._detail(exc)}", key=key, backend=self.scheme
            ) from exc


class _NotSentError(Exception):
    """Connecting failed: nothing reached the server."""


class _CredentialsUnreadableError(redis.RedisError):
    """A credential file could not be read while connecting. A RedisError, so that redis-py
    closes the half-open connection; :meth:`RedisStorage._errors` raises ``error`` instead."""

    def __init__(self, error: ConfigurationError):
        super().__init__(str(error))
        self.error = error


class _FileCredentials(CredentialProvider):
    """Hands redis-py the credentials, reading a ``password_file`` again for every connection."""

    def __init__(self, credentials: Credentials):
        self.credentials = credentials
        self.latest = credentials

    def scrub(self, text: str) -> str:
        return self.latest.scrub(self.credentials.scrub(text))

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        try:
            current = self.latest = self.credentials.current()
        except ConfigurationError as exc:
            raise _CredentialsUnreadableError(exc) from exc
        assert current.password is not None  # _credential_provider checked it
        if current.username:
            return current.username, current.password
        return (current.password,)


def _credential_provider(found: Credentials) -> _FileCredentials | None:
    if found.password is None:
        if found.username is not None:
            raise ConfigurationError(
                f"the redis user name {found.username!r} needs a password too: give it with "
                f"password_file=PATH, ${PASSWORD_ENV} or redis://user:password@host"
            )
        return None
    return _FileCredentials(found)


def _parse_options(url: str, parts: urllib.parse.SplitResult) -> dict[str, str]:
    reject_stray_at(url, backend="redis")
    if parts.scheme not in ("redis", "rediss") or not parts.hostname or parts.fragment:
        raise ConfigurationError(f"invalid redis URL {redact(url)!r}: {_USAGE}")
    if parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise ConfigurationError(
            f"invalid redis URL {redact(url)!r}: the path must be a database number"
        )
    options = url_options(url, _OUR_OPTIONS | _PASSED_OPTIONS | CREDENTIAL_OPTIONS, backend="redis")
    if parts.scheme == "redis" and set(options) & _TLS_OPTIONS:
        raise ConfigurationError(f"TLS options need the rediss:// scheme in {redact(url)!r}")
    return options
