"""``example://host[:port][/prefix][?timeout=S]``: TODO a short design note.

Say here what one lease is in the store, where its version comes from (it must strictly increase
per key, also across delete and recreate), and what makes each write one atomic compare-and-swap.
Then what this module is not for.

The rules every backend follows (see the three in ``plugins/``):

* ``from_url`` parses and validates the URL and raises :class:`ConfigurationError` naming the
  supported options; it does not connect. Connect lazily, on the first operation.
* Every network call has a timeout; an unreachable store raises
  :class:`StorageUnavailableError` within ``capabilities.operation_timeout``.
* Map native errors at each method and chain them (``raise ... from exc``). A write that may have
  been applied although it failed raises :class:`OutcomeUnknownError`, never a plain failure.
* Encode records with :func:`encode_lease_data` and decode with :func:`decode_lease_data` (it
  raises :class:`CorruptRecordError`); keep the version beside the bytes, not inside them.
* ``update`` and ``delete`` with a version that does not match, or on a missing record, raise
  :class:`LeaseConflictError`; guard versions < 1 if the store treats 0 as "absent".
"""

from __future__ import annotations

import urllib.parse

from mclease_core import (
    Capabilities,
    ConfigurationError,
    LeaseData,
    LeaseObject,
    Storage,
    redact,
    validate_key,
)

DEFAULT_PREFIX = "mclease"


class ExampleStorage(Storage):
    """TODO: one line."""

    def __init__(self, host: str, port: int, *, prefix: str = DEFAULT_PREFIX):
        self.host = host
        self.port = port
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str) -> ExampleStorage:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "example" or not parts.hostname:
            raise ConfigurationError(
                f"invalid example URL {redact(url)!r}: expected example://host/prefix"
            )
        prefix = parts.path.strip("/") or DEFAULT_PREFIX
        return cls(parts.hostname, parts.port or 1234, prefix=prefix)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()  # TODO: min_write_interval, may_lose_writes, timeout

    def full_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}"

    def read(self, key: str) -> LeaseObject:
        raise NotImplementedError  # TODO: LeaseNotFoundError if absent

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        raise NotImplementedError  # TODO: LeaseAlreadyExistsError if present

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        raise NotImplementedError  # TODO: compare-and-swap on version

    def delete(self, key: str, *, version: int) -> None:
        raise NotImplementedError  # TODO: compare-and-swap on version

    def put_raw(self, key: str, raw: bytes) -> None:
        """Store ``raw`` under ``key`` bypassing the codec (the corruption test needs it)."""
        raise NotImplementedError
