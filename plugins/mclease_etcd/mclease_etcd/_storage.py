"""``etcd://[user@]host:2379[,host2:2379]/prefix[?timeout=S&password_file=F]`` (``etcds://``: TLS).

A lease is one etcd key, ``<prefix>/<lease key>``, whose value is the encoded record. Its version
is the key's ``mod_revision``: etcd's revision counter is cluster-wide and never goes back, so
versions grow across delete and recreate without a counter of our own. Each write is one
transaction: create compares ``create_revision == 0``, update and delete compare ``mod_revision``
with the expected version; a successful put reads its own ``mod_revision`` back in the same
transaction. Reads are linearizable (etcd's default).

The client is ``etcd-sdk-python`` (imported as ``pyetcd``, python-etcd3's API on gRPC; see the
README for why). Every RPC carries a deadline of ``timeout`` seconds. The client connects lazily,
re-authenticates when etcd expires its token, and reconnects within a second after an outage.
A write whose RPC failed after it may have reached etcd raises :class:`OutcomeUnknownError`; a
failure to connect raises :class:`StorageUnavailableError`.

Credentials: each new client (the first call, and every re-authentication after etcd expired or
revoked the token; changing a user's password revokes its tokens) reads a ``password_file`` again,
so a rotated Secret is picked up without a restart. Over plain ``etcd://`` the token travels as
call metadata only (gRPC refuses call credentials on an insecure channel, so pyetcd's own way
fails every call there). A refused user or password is a :class:`ConfigurationError`: retrying
cannot help. Texts from gRPC are scrubbed of the password before they reach a message.

``watch()`` is a prefix watch on a channel of its own, probed with progress requests (see
:mod:`._feed`).

Not here: leases with etcd TTLs. Expiry is decided by the elector's own clock, never by the store,
so a plain key is all the backend needs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc
import pyetcd  # type: ignore[import-untyped]

from mclease_core.plugin import (
    Capabilities,
    ChangeFeed,
    ConfigurationError,
    ErrorMap,
    LeaseConflictError,
    LeaseData,
    LeaseObject,
    MCLeaseError,
    Storage,
    StorageError,
    already_exists,
    conflict,
    decode_lease_data,
    encode_lease_data,
    map_errors,
    not_found,
    outcome_unknown,
    permission_denied,
    unavailable,
    validate_key,
)

from ._config import EtcdConfig
from ._feed import EtcdFeed

_T = TypeVar("_T")

_CHANNEL_OPTIONS = [
    # After an outage, reconnect within a second instead of grpc's default of up to two minutes.
    # (Not grpc.min_reconnect_backoff_ms: it is also the connect timeout.)
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
_NOT_SENT_MARKERS = ("failed to connect", "connection refused", "dns resolution failed")
_CREDENTIALS_REFUSED = ("authentication failed", "user name is empty")


class EtcdStorage(Storage):
    """Lease records as etcd keys, written with compare-and-swap transactions."""

    def __init__(self, config: EtcdConfig):
        self.config = config
        self._credentials = config.channel_credentials()  # reads the TLS files: fail early
        self._lock = threading.Lock()
        self._client: Any = None
        self._latest = config.credentials  # as last read, for scrubbing messages

    @classmethod
    def from_url(cls, url: str) -> EtcdStorage:
        """Open a store from an ``etcd://`` or ``etcds://`` URL without connecting."""
        return cls(EtcdConfig.from_url(url))

    @property
    def capabilities(self) -> Capabilities:
        # at most two RPCs (authenticate, then the operation), and one retry on an expired token
        return Capabilities(operation_timeout=3 * self.config.timeout + 1, watch=True)

    def watch(self) -> ChangeFeed:
        """A prefix watch of this store's keys; it connects on its first ``next``."""
        return EtcdFeed(self)

    def full_key(self, key: str) -> bytes:
        validate_key(key)
        prefix = self.config.prefix
        return (f"{prefix}/{key}" if prefix else key).encode("utf-8")

    # ----- the four operations ---------------------------------------------------------------

    def read(self, key: str) -> LeaseObject:
        full = self.full_key(key)
        value, meta = self._run(key, False, lambda client: client.get(full))
        if meta is None:
            raise not_found(key, self.config.scheme)
        data = decode_lease_data(value, key=key, backend=self.config.scheme)
        return LeaseObject(data, meta.mod_revision)

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        full = self.full_key(key)
        succeeded, version = self._put_if(key, full, encode_lease_data(data), "create", 0)
        if not succeeded:
            raise already_exists(key, self.config.scheme)
        return LeaseObject(data, version)

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        full = self.full_key(key)
        self._check_positive(key, version)
        succeeded, new_version = self._put_if(key, full, encode_lease_data(data), "mod", version)
        if not succeeded:
            raise self._conflict(key, version)
        return LeaseObject(data, new_version)

    def delete(self, key: str, *, version: int) -> None:
        full = self.full_key(key)
        self._check_positive(key, version)

        def transaction(client: Any) -> bool:
            compare = [client.transactions.mod(full) == version]
            succeeded, _ = client.transaction(
                compare=compare, success=[client.transactions.delete(full)], failure=[]
            )
            return bool(succeeded)

        if not self._run(key, True, transaction):
            raise self._conflict(key, version)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # ----- helpers -----------------------------------------------------------------------------

    def _put_if(
        self, key: str, full: bytes, raw: bytes, target: str, expected: int
    ) -> tuple[bool, int]:
        """Put ``raw`` if the key's ``target`` revision equals ``expected``; return whether it
        did and the new ``mod_revision`` (read back inside the same transaction)."""

        def transaction(client: Any) -> tuple[bool, int]:
            compare = [getattr(client.transactions, target)(full) == expected]
            success = [client.transactions.put(full, raw), client.transactions.get(full)]
            succeeded, responses = client.transaction(compare=compare, success=success, failure=[])
            if not succeeded:
                return False, 0
            ((_, meta),) = responses[1]
            return True, int(meta.mod_revision)

        return self._run(key, True, transaction)

    def _check_positive(self, key: str, version: int) -> None:
        # mod_revision == 0 would match a missing key and turn an update into a create.
        if version < 1:
            raise self._conflict(key, version)

    def _conflict(self, key: str, expected: int) -> LeaseConflictError:
        return conflict(key, self.config.scheme, expected=expected)

    def _run(self, key: str, write: bool, operation: Callable[[Any], _T]) -> _T:
        """Run ``operation`` on the client, re-authenticating once if etcd expired our token."""
        with self._errors(key, write):
            client = self._connect()
            try:
                return operation(client)
            except grpc.RpcError as exc:
                if not _token_expired(exc):
                    raise
            self._forget(client)  # etcd refused the token before acting: safe to retry once
            return operation(self._connect())

    def _connect(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _forget(self, client: Any) -> None:
        """Drop ``client`` so the next call authenticates anew. It is not closed: other threads
        may still be using it; its channel closes when it is collected."""
        with self._lock:
            if self._client is client:
                self._client = None

    def _new_client(self, endpoints: tuple[tuple[str, int], ...] | None = None) -> Any:
        """A client of ``endpoints`` (default: all of the URL's), authenticated if the URL has a
        user; the authentication is an RPC with the ``timeout`` deadline."""
        config, credentials = self.config, self._credentials
        chosen = endpoints or config.endpoints
        user, password = config.user, config.password
        if config.credentials is not None:
            current = self._latest = config.credentials.current()  # a rotated file's content
            user, password = current.username, current.password
        members = [
            pyetcd.Endpoint(
                host,
                port,
                secure=credentials is not None,
                creds=credentials,
                # pyetcd skips a failed endpoint for time_retry seconds; with one endpoint that
                # would refuse every call for that long, so only skip when there are others.
                time_retry=0.0 if len(chosen) == 1 else 2.0,
                opts=_CHANNEL_OPTIONS,
            )
            for host, port in chosen
        ]
        client = pyetcd.MultiEndpointEtcd3Client(
            endpoints=members,
            timeout=config.timeout,
            user=user,
            password=password,
            failover=len(members) > 1,
        )
        if credentials is None:  # the token goes as plain metadata (as etcdctl sends it)
            client.call_credentials = None
        return client

    @contextmanager
    def _errors(self, key: str | None, write: bool) -> Iterator[None]:
        """Map pyetcd's and grpc's exceptions to the storage errors, chaining the cause."""
        backend = self.config.scheme
        nobody = f"no etcd endpoint of {self.config.where} is reachable now"
        mapping: ErrorMap = {
            pyetcd.exceptions.NoServerAvailableError: lambda exc: unavailable(
                nobody, key=key, backend=backend
            ),
            (pyetcd.exceptions.Etcd3Exception, grpc.RpcError): lambda exc: self._rpc_failed(
                exc, key, write
            ),
        }
        with map_errors(mapping, key=key, backend=backend):
            yield

    def _rpc_failed(self, exc: BaseException, key: str | None, write: bool) -> MCLeaseError:
        code, details = _grpc_status(exc)
        details = self._scrub(details)
        if code == grpc.StatusCode.INVALID_ARGUMENT and any(
            marker in details for marker in _CREDENTIALS_REFUSED
        ):
            return self._credentials_refused(details)
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return permission_denied(
                f"etcd at {self.config.where} refused the operation ({details}); grant the "
                f"user read and write access to the prefix {self.config.prefix!r}"
            )
        where = f"etcd at {self.config.where}"
        return _mapped(code, details, write, where, key, self.config.scheme)

    def _scrub(self, text: str) -> str:
        for found in (self.config.credentials, self._latest):
            text = found.scrub(text) if found is not None else text
        return text

    def _credentials_refused(self, details: str) -> ConfigurationError:
        found = self.config.credentials
        if found is None:
            return ConfigurationError(
                f"etcd at {self.config.where} requires authentication ({details}); give the user "
                "with username_file=PATH, $MCLEASE_STORAGE_USERNAME or etcd://user@host and the "
                "password with password_file=PATH or $MCLEASE_STORAGE_PASSWORD"
            )
        return permission_denied(
            f"etcd at {self.config.where} refused the credentials ({details}); check the user "
            f"name {found.username!r} and the password in {found.password_from}"
        )


def _grpc_status(exc: BaseException) -> tuple[grpc.StatusCode | None, str]:
    """The gRPC status behind ``exc``: pyetcd raises its own exception from the RpcError."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, grpc.RpcError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None, str(exc)
    code = cause.code() if hasattr(cause, "code") else None
    details = cause.details() if hasattr(cause, "details") else str(cause)
    return code, str(details or "")


def _token_expired(exc: grpc.RpcError) -> bool:
    code, details = _grpc_status(exc)
    return code == grpc.StatusCode.UNAUTHENTICATED and "token" in details


def _mapped(
    code: grpc.StatusCode | None,
    details: str,
    write: bool,
    where: str,
    key: str | None,
    backend: str,
) -> StorageError:
    transient = (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    if code not in transient:
        name = code.name if code is not None else "error"
        return StorageError(
            f"{where} refused the request ({name}: {details})", key=key, backend=backend
        )
    not_sent = code == grpc.StatusCode.RESOURCE_EXHAUSTED or (
        code == grpc.StatusCode.UNAVAILABLE
        and any(marker in details.lower() for marker in _NOT_SENT_MARKERS)
    )
    if write and not not_sent:
        return outcome_unknown(
            f"the write to {where} failed after it may have been sent ({code.name}: {details})",
            key=key,
            backend=backend,
        )
    return unavailable(f"{where} is unavailable ({code.name}: {details})", key=key, backend=backend)
