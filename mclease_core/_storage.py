"""The storage contract: what a global lease store must do, and nothing more.

A store keeps one record per lease key and offers four operations on it: ``read``, ``create``
(fails if present), ``update`` and ``delete`` (both compare-and-swap on the record's version).
Versions are integers that strictly increase per key, also across delete and recreate, which is
what makes a version usable as a fencing token.

A store that can notify (``capabilities.watch``) also offers ``watch()``: a :class:`ChangeFeed` of
the records of its prefix as they change. A change is a hint that saves reads, never a reason to
act: whoever decides to write (take a lease over, say) reads first, because the absence of events
proves nothing. What a feed must guarantee is in :class:`ChangeFeed`.

Not here: leader election (see ``_decisions`` and ``_elector``), encoding (``_codec``), and
choosing a backend by URL (``_plugins``).
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import functools
import unicodedata

from ._closing import Closing
from ._errors import InvalidKeyError
from ._limits import (
    MAX_FENCING_TOKEN,
    MAX_TRANSITIONS,
    check_duration,
    identity_problem,
)

MAX_KEY_BYTES = 512
"""Longest lease key, in UTF-8 bytes, that every backend must accept."""


@dataclasses.dataclass(frozen=True)
class LeaseData:
    """What a global lease record says.

    ``holder_identity`` empty means nobody holds the lease (it was released).
    ``fencing_token`` is ``None`` on the write that starts a term: the token of that term is then
    the version of the record that write produced. Later renewals carry it forward explicitly.
    Use :attr:`LeaseObject.fencing_token` rather than reading this field.
    """

    holder_identity: str
    lease_duration_seconds: float
    renew_time: dt.datetime
    acquire_time: dt.datetime
    holder_cluster: str = ""
    lease_transitions: int = 0
    fencing_token: int | None = None

    def __post_init__(self) -> None:
        for name in ("renew_time", "acquire_time"):
            value = getattr(self, name)
            if not isinstance(value, dt.datetime) or value.utcoffset() is None:
                raise ValueError(
                    f"LeaseData.{name} must be a time-zone-aware datetime, got {value!r}"
                )
        check_duration("LeaseData.lease_duration_seconds", self.lease_duration_seconds)
        for name, text, what in (
            ("holder_identity", self.holder_identity, "identity"),
            ("holder_cluster", self.holder_cluster, "cluster name"),
        ):
            if not isinstance(text, str):
                raise ValueError(f"LeaseData.{name} must be a str, got {type(text).__name__}")
            problem = identity_problem(text, what=what)
            if problem:
                raise ValueError(f"LeaseData.{name}: {problem}")
        _check_count("lease_transitions", self.lease_transitions, MAX_TRANSITIONS)
        if self.fencing_token is not None:
            _check_count("fencing_token", self.fencing_token, MAX_FENCING_TOKEN)

    @property
    def holder(self) -> tuple[str, str]:
        """The cluster-qualified holder: ``(cluster, identity)``."""
        return (self.holder_cluster, self.holder_identity)

    @property
    def is_released(self) -> bool:
        return self.holder_identity == ""


@dataclasses.dataclass(frozen=True)
class LeaseObject:
    """A stored record and its version (opaque, strictly increasing per key)."""

    data: LeaseData
    version: int

    @property
    def fencing_token(self) -> int:
        """The number of the holder's term: it only grows for a key, and is never reused."""
        return self.version if self.data.fencing_token is None else self.data.fencing_token


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a backend can and cannot do; the core refuses settings a backend cannot honour.

    ``min_write_interval``: the shortest time, in seconds, between two writes of one record the
    store sustains (GCS: about one second). An elector whose retry period is shorter is refused.
    ``watch``: :meth:`Storage.watch` returns a :class:`ChangeFeed` (not needed by the elector;
    with one, followers stop reading the record while nothing changes, and react to a release at
    once).
    ``may_lose_writes``: the store can lose acknowledged writes: on a failover (Redis with
    asynchronous replication), on a restart (Redis from its last RDB snapshot or an AOF that is
    not fsynced on every write; the in-memory store), so versions and fencing tokens can repeat and
    two leaders become possible after such a loss. The elector warns when it starts on one.
    ``shared_across_processes``: several processes can open the same store (``memory://``
    cannot).
    ``operation_timeout``: the longest a single operation takes before it raises
    :class:`StorageUnavailableError`.
    """

    min_write_interval: float = 0.0
    watch: bool = False
    may_lose_writes: bool = False
    shared_across_processes: bool = True
    operation_timeout: float = 10.0


def _check_count(name: str, value: object, limit: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise ValueError(f"LeaseData.{name} must be an integer in [0, {limit}], got {value!r}")


def validate_key(key: object) -> str:
    """Return ``key`` if every backend can store it, else raise :class:`InvalidKeyError`."""
    if not isinstance(key, str):
        raise InvalidKeyError(f"a lease key must be a str, got {type(key).__name__}")
    return _valid_key(str(key))


@functools.lru_cache(maxsize=4096)
def _valid_key(key: str) -> str:
    """The checks of :func:`validate_key`, remembered per key (every operation checks its key;
    a process uses a few keys over and over)."""
    if not key:
        raise InvalidKeyError("a lease key must not be empty", key=key)
    size = len(key.encode("utf-8", errors="surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise InvalidKeyError(
            f"a lease key must be at most {MAX_KEY_BYTES} UTF-8 bytes, got {size}", key=key
        )
    for char in key:
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidKeyError(
                f"a lease key must not contain control characters or lone surrogates "
                f"(found {char!r})",
                key=key,
            )
    return key


@dataclasses.dataclass(frozen=True)
class Change:
    """One entry of a :class:`ChangeFeed`.

    ``key`` ``None``: *resync*: the feed (re)started and changes before it were not reported, so
    forget what earlier changes said about every key. Otherwise ``key`` changed and ``record``
    is what the store holds for it as of this change (exactly what :meth:`Storage.read` of that
    version returns), or ``None`` when the feed cannot say (it was deleted, or its bytes do not
    decode): read it to know.
    """

    key: str | None
    record: LeaseObject | None = None


RESYNC = Change(None)


class ChangeFeed(Closing):
    """The changes of the records under one store's prefix, in the order the store applied them.

    The guarantees a consumer relies on:

    - The first entry is :data:`RESYNC`, once the feed is established; from then on every
      create, update and delete of a key under the prefix is reported (``next`` returns it within
      ``WATCH_LATENCY`` seconds of the write being acknowledged), or a :data:`RESYNC` follows
      any gap in which changes may have gone unreported.
    - ``connected`` is False while the feed cannot keep that promise: it lost the store, or has
      not heard from it for ``capabilities.operation_timeout`` (it probes an idle connection, so
      a silently dropped one is noticed within that time). The feed re-establishes itself and
      reports :data:`RESYNC` again.
    - Records in changes are decoded and validated like :meth:`Storage.read` results; a record
      that does not decode is reported with ``record=None``, never raised.
    - ``next`` and ``close`` return within their timeout plus ``operation_timeout``; ``next``
      never raises for a store that went away.
    """

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """Whether every change since the last :data:`RESYNC` has been or will be reported."""

    @abc.abstractmethod
    def next(self, timeout: float) -> list[Change]:
        """The changes that arrived since the last call, waiting up to ``timeout`` seconds for
        the first; ``[]`` when none came."""


WATCH_LATENCY = 1.0
"""Seconds within which a change feed reports an acknowledged write on a loopback store (the
conformance bound; a store across a network adds its round trip)."""


class Storage(Closing):
    """A store of lease records with compare-and-swap.

    Implementations map their native errors to :mod:`mclease_core` errors and chain them.
    Every method raises :class:`StorageUnavailableError` within ``capabilities.operation_timeout``
    when the store does not answer, and :class:`InvalidKeyError` for keys
    :func:`validate_key` rejects. ``read`` raises :class:`CorruptRecordError` when a stored
    record cannot be decoded. A write whose outcome the backend cannot know raises
    :class:`OutcomeUnknownError`.
    """

    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """What this store can do."""

    @abc.abstractmethod
    def read(self, key: str) -> LeaseObject:
        """Return the record under ``key``; :class:`LeaseNotFoundError` if there is none."""

    @abc.abstractmethod
    def create(self, key: str, data: LeaseData) -> LeaseObject:
        """Store a new record; :class:`LeaseAlreadyExistsError` if one is present."""

    @abc.abstractmethod
    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        """Replace the record if its version is ``version``; else :class:`LeaseConflictError`."""

    @abc.abstractmethod
    def delete(self, key: str, *, version: int) -> None:
        """Remove the record if its version is ``version``; else :class:`LeaseConflictError`."""

    def watch(self) -> ChangeFeed:
        """A feed of the changes under this store's prefix, for a store whose capabilities say
        ``watch``; the caller closes it. Others raise :class:`NotImplementedError`."""
        raise NotImplementedError(f"{type(self).__name__} cannot watch for changes")

    def close(self) -> None:
        """Release connections. The store must not be used afterwards."""
