"""``example://host[:port][/prefix][?timeout=S]``: TODO a short design note.

Say here what one lease is in the store, where its version comes from (it must strictly increase
per key, also across delete and recreate), and what makes each write one atomic compare-and-swap.
Then what this module is not for.

The rules every backend follows (the three in ``plugins/`` have this same shape; the guide is
``docs/writing-a-backend.md``):

* ``from_url`` parses the URL with :meth:`StorageURL.parse` (one parser: typed options, hosts,
  credentials, the password masked in every message) and does not connect. Connect lazily.
* ``timeout`` bounds a whole operation (connect, send, answer, retries): one :class:`Deadline`
  per operation, its :meth:`~Deadline.remaining` the timeout of each step, and
  ``capabilities.operation_timeout`` says the same number. Default 10 s: the elector's default
  renew deadline, so a renewal learns the store's answer before its lease could lapse.
* Native errors are mapped at each method with :func:`map_errors` and the shared constructors:
  never sent (connect refused, a kept-open connection found dead before the write): unavailable;
  a write sent on a live connection and unanswered: :func:`outcome_unknown`, never a conflict or
  a success; refused credentials or permission: :func:`permission_denied`; a read-only replica:
  :func:`read_only`.
* Records go through :func:`encode_lease_data` and :func:`decode_lease_data` (which raises
  :class:`CorruptRecordError`); the version lives beside the bytes, not inside them.
* ``update`` and ``delete`` with a version that does not match, or on a missing record, raise
  :func:`conflict`; guard versions < 1 if the store treats 0 as "absent".
* One store object is shared by several threads (the elector and the controller share one):
  guard a client library that is not thread-safe with a lock, or use a pool.
"""

from __future__ import annotations

from typing import Any

from mclease_core.plugin import (
    Capabilities,
    Deadline,
    ErrorMap,
    LeaseData,
    LeaseObject,
    Option,
    Storage,
    StorageUnavailableError,
    StorageURL,
    map_errors,
    validate_key,
)

DEFAULT_PORT = 1234
DEFAULT_PREFIX = "mclease"
DEFAULT_TIMEOUT = 10.0
TIMEOUT = Option.seconds("timeout", DEFAULT_TIMEOUT)
OPTIONS: tuple[Option[Any], ...] = (TIMEOUT,)  # TODO: your options; driver=True passes one on
_USAGE = "expected example://[user@]host[:port][/prefix][?timeout=SECONDS&password_file=PATH]"


class ExampleStorage(Storage):
    """TODO: one line."""

    def __init__(self, url: StorageURL):
        self.url = url
        self.host = url.host
        self.port = url.port or DEFAULT_PORT
        self.prefix = url.path.strip("/") or DEFAULT_PREFIX
        self.timeout = url.get(TIMEOUT)

    @classmethod
    def from_url(cls, url: str) -> ExampleStorage:
        return cls(
            StorageURL.parse(
                url,
                backend="example",
                schemes=("example",),
                options=OPTIONS,
                default_port=DEFAULT_PORT,
                usage=_USAGE,
            )
        )

    @property
    def capabilities(self) -> Capabilities:
        # TODO: min_write_interval, may_lose_writes
        return Capabilities(operation_timeout=self.timeout)

    def full_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}"

    def read(self, key: str) -> LeaseObject:
        full = self.full_key(key)
        deadline = Deadline(self.timeout, key=key, backend="example", what=self._where)
        with map_errors(
            self._errors(write=False), key=key, backend="example", scrub=self.url.scrub
        ):
            timeout = deadline.remaining()  # TODO: connect, send and read, each with remaining()
            raise NotImplementedError(f"read {full} in {timeout}s")  # TODO: not_found() if absent

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        raise NotImplementedError  # TODO: already_exists(key, "example") if present

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        raise NotImplementedError  # TODO: compare-and-swap on version; else conflict(...)

    def delete(self, key: str, *, version: int) -> None:
        raise NotImplementedError  # TODO: compare-and-swap on version; else conflict(...)

    @property
    def _where(self) -> str:
        return f"example at {self.host}:{self.port}"

    def _errors(self, *, write: bool) -> ErrorMap:
        """TODO: your client's exceptions, most specific first. A write's map differs from a
        read's: a lost answer after sending is outcome_unknown for a write (mark the Deadline
        with ``deadline.sent()`` before sending), unavailable for a read."""
        return {(ConnectionError, TimeoutError): StorageUnavailableError}
