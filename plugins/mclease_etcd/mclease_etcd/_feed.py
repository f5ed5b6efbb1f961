"""The change feed of an etcd store: one prefix watch on a channel of its own, probed while idle.

Establishing: each attempt makes a new client (so it authenticates with the password file's
current content) of one endpoint, taking the URL's endpoints in turn, and opens one ``Watch``
stream with one watcher of the range ``[<prefix>/, <prefix>0)`` from the current revision, with
the ``hasleader`` metadata (a member that lost its leader ends the stream instead of going quiet,
as etcdctl's watches do). The feed reports :data:`RESYNC` when etcd answers ``created``: the watch
then covers every revision after that answer's, so a write acknowledged after the resync is
reported. A watch is not resumed from its last revision after a gap: the resync that must follow
any gap makes the consumer read anyway.

Events: a ``PUT`` is reported with its value decoded like :meth:`EtcdStorage.read` does (the
key's ``mod_revision`` as version), ``record=None`` if it does not decode; a ``DELETE`` as
``record=None``. Keys come back without the prefix; keys no ``read`` could name (not UTF-8, or
invalid) are not reported.

Liveness: etcd says nothing on an idle watch (its own progress notifications come every ten
minutes), so whenever the stream has been silent for half the ``timeout`` (:data:`PROBE`) the
feed sends a progress request, which etcd answers at once with an empty response. After twice the
``timeout`` (:data:`SILENCE`) without any answer (a frozen server, a dropped link) the feed is
disconnected: it cancels the call, logs one warning, and re-establishes itself from ``next``
after the backoff of :class:`~mclease_core.plugin.Reconnection` (refused credentials:
:data:`REFUSED_PAUSE`), then resyncs. An attempt whose ``created`` does not come
within ``timeout`` counts as failed. gRPC keepalive is not used for this: etcd
(``--grpc-keepalive-min-time``, 5 s by default) closes a connection that pings more often than
that, too slow for a one-second ``timeout``.

Threads: the gRPC response iterator blocks, so each stream has a reader thread that puts what it
receives on a queue; the probes are sent by gRPC's own request thread, from the request
generator. ``next`` only waits on that queue (and, once per attempt, for an authentication RPC
with the ``timeout`` deadline); ``close`` cancels the call and closes the channel, which never
waits for the server.

Not here: deciding anything from the events (the consumer's, see ``mclease_core._changes``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pyetcd import etcdrpc  # type: ignore[import-untyped]
from pyetcd.etcdrpc import kv_pb2  # type: ignore[import-untyped]

from mclease_core.plugin import (
    FEED_PROBE,
    FEED_SILENCE,
    RESYNC,
    Change,
    ChangeFeed,
    ConfigurationError,
    CorruptRecordError,
    InvalidKeyError,
    LeaseObject,
    MCLeaseError,
    Reconnection,
    StorageError,
    decode_lease_data,
    validate_key,
)

if TYPE_CHECKING:
    from ._storage import EtcdStorage

log = logging.getLogger("mclease.etcd")

PROBE = FEED_PROBE
SILENCE = FEED_SILENCE
REFUSED_PAUSE = 5.0
"""Seconds before another attempt after etcd refused the credentials: each costs etcd a password
hash, and only a rotated password file can help."""

_DELETE = kv_pb2.Event.DELETE
_ENDED = object()
"""Put on a stream's queue when etcd ended the stream without an error."""


class _Stream:
    """One ``Watch`` RPC of one client: the create request and the probes go out from the request
    generator; what comes back lands on ``responses`` (then an exception or :data:`_ENDED`)."""

    def __init__(self, client: Any, where: str, prefix: bytes, probe: float) -> None:
        self.client = client
        self.where = where
        self.responses: queue.Queue[Any] = queue.Queue()
        self.started = self.heard = time.monotonic()
        """When the stream was opened, and when etcd last sent anything on it."""
        self._probe = probe
        self._probed = 0.0
        self._stopped = threading.Event()
        create = etcdrpc.WatchCreateRequest(key=prefix, range_end=_range_end(prefix))
        stub = etcdrpc.WatchStub(client.channel)
        self._call = stub.Watch(
            self._requests(etcdrpc.WatchRequest(create_request=create)),
            credentials=client.call_credentials,
            metadata=(*(client.metadata or ()), ("hasleader", "true")),
        )
        threading.Thread(target=self._read, name="mclease-etcd-watch", daemon=True).start()

    def cancel(self) -> None:
        """End the call and close the channel; neither waits for the server."""
        self._stopped.set()
        self._call.cancel()
        self.client.close()

    def _requests(self, create: Any) -> Iterator[Any]:
        """Run by gRPC's request thread until :meth:`cancel`: the create, then a progress request
        whenever etcd has said nothing for ``probe`` seconds (and none went out meanwhile)."""
        yield create
        while not self._stopped.wait(max(0.0, self._until_probe())):
            if self._until_probe() <= 0:
                self._probed = time.monotonic()
                yield etcdrpc.WatchRequest(progress_request=etcdrpc.WatchProgressRequest())

    def _until_probe(self) -> float:
        return max(self.heard, self._probed) + self._probe - time.monotonic()

    def _read(self) -> None:
        try:
            for response in self._call:
                self.heard = time.monotonic()
                self.responses.put(response)
        except Exception as exc:  # an RpcError: cancelled, unavailable, ...
            self.responses.put(exc)
        else:
            self.responses.put(_ENDED)


