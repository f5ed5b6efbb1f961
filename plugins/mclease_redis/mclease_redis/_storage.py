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
:class:`~mclease_core.plugin.StorageURL` (the one URL parser). redis-py asks a credential
provider for them on every new connection, and ours reads the files again then: a rotated Secret
is used by the next connection, while connected ones stay authenticated. The URL handed to
redis-py has no user info (:meth:`StorageURL.without_credentials`), every message names the URL
redacted, and a refused password is a :class:`ConfigurationError` (retrying cannot help) that says
where the password came from. Every redis-py exception is mapped in one table
(:meth:`RedisStorage._error_map`, through :func:`~mclease_core.plugin.map_errors`).

Change feed (``watch()``, see ``_feed``): every write script also publishes the change (key,
version and encoded record) on the channel ``<prefix>:changes:db<N>``
(:attr:`RedisStorage.channel`; Pub/Sub ignores databases, so the number is in the name), and a
feed subscribes to it on a connection of its own. The ``PUBLISH`` cannot fail a write: a refusal
(an ACL user without the channel) is logged once per store, and feeds then miss this client's
writes.

Not for: stores that must survive a failover without losing writes. Redis replication is
asynchronous; a promoted replica can lack acknowledged writes, so two leaders are possible after a
failover (``may_lose_writes``). Nor for Redis Cluster client routing: point the URL at
the shard that owns the lease's slot, or at a single server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.connection import ConnectionPool, parse_url
from redis.credentials import CredentialProvider
from redis.retry import Retry

from mclease_core._limits import excerpt
from mclease_core.plugin import (
    PASSWORD_ENV,
    Capabilities,
    ChangeFeed,
    ConfigurationError,
    Credentials,
    ErrorMap,
    LeaseData,
    LeaseObject,
    MCLeaseError,
    Option,
    Storage,
    StorageError,
    StorageURL,
    already_exists,
    conflict,
    corrupt,
    decode_lease_data,
    encode_lease_data,
    map_errors,
    not_found,
    outcome_unknown,
    permission_denied,
    read_only,
    unavailable,
    validate_key,
)

from . import _scripts
from ._feed import RedisFeed

log = logging.getLogger("mclease.redis")

