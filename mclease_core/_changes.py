"""What a store's change feed says about its records, kept for the electors of one process.

A :class:`ChangeTracker` runs one :class:`ChangeFeed` on a thread and keeps, per key, the record
the store last reported, and whether that knowledge is complete: it is once the feed has resynced
and a read, a write or a change told it the key's record, and stays so while the feed is
connected. An elector that finds the record *known* decides from it instead of reading, when the
decision is to wait (doing nothing is safe whatever the record became meanwhile); any decision to
write reads first, so an event that never came can delay a takeover but never cause one.

What the tracker learns from the process's own operations goes through :class:`TrackedStorage`,
which notes the result of every read and write unless a change of that key arrived while the
operation ran (the change is newer, or the same). A change that tells the tracker nothing new (the
echo of this process's own write) is not passed on, so subscribers hear of other writers only.

Not here: the feeds themselves (each backend's ``watch()``), deciding (``_decisions``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ._closing import Closing
from ._errors import LeaseNotFoundError, MCLeaseError
from ._storage import Capabilities, ChangeFeed, LeaseData, LeaseObject, Storage

log = logging.getLogger("mclease.changes")
_T = TypeVar("_T")

POLL_TIMEOUT = 0.5
"""Seconds one ``next`` of the feed waits, so closing and disconnects are noticed that often."""

Subscriber = Callable[[str], None]
"""Called on the tracker's thread with a key that another writer changed; must return promptly."""


@dataclasses.dataclass(frozen=True)
class Mark:
    """The tracker's state for a key when an operation on it started."""

    epoch: int
    seen: int


class ChangeTracker(Closing):
    """The records of one store as its change feed reports them.

    ``operation_timeout``: the store's, the longest one ``next`` of its feed may overrun."""

    @classmethod
    def of(cls, storage: Storage, *, name: str = "mclease-changes") -> ChangeTracker | None:
        """A tracker of ``storage``'s changes (not started), or ``None`` if it cannot watch."""
        capabilities = storage.capabilities
        if not capabilities.watch:
            return None
        feed = storage.watch()
        return cls(feed, operation_timeout=capabilities.operation_timeout, name=name)

    def __init__(
        self, feed: ChangeFeed, *, operation_timeout: float, name: str = "mclease-changes"
    ) -> None:
        self._feed = feed
        self._operation_timeout = operation_timeout
        self._lock = threading.Lock()
        self._epoch = 0
        """Grows with every resync and every disconnect: marks from before are void."""
        self._connected = False
        self._seen: dict[str, int] = {}
        """Per key, how many changes of it arrived (a mark compares it)."""
        self._known: dict[str, LeaseObject | None] = {}
        """Per key, its record as of now (``None``: there is none), while connected."""
        self._subscribers: list[Subscriber] = []
        self._pumped = time.monotonic()
        """When the feed last returned: a feed stuck in ``next`` (a bug) is not trusted."""
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> ChangeTracker:
        self._thread.start()
        return self

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber`` with each key another writer changes; returns the unsubscribe."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def known(self, key: str) -> tuple[bool, LeaseObject | None]:
        """``(True, record)`` when the record of ``key`` is known as of now (``None``: there is
        none), ``(False, None)`` when it must be read."""
        with self._lock:
            fresh = time.monotonic() - self._pumped <= POLL_TIMEOUT + self._operation_timeout + 1
            if self._connected and fresh and key in self._known:
                return True, self._known[key]
            return False, None

    def mark(self, key: str) -> Mark:
        """Taken before an operation on ``key``: :meth:`note` then trusts its result only if
        nothing about ``key`` arrived meanwhile."""
        with self._lock:
            return Mark(self._epoch if self._connected else -1, self._seen.get(key, 0))

    def note(self, key: str, mark: Mark, record: LeaseObject | None) -> None:
        """What an operation begun at ``mark`` found or wrote for ``key``."""
        with self._lock:
            if (
                mark.epoch == self._epoch
                and self._connected
                and self._seen.get(key, 0) == mark.seen
            ):
                self._known[key] = record

    def forget(self, key: str) -> None:
        """The record of ``key`` is not known (an operation's outcome is unknown, say)."""
        with self._lock:
            self._known.pop(key, None)
            self._seen[key] = self._seen.get(key, 0) + 1

    def close(self) -> None:
        """Stop: the feed is closed first, so a ``next`` in progress returns at once and a
        reconnection under way says nothing more; nothing is known afterwards."""
        self._closed.set()
        self._disconnect()
        self._feed.close()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(POLL_TIMEOUT + self._operation_timeout)

    # ----- the feed's thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed.is_set():
            self.pump(POLL_TIMEOUT)

    def pump(self, timeout: float) -> None:
        """Take what the feed reports within ``timeout`` and tell subscribers (the tracker's
        thread does this in a loop; tests of a tracker that was not started call it)."""
        try:
            changes = self._feed.next(timeout)
        except Exception:  # a feed must not raise; if one does, start over rather than die
            if self._closed.is_set():
                return  # closed under a call in progress
            log.exception("the store's change feed failed; treating it as disconnected")
            self._disconnect()
            self._closed.wait(timeout)
            return
        news: list[str] = []
        with self._lock:
            self._pumped = time.monotonic()
            for change in changes:
                if change.key is None:
                    self._resync()
                elif self._apply(change.key, change.record):
                    news.append(change.key)
            if self._connected and not self._feed.connected:
                self._lose()
            subscribers = list(self._subscribers)
        for key in news:
            for subscriber in subscribers:
                _call(subscriber, key)

    def _resync(self) -> None:
        if not self._connected:
            log.info("watching the store for changes")
        self._epoch += 1
        self._connected = True
        self._known.clear()

    def _lose(self) -> None:
        log.warning("lost the store's change feed; reading records until it is back")
        self._epoch += 1
        self._connected = False
        self._known.clear()

    def _disconnect(self) -> None:
        with self._lock:
            if self._connected:
                self._lose()

    def _apply(self, key: str, record: LeaseObject | None) -> bool:
        """Fold one change in; whether it is news (not what this process already knew)."""
        self._seen[key] = self._seen.get(key, 0) + 1
        before = self._known.get(key, _UNKNOWN) if self._connected else _UNKNOWN
        if record is None:
            self._known.pop(key, None)
        elif self._connected:
            self._known[key] = record
        return before is _UNKNOWN or before != record


