"""mclease: multi-cluster leader election for Kubernetes.

This package is the core: the storage contract every backend implements, plugin discovery by URL
scheme, the built-in ``memory://`` and ``sqlite://`` backends, the conformance suite third-party
backends run (:mod:`mclease_core.conformance`), and the global :class:`LeaderElector`.
"""

from importlib import metadata as _metadata

from ._clock import SYSTEM_CLOCK, Clock, FakeClock, SystemClock
from ._codec import decode_lease_data, encode_lease_data
from ._decisions import Action, Decision, LeaseTiming, Observation, decide, observe
from ._elector import ElectorCallbacks, LeaderElector, LeadershipTerm, StepOutcome
from ._errors import (
    ConfigurationError,
    CorruptRecordError,
    InvalidKeyError,
    LeaseAlreadyExistsError,
    LeaseConflictError,
    LeaseNotFoundError,
    MCLeaseError,
    OutcomeUnknownError,
    StorageError,
    StorageUnavailableError,
    UnknownBackendError,
)
from ._hooks import ENTRY_POINT_GROUP, PROJECT_NAME, Backend, hookimpl, hookspec
from ._instrumented import CountingStorage
from ._plugins import (
    BackendInfo,
    BackendRegistry,
    PluginFailure,
    default_registry,
    load_backends,
    open_storage,
    url_scheme,
)
from ._storage import MAX_KEY_BYTES, Capabilities, LeaseData, LeaseObject, Storage, validate_key
from ._urls import (
    CREDENTIAL_OPTIONS,
    PASSWORD_ENV,
    USERNAME_ENV,
    Credentials,
    credentials,
    redact,
    reject_stray_at,
    seconds_option,
    url_options,
)

# pyproject.toml is the one source of the version; a source tree that is not installed has none.
try:
    __version__ = _metadata.version("mclease-core")
except _metadata.PackageNotFoundError:
    __version__ = "0+unknown"

__all__ = [
    "CREDENTIAL_OPTIONS",
    "ENTRY_POINT_GROUP",
    "MAX_KEY_BYTES",
    "PASSWORD_ENV",
    "PROJECT_NAME",
    "SYSTEM_CLOCK",
    "USERNAME_ENV",
    "Action",
    "Backend",
    "BackendInfo",
    "BackendRegistry",
    "Capabilities",
    "Clock",
    "ConfigurationError",
    "CorruptRecordError",
    "CountingStorage",
    "Credentials",
    "Decision",
    "ElectorCallbacks",
    "FakeClock",
    "InvalidKeyError",
    "LeaderElector",
    "LeadershipTerm",
    "LeaseAlreadyExistsError",
    "LeaseConflictError",
    "LeaseData",
    "LeaseNotFoundError",
    "LeaseObject",
    "LeaseTiming",
    "MCLeaseError",
    "Observation",
    "OutcomeUnknownError",
    "PluginFailure",
    "StepOutcome",
    "Storage",
    "StorageError",
    "StorageUnavailableError",
    "SystemClock",
    "UnknownBackendError",
    "__version__",
    "credentials",
    "decide",
    "decode_lease_data",
    "default_registry",
    "encode_lease_data",
    "hookimpl",
    "hookspec",
    "load_backends",
    "observe",
    "open_storage",
    "redact",
    "reject_stray_at",
    "seconds_option",
    "url_options",
    "url_scheme",
    "validate_key",
]
