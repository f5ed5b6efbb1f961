"""The change feed of a Redis store: a subscription to the channel its write scripts publish on.

Every create, update and delete script ends with one ``PUBLISH`` to the store's channel (see
``_scripts``; the channel is named after the prefix and the database, since Pub/Sub ignores
databases), inside the script, so the messages come in the order the writes were applied and carry
what a read of that version returns: the key, the new version and the encoded record (a delete:
the key alone). A feed needs no read per change. Keyspace notifications are not used: they need
``notify-keyspace-events``, a server setting managed Redis services often do not let one change.

Establishing: each attempt makes a new connection of the store's kind (so TLS, the database and
the credential provider, which reads a password file anew, are those of the store's pool, but the
connection is not the pool's), sends ``SUBSCRIBE`` and waits up to ``timeout`` for the server's
confirmation. Only then is :data:`RESYNC` reported: the subscription is registered, so every write
applied after the confirmation is delivered. Pub/Sub is at most once: a message published while
no subscription exists is gone, so nothing is resumed after a gap; the resync that must follow any
gap makes the consumer read anyway.

Liveness: an idle subscription hears nothing, so whenever the server has said nothing for half
the ``timeout`` (:data:`PROBE`) the feed sends ``PING`` on it, which Redis answers at once (even
while subscribed). After twice the ``timeout`` (:data:`SILENCE`) without anything from the server
(a frozen server, a dropped link) the feed is disconnected: it closes the socket, logs one
warning, and re-establishes itself from ``next`` after the backoff of
:class:`~mclease_core.plugin.Reconnection` (shared with the etcd feed), then resyncs. A socket
error (the server closed the connection, restarted, or dropped a subscriber whose output
buffer overflowed) does the same at once. A subscription redis-py's ``PubSub`` would keep is not
used, because it re-subscribes on its own after a reconnect: the gap would go unreported.

Threads: none. ``next`` waits on the socket (``can_read``) for at most the time left to its own
deadline or to the next probe; one attempt to establish blocks at most for the connect and one
answer (``timeout`` each). ``close`` only closes the socket, which never waits for the server.

Not here: deciding anything from the messages (the consumer's, see ``mclease_core._changes``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import redis

from mclease_core.plugin import (
    FEED_PROBE,
    FEED_SILENCE,
    RESYNC,
    Change,
    ChangeFeed,
    CorruptRecordError,
    InvalidKeyError,
    LeaseObject,
    MCLeaseError,
    Reconnection,
    decode_lease_data,
    validate_key,
)

if TYPE_CHECKING:
    from ._storage import RedisStorage

log = logging.getLogger("mclease.redis")

PROBE = FEED_PROBE
SILENCE = FEED_SILENCE


class RedisFeed(ChangeFeed):
    """The changes under one :class:`RedisStorage`'s prefix, from a subscription it renews."""

    def __init__(self, storage: RedisStorage) -> None:
        self._storage = storage
        self._channel = storage.channel.encode("utf-8")
        self._timeout = storage.timeout
        self._lock = threading.Lock()
        self._woken = threading.Event()
        """Set by :meth:`close`, to end a pause between attempts."""
        self._closed = False
        self._connection: Any = None
        """The subscribed connection (a ``redis.Connection``), or ``None`` between attempts."""
        self._heard = 0.0
        self._probed = 0.0
        """When the server last sent anything on the connection, and when the last PING went."""
        self._reconnection = Reconnection(
            log, f"Redis at {storage.where}, channel {storage.channel!r}"
        )
        self._garbled = False
        """Whether a message that is not ours was logged on this subscription."""

    @property
    def connected(self) -> bool:
        return self._connection is not None and time.monotonic() < self._give_up_at()

    def next(self, timeout: float) -> list[Change]:
        deadline = time.monotonic() + timeout
        changes: list[Change] = []
        while not changes and not self._closed:
            if self._connection is None and self._reconnection.due():
                changes = self._subscribe()
            elif self._connection is not None:
                changes = self._receive(self._connection, deadline)
            elif time.monotonic() < deadline:
                self._woken.wait(min(self._reconnection.retry_at, deadline) - time.monotonic())
            if time.monotonic() >= deadline:
                break
        return changes

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connection, self._connection = self._connection, None
        self._woken.set()
        if connection is not None:
            _disconnect(connection)

    # ----- establishing and losing the subscription -------------------------------------------

    def _subscribe(self) -> list[Change]:
        """One attempt: connect, ``SUBSCRIBE``, and the server's confirmation; ``[RESYNC]`` once
        confirmed. Blocks at most for the connect and one answer (``timeout`` each)."""
        connection = self._storage._new_connection()
        try:
            with self._storage._errors(None, write=False):
                connection.connect()
                connection.send_command("SUBSCRIBE", self._channel)
                reply = connection.read_response()
                if not _is_reply(reply, b"subscribe", self._channel):
                    raise redis.ConnectionError(f"unexpected answer to SUBSCRIBE: {reply!r:.80}")
        except MCLeaseError as exc:
            _disconnect(connection)
            self._failed(str(exc))
            return []
        except Exception as exc:  # not one redis-py maps (an OSError its connect did not wrap)
            _disconnect(connection)
            self._failed(self._storage._describe(exc))
            return []
        with self._lock:
            if self._closed:
                _disconnect(connection)
                return []
            self._connection = connection
        self._heard = self._probed = time.monotonic()
        self._garbled = False
        self._reconnection.established()
        return [RESYNC]

    def _drop(self, connection: Any, reason: str) -> None:
        with self._lock:
            if self._connection is connection:
                self._connection = None
            closed = self._closed
        _disconnect(connection)
        if not closed:
            self._failed(reason)

    def _failed(self, reason: str) -> None:
        self._reconnection.failed(reason)

    # ----- what the subscription brings -------------------------------------------------------

    def _receive(self, connection: Any, deadline: float) -> list[Change]:
        """Read what the server sent until ``deadline``, or until the first changes and whatever
        came with them; probe an idle connection, and drop it when the server is silent too
        long or the socket fails."""
        changes: list[Change] = []
        try:
            while self._connection is connection and not changes:
                now = time.monotonic()
                if now >= self._give_up_at():
                    self._drop(connection, f"it answered nothing for {now - self._heard:.1f}s")
                    break
                if now >= self._probe_at():
                    self._probed = now
                    connection.send_command("PING")
                wait = min(deadline, self._probe_at(), self._give_up_at()) - now
                if not connection.can_read(max(0.0, wait)):
                    if time.monotonic() >= deadline:
                        break
                    continue
                while True:  # everything that already arrived, without waiting
                    changes += self._handle(connection.read_response())
                    self._heard = time.monotonic()
                    if not connection.can_read(0):
                        break
        except Exception as exc:  # a socket error, or the socket closed under a read by close()
            self._drop(connection, self._storage._describe(exc))
        return changes

    def _probe_at(self) -> float:
        return max(self._heard, self._probed) + PROBE * self._timeout

    def _give_up_at(self) -> float:
        return self._heard + SILENCE * self._timeout

    def _handle(self, reply: Any) -> list[Change]:
        if _is_reply(reply, b"message", self._channel):
            return [self._change(reply[2])]
        return []  # a PING's answer, or a confirmation: heard, nothing changed

    def _change(self, message: bytes) -> Change:
        """What one message of the scripts says (``_scripts.announce``): ``key`` for a delete,
        ``key\\nversion\\ndata`` for a create or update. A message the scripts cannot have sent
        (another publisher on the channel) makes a resync: it may hide any change."""
        parts = bytes(message).split(b"\n", 2)
        try:
            key = validate_key(parts[0].decode("utf-8"))
        except (UnicodeDecodeError, InvalidKeyError):
            return self._garbage(message)
        if len(parts) == 1:
            return Change(key)
        if len(parts) != 3:
            return self._garbage(message)
        return Change(key, self._decoded(key, parts[1], parts[2]))

    def _decoded(self, key: str, version: bytes, data: bytes) -> LeaseObject | None:
        try:
            decoded = decode_lease_data(data, key=key, backend=self._storage.scheme)
            return LeaseObject(decoded, self._storage._version(key, version))
        except CorruptRecordError:
            return None  # reported as unknown: a read of it raises

    def _garbage(self, message: bytes) -> Change:
        if not self._garbled:
            self._garbled = True
            log.warning(
                "a message on the change channel %r of Redis at %s was not sent by mclease "
                "(%r); resyncing",
                self._storage.channel,
                self._storage.where,
                bytes(message)[:40],
            )
        return RESYNC


def _is_reply(reply: Any, kind: bytes, channel: bytes) -> bool:
    """Whether ``reply`` is a Pub/Sub push ``[kind, channel, ...]`` of ``channel``."""
    return isinstance(reply, list) and len(reply) == 3 and reply[0] == kind and reply[1] == channel


def _disconnect(connection: Any) -> None:
    """Close the socket; never waits for the server (no ``UNSUBSCRIBE``, no ``QUIT``)."""
    try:
        connection.disconnect()
    except Exception as exc:  # an already broken socket: nothing left to release
        log.debug("closing a change feed connection: %s", exc)
