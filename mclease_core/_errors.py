"""The error types of mclease.

Every backend maps its native exceptions to these at each method and chains the cause
(``raise LeaseConflictError(...) from exc``), so callers handle one small hierarchy whatever
store they run on. Errors carry the key and backend they concern, and say what to do next.

Not here: retry policy. Whether to retry is the caller's decision; ``retryable`` only says
whether trying again can possibly help.
"""

from __future__ import annotations


class MCLeaseError(Exception):
    """Base class of every error raised by mclease."""


class StorageError(MCLeaseError):
    """A storage operation failed.

    ``key`` is the lease key the operation concerned (``None`` when not tied to one key) and
    ``backend`` the URL scheme of the store, when known.
    """

    retryable: bool = False

    def __init__(self, message: str, *, key: str | None = None, backend: str | None = None):
        super().__init__(message)
        self.message = message
        self.key = key
        self.backend = backend

    def __str__(self) -> str:
        where = []
        if self.backend:
            where.append(f"backend={self.backend}")
        if self.key is not None:
            where.append(f"key={self.key!r}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


class LeaseNotFoundError(StorageError):
    """No record is stored under the key."""


class LeaseAlreadyExistsError(StorageError):
    """``create`` found a record already stored under the key."""


class LeaseConflictError(StorageError):
    """A compare-and-swap lost: the stored version is not the one the caller expected.

    Also raised by ``update`` and ``delete`` when the record no longer exists.
    """


class StorageUnavailableError(StorageError):
    """The store could not be reached or did not answer in time. Trying again may succeed.

    Backends raise it within a bounded time (their operation timeout), never hang.
    """

    retryable = True


class CorruptRecordError(StorageError):
    """A stored record cannot be decoded. Nothing was changed; fix or delete the record."""


class OutcomeUnknownError(StorageError):
    """A write may or may not have been applied (for example its response was lost).

    Never treat it as failure or as success: re-read the record and compare before deciding.
    """

    retryable = True


class InvalidKeyError(StorageError, ValueError):
    """A lease key is empty, too long, or contains characters no backend can store."""


class ConfigurationError(MCLeaseError, ValueError):
    """A setting or a storage URL is invalid, or asks for something the backend cannot honour."""


class UnknownBackendError(ConfigurationError):
    """No installed plugin serves the URL scheme.

    ``installed`` lists the schemes that are available; ``hint`` names the distribution to
    ``pip install`` when the scheme is one of the known ones.
    """

    def __init__(self, scheme: str, installed: list[str], hint: str | None):
        self.scheme = scheme
        self.installed = installed
        self.hint = hint
        message = (
            f"no installed mclease backend serves the URL scheme {scheme!r}; "
            f"installed schemes: {', '.join(installed) or '(none)'}"
        )
        if hint:
            message += f". {hint}"
        super().__init__(message)
