"""The error types of mclease.

Every backend maps its native exceptions to these at each method and chains the cause
(``raise LeaseConflictError(...) from exc``), so callers handle one small hierarchy whatever
store they run on. Errors carry the key and backend they concern, and say what to do next.

**The error kit for backends** (exported by :mod:`mclease_core.plugin`). :func:`map_errors` is
the one place a backend turns a client library's exceptions into these, with a map per method
(modelled on httpcore's ``map_exceptions``): the first entry whose type matches wins, the result
is chained to the native exception, and an mclease error raised inside passes through untouched.
The constructors (:func:`not_found`, :func:`already_exists`, :func:`conflict`, :func:`corrupt`,
:func:`unavailable`, :func:`outcome_unknown`, :func:`permission_denied`, :func:`read_only`) give
every backend the same words for the same situations, so users (and the conformance suite) see one
vocabulary whatever the store.

Which error when (the contract, also in ``docs/writing-a-backend.md``):

* nothing was sent (connect refused, DNS failed, a kept-open connection found dead before the
  write, the deadline passed before sending): :class:`StorageUnavailableError`;
* a write was sent on a live connection and no answer came (timeout, reset): it may have been
  applied, :class:`OutcomeUnknownError`; a read in that case is just unavailable;
* the store refuses the credentials or the permission: :class:`ConfigurationError` (retrying
  cannot help; the elector stops and says why);
* a read-only replica or a store failing over: :class:`StorageUnavailableError` (nothing was
  applied; retrying after the failover may succeed).

Not here: retry policy. Whether to retry is the caller's decision; ``retryable`` only says
whether trying again can possibly help.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

from ._limits import excerpt


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


# ----- the error kit for backends ----------------------------------------------------------------

ErrorTarget = type[StorageError] | Callable[[Exception], MCLeaseError]
"""What :func:`map_errors` turns a native exception into: a :class:`StorageError` class (the
message then names ``context`` and the exception) or a function that builds the error."""

ErrorMap = Mapping[type[Exception] | tuple[type[Exception], ...], ErrorTarget]


@contextlib.contextmanager
def map_errors(
    mapping: ErrorMap,
    *,
    key: str | None,
    backend: str,
    context: str = "",
    scrub: Callable[[str], str] = str,
) -> Iterator[None]:
    """Raise the mclease error ``mapping`` gives for a native exception, chained to it.

    >>> with map_errors({TimeoutError: StorageUnavailableError}, key="k", backend="yours"):
    ...     raise TimeoutError("no answer")
    Traceback (most recent call last):
    mclease_core._errors.StorageUnavailableError: the yours store: TimeoutError: no answer (...)

    Entries are tried in order; the first whose type matches wins. An exception no entry matches
    propagates unchanged, and so does an :class:`MCLeaseError` raised inside (a nested helper
    already mapped it). A class target gets the message ``"<context>: <type>: <detail>"``, the
    detail passed through ``scrub`` (a password a server echoed). An error a function target
    returns that already has a cause (one it wraps), or was raised ``from None``, keeps that.
    """
    try:
        yield
    except MCLeaseError:
        raise
    except Exception as exc:
        for native, target in mapping.items():
            if isinstance(exc, native):
                error = _build(target, exc, key, backend, context, scrub)
                if error.__cause__ is not None or error.__suppress_context__:
                    raise error from error.__cause__  # it wraps its own cause (or hides one)
                raise error from exc
        raise


def _build(
    target: ErrorTarget,
    exc: Exception,
    key: str | None,
    backend: str,
    context: str,
    scrub: Callable[[str], str],
) -> MCLeaseError:
    if isinstance(target, type):
        where = context or f"the {backend} store"
        detail = excerpt(scrub(str(exc)))
        error: MCLeaseError = target(
            f"{where}: {type(exc).__name__}: {detail}", key=key, backend=backend
        )
        return error
    return target(exc)


def not_found(key: str, backend: str) -> LeaseNotFoundError:
    """``read`` of a key with no record."""
    return LeaseNotFoundError("no lease record", key=key, backend=backend)


def already_exists(key: str, backend: str) -> LeaseAlreadyExistsError:
    """``create`` of a key that has a record."""
    return LeaseAlreadyExistsError("lease record already exists", key=key, backend=backend)


def conflict(
    key: str,
    backend: str,
    *,
    expected: int,
    stored: int | str | None = None,
    missing: bool = False,
) -> LeaseConflictError:
    """``update`` or ``delete`` that expected version ``expected``: the record holds ``stored``,
    or is ``missing``, or (neither given) the store does not say which."""
    if missing:
        problem = "but the record does not exist"
    elif stored is not None:
        problem = f"stored version is {stored}"
    else:
        problem = "but the record has another version or does not exist"
    return LeaseConflictError(f"expected version {expected}, {problem}", key=key, backend=backend)


def corrupt(key: str | None, backend: str | None, problem: str) -> CorruptRecordError:
    """A stored record that cannot be decoded; ``problem`` says what is wrong with it."""
    return CorruptRecordError(
        f"stored lease record is corrupt: {excerpt(problem)}; delete the record to let "
        "electors recreate it",
        key=key,
        backend=backend,
    )


def unavailable(problem: str, *, key: str | None, backend: str) -> StorageUnavailableError:
    """Nothing was applied: the store was not reached, did not answer a read, or cannot serve
    now. ``problem`` names the store and the cause (``"cannot reach Redis at h: refused"``)."""
    return StorageUnavailableError(problem, key=key, backend=backend)


def outcome_unknown(problem: str, *, key: str | None, backend: str) -> OutcomeUnknownError:
    """A write was sent and its answer lost: it may have been applied. ``problem`` says what
    happened; the message adds what the caller must do."""
    return OutcomeUnknownError(
        f"{problem}; it may have been applied: re-read the record", key=key, backend=backend
    )


def permission_denied(problem: str) -> ConfigurationError:
    """The store refused the credentials or the permission for the operation: retrying cannot
    help, the operator must fix the credentials or the grants (the elector stops on it)."""
    return ConfigurationError(
        f"{problem}; retrying cannot help: fix the credentials or the store's permissions"
    )


def read_only(problem: str, *, key: str | None, backend: str) -> StorageUnavailableError:
    """The store (a replica, or a primary being demoted) refuses writes now: nothing was
    applied, and a retry after the failover may succeed."""
    return StorageUnavailableError(
        f"{problem}; the store is read-only now (a replica, or a failover in progress)",
        key=key,
        backend=backend,
    )