_UNKNOWN = object()


def _call(subscriber: Subscriber, key: str) -> None:
    try:
        subscriber(key)
    except Exception:
        log.exception("a change subscriber failed for %r", key)


class TrackedStorage(Storage):
    """``inner``, telling ``tracker`` what each of its operations found or wrote."""

    def __init__(self, inner: Storage, tracker: ChangeTracker) -> None:
        self.inner = inner
        self.tracker = tracker

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def read(self, key: str) -> LeaseObject:
        return self._tracked(key, lambda: self.inner.read(key), lambda found: found)

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        return self._tracked(key, lambda: self.inner.create(key, data), lambda written: written)

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        return self._tracked(
            key, lambda: self.inner.update(key, data, version=version), lambda written: written
        )

    def delete(self, key: str, *, version: int) -> None:
        self._tracked(key, lambda: self.inner.delete(key, version=version), lambda _: None)

    def watch(self) -> ChangeFeed:
        return self.inner.watch()

    def close(self) -> None:
        self.inner.close()

    def _tracked(
        self,
        key: str,
        operation: Callable[[], _T],
        stored: Callable[[_T], LeaseObject | None],
    ) -> _T:
        """Run ``operation`` and note what the store holds afterwards (``stored`` of its result;
        none after a not-found). Any other error leaves the record unknown: a conflict means what
        was known is stale, an unknown outcome that anything may be stored."""
        mark = self.tracker.mark(key)
        try:
            result = operation()
        except LeaseNotFoundError:
            self.tracker.note(key, mark, None)
            raise
        except MCLeaseError:
            self.tracker.forget(key)
            raise
        self.tracker.note(key, mark, stored(result))
        return result
