"""mclease: multi-cluster leader election for Kubernetes.

This root namespace is the user API: open a store by URL (:func:`open_storage`, with
:func:`load_backends` for a registry of your own), run the global :class:`LeaderElector` with a
:class:`LeaseTiming` and a :class:`Clock`, read :class:`LeaseObject` records, and catch the
errors of one small hierarchy (:class:`MCLeaseError` and below).

Elsewhere: :mod:`mclease_core.plugin` is the backend author's kit (the storage contract, the
hook, the record codec, the URL, deadline and error helpers); :mod:`mclease_core.conformance` is
the suite every backend runs; the built-in ``memory://`` and ``sqlite://`` backends are in
:mod:`mclease_core.backends`; the Kubernetes controller in :mod:`mclease_core.controller`.
"""

from importlib import metadata as _metadata

from ._clock import SYSTEM_CLOCK, Clock, FakeClock
from ._decisions import LeaseTiming
from ._elector import ElectorCallbacks, LeaderElector, LeadershipTerm, StepResult
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
from ._plugins import load_backends, open_storage
from ._storage import LeaseData, LeaseObject, Storage

# pyproject.toml is the one source of the version; a source tree that is not installed has none.
try:
    __version__ = _metadata.version("mclease-core")
except _metadata.PackageNotFoundError:
    __version__ = "0+unknown"

__all__ = [
    "SYSTEM_CLOCK",
    "Clock",
    "ConfigurationError",
    "CorruptRecordError",
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
    "OutcomeUnknownError",
    "StepResult",
    "Storage",
    "StorageError",
    "StorageUnavailableError",
    "UnknownBackendError",
    "__version__",
    "load_backends",
    "open_storage",
]
