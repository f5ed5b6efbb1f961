"""The one byte format for lease records, shared by every backend that stores bytes.

JSON with the field names of the Kubernetes lease APIs and RFC 3339 timestamps with
microseconds and the writer's UTC offset, so a record is readable with ``gsutil cat`` or
``redis-cli get`` and round-trips exactly. ``decode`` never returns a half-valid record: anything
unexpected raises :class:`CorruptRecordError` naming the field.

Not here: versions. A record's version is kept by the store beside the bytes, never inside them.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any

from ._errors import corrupt as corrupt_record
from ._storage import LeaseData

FORMAT_VERSION = 1


def encode_lease_data(data: LeaseData) -> bytes:
    """Serialize ``data`` to compact UTF-8 JSON."""
    document: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "holderIdentity": data.holder_identity,
        "holderCluster": data.holder_cluster,
        "leaseDurationSeconds": data.lease_duration_seconds,
        "acquireTime": _format_time(data.acquire_time),
        "renewTime": _format_time(data.renew_time),
        "leaseTransitions": data.lease_transitions,
        "fencingToken": data.fencing_token,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_lease_data(
    raw: bytes | str, *, key: str | None = None, backend: str | None = None
) -> LeaseData:
    """Parse bytes written by :func:`encode_lease_data`; :class:`CorruptRecordError` otherwise.

    The same bytes decode to the same (immutable) record, so the last :data:`DECODED_CACHE`
    distinct records are kept: a follower reading an unchanged record, or a change feed
    reporting what a read already decoded, costs a dictionary lookup instead of two thirds of
    the read (JSON and validation)."""
    if not isinstance(raw, str):
        raw = bytes(raw)  # a bytearray or memoryview from a backend: hashable for the cache
    try:
        return _decode(raw) if len(raw) <= CACHED_SIZE else _decode.__wrapped__(raw)
    except _Corrupt as exc:
        raise corrupt_record(key, backend, str(exc)) from exc.__cause__


DECODED_CACHE = 1024
CACHED_SIZE = 4096
"""Records up to this many bytes or characters are cached (a valid record is well under it)."""


class _Corrupt(Exception):
    """What is wrong with the bytes (``decode_lease_data`` adds the key and the backend)."""


@functools.lru_cache(maxsize=DECODED_CACHE)
def _decode(raw: bytes | str) -> LeaseData:
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _Corrupt(f"not JSON ({type(exc).__name__}: {exc})") from exc
    if not isinstance(document, dict):
        raise _Corrupt(f"expected a JSON object, got {type(document).__name__}")
    if document.get("format") != FORMAT_VERSION:
        raise _Corrupt(f"unknown format {document.get('format')!r}, expected {FORMAT_VERSION}")
    try:
        return LeaseData(
            holder_identity=_field(document, "holderIdentity", str),
            holder_cluster=_field(document, "holderCluster", str),
            lease_duration_seconds=float(_field(document, "leaseDurationSeconds", (int, float))),
            acquire_time=_parse_time(_field(document, "acquireTime", str)),
            renew_time=_parse_time(_field(document, "renewTime", str)),
            lease_transitions=_field(document, "leaseTransitions", int),
            fencing_token=_optional_int(document, "fencingToken"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise _Corrupt(str(exc)) from exc


def _field(document: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in document:
        raise KeyError(f"field {name!r} is missing")
    value = document[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"field {name!r} has the wrong type {type(value).__name__}")
    return value


def _optional_int(document: dict[str, Any], name: str) -> int | None:
    if document.get(name) is None:
        return None
    value: int = _field(document, name, int)
    return value


def _format_time(value: dt.datetime) -> str:
    return value.isoformat(timespec="microseconds")


def _parse_time(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    if value.utcoffset() is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return value
