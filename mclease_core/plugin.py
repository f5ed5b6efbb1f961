"""The backend author's kit: everything a storage backend for mclease imports, in one namespace.

``mclease_core`` itself is the user API (open a store, run an elector, catch errors); a backend
imports from here instead::

    from mclease_core.plugin import Backend, Capabilities, Storage, StorageURL, hookimpl, ...

What is here, and where each piece is explained:

* **The contract**: :class:`Storage` and its four operations, :class:`LeaseData`,
  :class:`LeaseObject`, :class:`Capabilities`, :func:`validate_key` and :data:`MAX_KEY_BYTES`
  (design note: ``mclease_core._storage``).
* **Registration**: :data:`hookimpl`, :class:`Backend` and the entry-point group
  :data:`ENTRY_POINT_GROUP`; the registry types :func:`mclease_core.load_backends` returns.
* **The record codec**: :func:`encode_lease_data` and :func:`decode_lease_data` (which raises
  :class:`CorruptRecordError` for you).
* **The URL kit**: :class:`StorageURL` (one parser: typed :class:`Option` values, hosts, driver
  options passed through, credentials from their one source, the password masked in ``str``,
  ``repr`` and every error), :func:`redact`, :class:`Credentials`.
* **The time bound**: :class:`Deadline`, one bound for connect + send + answer.
* **The error kit**: :func:`map_errors` (a per-method map from native exceptions to mclease's,
  chained), the constructors :func:`not_found`, :func:`already_exists`, :func:`conflict`,
  :func:`corrupt`, :func:`unavailable`, :func:`outcome_unknown`, :func:`permission_denied`,
  :func:`read_only`, and the error classes a backend raises.
* **Proving it**: :mod:`mclease_core.conformance` (the suite every backend runs).

The guide is ``docs/writing-a-backend.md``. Two complete starting points ship with the source
distribution of mclease (https://github.com/mclease/mclease): ``plugins/_template/`` (a backend
skeleton to copy: layout, pyproject, README and tests) and
``tests/thirdparty/mclease_jsonfile/`` (a small, complete third-party backend written from the
guide alone). The production backends ``plugins/mclease_redis``, ``plugins/mclease_etcd`` and
``plugins/mclease_gcs`` follow the same layout: ``_plugin.py`` (the hook), ``_storage.py`` (the
store, ``from_url`` through :class:`StorageURL`, errors through :func:`map_errors`).
"""

from __future__ import annotations

from ._codec import decode_lease_data, encode_lease_data
from ._deadline import Deadline
from ._errors import (
    ConfigurationError,
    CorruptRecordError,
    ErrorMap,
    InvalidKeyError,
    LeaseAlreadyExistsError,
    LeaseConflictError,
    LeaseNotFoundError,
    MCLeaseError,
    OutcomeUnknownError,
    StorageError,
    StorageUnavailableError,
    already_exists,
    conflict,
    corrupt,
    map_errors,
    not_found,
    outcome_unknown,
    permission_denied,
    read_only,
    unavailable,
)
from ._feeds import FEED_PROBE, FEED_SILENCE, Reconnection
from ._hooks import ENTRY_POINT_GROUP, Backend, hookimpl
from ._plugins import BackendInfo, BackendRegistry, PluginFailure, url_scheme
from ._storage import (
    MAX_KEY_BYTES,
    RESYNC,
    WATCH_LATENCY,
    Capabilities,
    Change,
    ChangeFeed,
    LeaseData,
    LeaseObject,
    Storage,
    validate_key,
)
from ._urls import (
    PASSWORD_ENV,
    USERNAME_ENV,
    Credentials,
    Endpoint,
    Option,
    StorageURL,
    redact,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "FEED_PROBE",
    "FEED_SILENCE",
    "MAX_KEY_BYTES",
    "PASSWORD_ENV",
    "RESYNC",
    "USERNAME_ENV",
    "WATCH_LATENCY",
    "Backend",
    "BackendInfo",
    "BackendRegistry",
    "Capabilities",
    "Change",
    "ChangeFeed",
    "ConfigurationError",
    "CorruptRecordError",
    "Credentials",
    "Deadline",
    "Endpoint",
    "ErrorMap",
    "InvalidKeyError",
    "LeaseAlreadyExistsError",
    "LeaseConflictError",
    "LeaseData",
    "LeaseNotFoundError",
    "LeaseObject",
    "MCLeaseError",
    "Option",
    "OutcomeUnknownError",
    "PluginFailure",
    "Reconnection",
    "Storage",
    "StorageError",
    "StorageURL",
    "StorageUnavailableError",
    "already_exists",
    "conflict",
    "corrupt",
    "decode_lease_data",
    "encode_lease_data",
    "hookimpl",
    "map_errors",
    "not_found",
    "outcome_unknown",
    "permission_denied",
    "read_only",
    "redact",
    "unavailable",
    "url_scheme",
    "validate_key",
]