class EtcdFeed(ChangeFeed):
    """The changes under one :class:`EtcdStorage`'s prefix, from a watch it re-establishes."""

    def __init__(self, storage: EtcdStorage) -> None:
        self._storage = storage
        config = storage.config
        self._prefix = f"{config.prefix}/".encode()
        self._timeout = config.timeout
        self._lock = threading.Lock()
        self._woken = threading.Event()
        """Set by :meth:`close`, to end a pause between attempts."""
        self._closed = False
        self._stream: _Stream | None = None
        self._live = False
        """Whether etcd answered ``created`` on ``_stream``."""
        self._attempts = 0
        self._reconnection = Reconnection(log, "the etcd store")

    @property
    def connected(self) -> bool:
        stream = self._stream
        return (
            stream is not None
            and self._live
            and time.monotonic() - stream.heard < SILENCE * self._timeout
        )

    def next(self, timeout: float) -> list[Change]:
        deadline = time.monotonic() + timeout
        changes: list[Change] = []
        while not changes and not self._closed:
            if self._stream is None and self._reconnection.due():
                self._open()
            stream = self._stream
            if stream is not None:
                changes = self._receive(stream, deadline)
            elif time.monotonic() < deadline:
                self._woken.wait(min(self._reconnection.retry_at, deadline) - time.monotonic())
            if time.monotonic() >= deadline:
                break
        return changes

    def close(self) -> None:
        with self._lock:
            self._closed = True
            stream, self._stream = self._stream, None
        self._woken.set()
        if stream is not None:
            stream.cancel()

    # ----- establishing and losing the watch --------------------------------------------------

    def _open(self) -> None:
        """One attempt: a new client of the next endpoint, and a watch on it (``created`` is
        awaited by :meth:`_receive`). Blocks at most ``timeout`` (authentication)."""
        endpoints = self._storage.config.endpoints
        endpoint = endpoints[self._attempts % len(endpoints)]
        self._attempts += 1
        try:
            with self._storage._errors(None, write=False):
                client = self._storage._new_client((endpoint,))
                try:
                    where = f"{endpoint[0]}:{endpoint[1]}"
                    stream = _Stream(client, where, self._prefix, PROBE * self._timeout)
                except BaseException:
                    client.close()
                    raise
        except MCLeaseError as exc:
            self._failed(_reason(exc), refused=isinstance(exc, ConfigurationError))
            return
        with self._lock:
            if not self._closed:
                self._stream, self._live = stream, False
                return
        stream.cancel()

    def _drop(self, stream: _Stream, reason: str) -> None:
        stream.cancel()
        with self._lock:
            if self._stream is stream:
                self._stream, self._live = None, False
        if not self._closed:  # else it is the end of the call close() cancelled
            self._failed(reason)

    def _failed(self, reason: str, *, refused: bool = False) -> None:
        self._reconnection.failed(reason, pause=REFUSED_PAUSE if refused else None)

    # ----- what the stream brings -------------------------------------------------------------

    def _receive(self, stream: _Stream, deadline: float) -> list[Change]:
        """Handle what ``stream`` delivers until ``deadline``, or until the first changes and
        whatever came with them; drop the stream when etcd is silent too long."""
        changes: list[Change] = []
        while self._stream is stream:
            until = time.monotonic() if changes else min(deadline, self._give_up_at(stream))
            try:
                item = stream.responses.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                if not changes and time.monotonic() >= self._give_up_at(stream):
                    self._drop(stream, self._silence(stream))
                break
            changes += self._handle(stream, item)
        return changes

    def _give_up_at(self, stream: _Stream) -> float:
        if self._live:
            return stream.heard + SILENCE * self._timeout
        return stream.started + self._timeout

    def _silence(self, stream: _Stream) -> str:
        if self._live:
            silent = time.monotonic() - stream.heard
            return f"etcd at {stream.where} answered nothing for {silent:.1f}s"
        return f"etcd at {stream.where} did not create the watch within {self._timeout:g}s"

    def _handle(self, stream: _Stream, item: Any) -> list[Change]:
        if item is _ENDED:
            self._drop(stream, f"etcd at {stream.where} ended the watch stream")
            return []
        if isinstance(item, BaseException):
            self._drop(stream, _reason(self._storage._rpc_failed(item, None, write=False)))
            return []
        if item.canceled or item.compact_revision:
            why = self._storage._scrub(item.cancel_reason) or "no reason given"
            self._drop(stream, f"etcd at {stream.where} cancelled the watch ({why})")
            return []
        changes = [change for event in item.events if (change := self._change(event))]
        if item.created:
            self._live = True
            self._reconnection.established(stream.where)
            return [RESYNC, *changes]
        return changes  # a progress answer has none

    def _change(self, event: Any) -> Change | None:
        full = bytes(event.kv.key)
        if not full.startswith(self._prefix):
            return None
        try:
            key = validate_key(full[len(self._prefix) :].decode("utf-8"))
        except (UnicodeDecodeError, InvalidKeyError):
            return None  # no read() can name it
        if event.type == _DELETE:
            return Change(key)
        return Change(key, self._decoded(key, event.kv))

    def _decoded(self, key: str, kv: Any) -> LeaseObject | None:
        try:
            data = decode_lease_data(bytes(kv.value), key=key, backend=self._storage.config.scheme)
        except CorruptRecordError:
            return None  # reported as unknown: a read of it raises
        return LeaseObject(data, int(kv.mod_revision))


def _reason(error: MCLeaseError) -> str:
    """What went wrong, without the ``(backend=etcd)`` a storage error appends."""
    return error.message if isinstance(error, StorageError) else str(error)


def _range_end(prefix: bytes) -> bytes:
    """The end of the key range of ``prefix`` (which ends with ``/``, so no carry)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])
