"""One time bound for a whole storage operation: connect, send, answer and any retries.

A backend declares ``capabilities.operation_timeout`` and must raise within it. Bounding each
socket call by a fixed timeout does not do that (connect 5 s, then send 5 s, then read 5 s is
15 s), so the backend starts one :class:`Deadline` per operation and gives each step
:meth:`Deadline.remaining` as its timeout. When no time is left, ``remaining`` raises the error
the contract asks for: :class:`OutcomeUnknownError` once :meth:`Deadline.sent` marked a write as
sent (it may have been applied), :class:`StorageUnavailableError` otherwise (nothing was sent,
or the operation was a read).

Not here: retry policy and backoff (the GCS backend keeps its own, on top of a Deadline).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ._errors import StorageError, outcome_unknown, unavailable


class Deadline:
    """``seconds`` from now, for one operation on ``key``.

    >>> deadline = Deadline(5.0, key="k", backend="yours", write=True)
    >>> connection = connect(timeout=deadline.remaining())  # doctest: +SKIP
    >>> deadline.sent(); connection.send(request)  # doctest: +SKIP
    >>> answer = connection.read(timeout=deadline.remaining())  # doctest: +SKIP
    """

    def __init__(
        self,
        seconds: float,
        *,
        key: str | None,
        backend: str,
        write: bool = False,
        what: str = "",
        clock: Callable[[], float] = time.monotonic,
    ):
        self.seconds = seconds
        self.key = key
        self.backend = backend
        self.write = write
        self.what = what or f"the {backend} store"
        self._clock = clock
        self._end = clock() + seconds
        self._sent = False

    def sent(self) -> None:
        """Mark the write as sent: from now on running out of time means its outcome is
        unknown."""
        self._sent = True

    @property
    def is_sent(self) -> bool:
        return self._sent

    def left(self) -> float:
        """Seconds left, ``0.0`` once the deadline has passed (never raises)."""
        return max(0.0, self._end - self._clock())

    def expired(self) -> bool:
        return self.left() <= 0.0

    def remaining(self, cap: float | None = None) -> float:
        """The timeout for the next step: the seconds left (at most ``cap``), or the error
        :meth:`exceeded` gives when none are left."""
        left = self.left()
        if left <= 0.0:
            raise self.exceeded()
        return left if cap is None else min(cap, left)

    def exceeded(self, detail: str = "") -> StorageError:
        """The error for running out of time now (``detail``: the last failure, if any)."""
        cause = f" (last error: {detail})" if detail else ""
        if self.write and self._sent:
            return outcome_unknown(
                f"{self.what} did not answer a write within {self.seconds:g}s{cause}",
                key=self.key,
                backend=self.backend,
            )
        return unavailable(
            f"{self.what} did not answer within {self.seconds:g}s{cause}",
            key=self.key,
            backend=self.backend,
        )