DEFAULT_PREFIX = "mclease"
DEFAULT_TIMEOUT = 5.0
PREFIX = Option.text("prefix", DEFAULT_PREFIX)
TIMEOUT = Option.seconds("timeout", DEFAULT_TIMEOUT)
_TLS_OPTIONS = tuple(
    Option.text(name, driver=True, tls_only=True)
    for name in (
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_cert_reqs",
        "ssl_check_hostname",
    )
)
OPTIONS: tuple[Option[Any], ...] = (
    PREFIX,
    TIMEOUT,
    Option.text("client_name", driver=True),
    *_TLS_OPTIONS,
)
"""The URL options: ours, and those handed through to redis-py (TLS ones only on rediss://)."""
_USAGE = (
    "expected redis://[user@]host[:port][/db][?prefix=NAME&timeout=SECONDS&password_file=PATH"
    "&username_file=PATH] (or the password in $MCLEASE_STORAGE_PASSWORD, or "
    "redis://[user]:password@host...) or rediss://... for TLS"
)
_RESP2 = 2
"""The protocol of every connection: RESP2, which every Redis from 5 on speaks (RESP3 needs
``HELLO``, Redis 6), and in which a Pub/Sub message is an ordinary array reply, whatever
redis-py's default (RESP2 in 5, RESP3 in 8)."""
_UNAVAILABLE_REPLIES = {"CLUSTERDOWN", "LOADING", "MASTERDOWN", "TRYAGAIN", "BUSY"}


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
        self.channel = channel(prefix, int(pool.connection_kwargs.get("db") or 0))
        """Where the write scripts announce each change, and the feeds listen."""
        self._announce_refused = False
        """Whether a refused ``PUBLISH`` was logged: once per store."""

    @classmethod
    def from_url(cls, url: str) -> RedisStorage:
        """Open a store from a ``redis://`` or ``rediss://`` URL without connecting (but reading
        a ``password_file``, so that a wrong path fails here)."""
        parsed = StorageURL.parse(
            url,
            backend="redis",
            schemes=("redis", "rediss"),
            options=OPTIONS,
            tls_schemes=("rediss",),
            usage=_USAGE,
        )
        database = parsed.path.strip("/")
        if database and not database.isdigit():
            raise parsed.error("the path must be a database number")
        provider = _credential_provider(parsed.credentials)
        timeout = parsed.get(TIMEOUT)
        # redis-py never sees the user info: the provider hands it the credentials
        try:  # redis-py parses the options it knows (the TLS ones, client_name)
            kwargs = parse_url(parsed.without_credentials())  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise parsed.error(str(exc)) from exc
        pool = ConnectionPool(
            **kwargs,
            credential_provider=provider,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            protocol=_RESP2,
        )
        return cls(pool, prefix=parsed.get(PREFIX), timeout=timeout, scheme=parsed.scheme)

    @property
    def capabilities(self) -> Capabilities:
        # connect, then at most two round trips (EVALSHA, and EVAL if the script was not loaded)
        return Capabilities(
            may_lose_writes=True, operation_timeout=3 * self.timeout + 1, watch=True
        )

    def watch(self) -> ChangeFeed:
        """A subscription to :attr:`channel` (see ``_feed``); connects on its first ``next``."""
        return RedisFeed(self)

    @property
    def where(self) -> str:
        """The server, for messages: ``host:port`` (no credentials), or the socket path."""
        options = self._pool.connection_kwargs
        if "path" in options:
            return str(options["path"])
        return f"{options.get('host', 'localhost')}:{options.get('port', 6379)}"

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
            raise not_found(key, self.scheme)
        if raw is None or version is None:
            raise corrupt(key, self.scheme, "the record hash lacks its data or version field")
        data = decode_lease_data(raw, key=key, backend=self.scheme)
        return LeaseObject(data, self._version(key, version))

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        keys = self.keys(key)
        with self._errors(key, write=True):
            answer = self._script(_scripts.CREATE, keys, key, encode_lease_data(data))
        if answer[0] != _scripts.CREATED:
            raise already_exists(key, self.scheme)
        self._check_announced(key, answer)
        return LeaseObject(data, int(answer[1]))

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        keys = self.keys(key)
        with self._errors(key, write=True):
            answer = self._script(_scripts.UPDATE, keys, key, str(version), encode_lease_data(data))
        self._check_swap(key, version, answer)
        self._check_announced(key, answer)
        return LeaseObject(data, int(answer[1]))

    def delete(self, key: str, *, version: int) -> None:
        keys = self.keys(key)
        with self._errors(key, write=True):
            answer = self._script(_scripts.DELETE, keys, key, str(version))
        self._check_swap(key, version, answer)
        self._check_announced(key, answer)

    def close(self) -> None:
        self._pool.disconnect()

    # ----- helpers -----------------------------------------------------------------------------

    def _check_swap(self, key: str, expected: int, answer: list[Any]) -> None:
        status = answer[0]
        if status == _scripts.MISSING_OR_PRESENT:
            raise conflict(key, self.scheme, expected=expected, missing=True)
        if status == _scripts.MISMATCH:
            stored = answer[1].decode("ascii", "replace")
            raise conflict(key, self.scheme, expected=expected, stored=stored)

    def _check_announced(self, key: str, answer: list[Any]) -> None:
        """A write is done whether or not its ``PUBLISH`` was refused; a refusal is logged once."""
        if len(answer) < 3 or self._announce_refused:
            return
        self._announce_refused = True
        refusal = self._detail(Exception(answer[2].decode("utf-8", "replace")))
        log.warning(
            "Redis at %s refused to publish the change of lease %r on channel %r (%s): change "
            "feeds of this prefix miss this client's writes; grant its ACL user the channel "
            "(ACL SETUSER <user> &%s)",
            self.where,
            key,
            self.channel,
            excerpt(refusal, 120),
            self.channel,
        )

    @property
    def _provider(self) -> _FileCredentials | None:
        provider = self._pool.connection_kwargs.get("credential_provider")
        return provider if isinstance(provider, _FileCredentials) else None

    def _credentials_refused(self, where: str, exc: Exception) -> ConfigurationError:
        provider = self._provider
        if provider is None:
            return ConfigurationError(
                f"Redis at {where} requires a password; give it with password_file=PATH, "
                f"${PASSWORD_ENV} or the URL"
            )
        found = provider.credentials
        user = f" and the user name {found.username!r}" if found.username else ""
        return permission_denied(
            f"Redis at {where} refused the credentials ({excerpt(self._detail(exc), 80)}); "
            f"check the password in {found.password_from}{user}"
        )

    def _detail(self, exc: BaseException) -> str:
        """A redis-py error's text, with the password scrubbed should a server ever echo it."""
        provider = self._provider
        return provider.scrub(str(exc)) if provider is not None else str(exc)

    def _refused(self, key: str | None, exc: Exception) -> MCLeaseError:
        """An error reply: nothing was applied. Busy or failing-over servers are unavailable,
        a replica is read-only, a missing ACL permission is a configuration error."""
        detail = self._detail(exc)
        code = detail.split(" ", 1)[0].upper()
        if code == "WRONGTYPE":
            return corrupt(key, self.scheme, f"a key of the lease has the wrong type ({detail})")
        if code == "READONLY":
            return read_only(f"Redis refused the write: {detail}", key=key, backend=self.scheme)
        if code == "NOPERM" or isinstance(exc, redis.exceptions.NoPermissionError):
            return permission_denied(  # redis-py strips the NOPERM code off its message
                "the Redis ACL user may not run the lease's commands or use its change channel "
                f"{self.channel!r}: {detail}"
            )
        if code in _UNAVAILABLE_REPLIES or "cluster is down" in detail.lower():
            return unavailable(
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
            raise corrupt(key, self.scheme, f"version {raw!r} is not an integer") from exc

    def _script(
        self, script: str, keys: tuple[str, str], key: str, *args: str | bytes
    ) -> list[Any]:
        """Run ``script`` on lease ``key``'s ``keys``; the change channel and ``key`` follow
        ``args`` (the scripts announce the change there)."""
        args = (*args, self.channel, key)
        try:
            answer = self._command("EVALSHA", self._digests[script], 2, *keys, *args)
        except redis.exceptions.NoScriptError:
            answer = self._command("EVAL", script, 2, *keys, *args)
        return list(answer)

    def _new_connection(self) -> Any:
        """A connection like the pool's (TLS, database, credential provider, timeouts), not
        connected and not the pool's: a change feed subscribes on it."""
        return self._pool.connection_class(**self._pool.connection_kwargs)

    def _describe(self, exc: Exception) -> str:
        """What a change feed's failure means, in the words of :meth:`_error_map` (scrubbed)."""
        try:
            with self._errors(None, write=False):
                raise exc
        except MCLeaseError as error:
            return str(error)
        except Exception:
            return f"{type(exc).__name__}: {excerpt(self._detail(exc), 200)}"
        raise AssertionError("unreachable")  # pragma: no cover

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
    def _errors(self, key: str | None, *, write: bool) -> Iterator[None]:
        """Map redis-py's exceptions to the storage errors, chaining the cause."""
        with map_errors(self._error_map(key, write=write), key=key, backend=self.scheme):
            yield

    def _error_map(self, key: str | None, *, write: bool) -> ErrorMap:
        """What each redis-py exception means for an operation on ``key``: before anything was
        sent (connecting) it is unavailable; after a write was sent, outcome unknown."""
        where = self._pool.connection_kwargs.get("host", "the server")
        backend = self.scheme

        def lost(exc: Exception) -> MCLeaseError:
            detail = self._detail(exc)
            if write:
                return outcome_unknown(
                    f"the connection to Redis at {where} failed after the write was sent "
                    f"({detail})",
                    key=key,
                    backend=backend,
                )
            return unavailable(
                f"Redis at {where} did not answer: {detail}", key=key, backend=backend
            )

        return {
            _CredentialsUnreadableError: lambda exc: _unwrap(exc),
            redis.AuthenticationError: lambda exc: self._credentials_refused(where, exc),
            _NotSentError: lambda exc: unavailable(
                f"cannot reach Redis at {where}: {exc}", key=key, backend=backend
            ),
            (redis.ConnectionError, redis.TimeoutError): lost,
            redis.ResponseError: lambda exc: self._refused(key, exc),
            redis.RedisError: lambda exc: StorageError(
                f"Redis failed: {self._detail(exc)}", key=key, backend=backend
            ),
        }


def channel(prefix: str, database: int) -> str:
    """The change channel of ``prefix`` in ``database``: ``<prefix>:changes:db<N>``, the prefix
    escaped like in keys. One name per (prefix, database): the name ends in the only
    ``:changes:db`` that is followed by digits alone."""
    return f"{escape(prefix)}:changes:db{database}"


def _unwrap(exc: Exception) -> ConfigurationError:
    assert isinstance(exc, _CredentialsUnreadableError)
    return exc.error


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
