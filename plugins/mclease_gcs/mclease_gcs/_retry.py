"""The bounded retry of GCS requests, and which failures may have left a write applied.

google-cloud-storage retries on its own, but it cannot say whether a retried conditional write
that answers 412 had already been applied by an earlier attempt whose response was lost. So the
backend passes ``retry=None`` to every call and retries here: each attempt gets at most
``timeout`` seconds, all attempts together at most one :class:`~mclease_core.plugin.Deadline`
(``deadline`` seconds), with exponential backoff and jitter between them. An attempt that failed
after it may have been applied marks the Deadline's write as sent, so running out of time is then
outcome-unknown rather than unavailable (the Deadline picks the error).

What retries: 429 (rate limited: nothing was applied), 408 and 5xx, connection failures and
timeouts. A failure to connect never reached GCS; a reset connection, a read timeout, 408 or 5xx
after a write was sent may have been applied.

Not here: mapping a final 412 or 404 to a storage error (``_storage`` does that with the verdict
:attr:`Attempts.maybe_applied` gives).
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Iterator

import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.resumable_media import common as media_common

from mclease_core.plugin import Deadline, StorageError


class Transient(enum.Enum):
    NOT_APPLIED = "not applied"
    """Nothing reached GCS, or GCS refused before acting (429)."""
    MAYBE_APPLIED = "maybe applied"
    """The request was sent and its answer lost or failed: a write may have been applied."""


_MAYBE_APPLIED_STATUS = {408, 500, 502, 503, 504}


def classify(exc: BaseException) -> Transient | None:
    """Whether ``exc`` is worth another attempt, and what it says about the attempt's effect."""
    if isinstance(exc, api_exceptions.TooManyRequests):
        return Transient.NOT_APPLIED
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return Transient.MAYBE_APPLIED if exc.code in _MAYBE_APPLIED_STATUS else None
    if isinstance(exc, requests.exceptions.ConnectTimeout | auth_exceptions.TransportError):
        return Transient.NOT_APPLIED
    if isinstance(exc, requests.exceptions.ConnectionError):
        return Transient.NOT_APPLIED if _never_connected(exc) else Transient.MAYBE_APPLIED
    if isinstance(exc, requests.exceptions.Timeout | ConnectionError | media_common.DataCorruption):
        return Transient.MAYBE_APPLIED
    return None


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """urllib3 wraps a refused or unresolvable connection in NewConnectionError."""
    from urllib3.exceptions import NewConnectionError

    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


class Attempts:
    """Yields the timeout of each attempt until ``deadline`` passes; :meth:`failed` records a
    failure (re-raising it if it is not transient) and sleeps the backoff; :meth:`gave_up` is
    the error once the attempts are over."""

    def __init__(self, *, timeout: float, deadline: Deadline):
        self.timeout = timeout
        self.deadline = deadline
        self.last_error: BaseException | None = None
        self._over = False
        self._delay = 0.1

    @property
    def maybe_applied(self) -> bool:
        """Whether a failed attempt of a write may have been applied."""
        return self.deadline.is_sent

    def __iter__(self) -> Iterator[float]:
        while not self._over:
            left = self.deadline.left()
            if left <= 0:
                return
            yield min(self.timeout, max(left, 0.05))

    def failed(self, exc: BaseException) -> None:
        kind = classify(exc)
        if kind is None:
            raise exc
        self.last_error = exc
        if kind is Transient.MAYBE_APPLIED:
            self.deadline.sent()  # for a read, the Deadline ignores it
        pause = self._delay * (1 + random.random() / 2)
        if pause >= self.deadline.left():
            self._over = True  # no time for another attempt
            return
        time.sleep(pause)
        self._delay = min(2 * self._delay, 1.0)

    def gave_up(self) -> StorageError:
        detail = f"{type(self.last_error).__name__}: {self.last_error}" if self.last_error else ""
        return self.deadline.exceeded(detail)
