"""Kubernetes API requests that end by a deadline, whatever the network does.

Two things stretch a request of the Kubernetes client far past its ``_request_timeout``:

- urllib3 retries a timed-out request three times by default, so a call with a timeout of ``t``
  can last ``4t``;
- the timeout is per socket operation, not a deadline: a server (or a proxy) that trickles its
  answer a byte at a time resets it with every byte, and name resolution has no timeout at all.

:func:`single_attempt_client` turns the retries off. :class:`Deadline` runs each request in a
daemon thread and stops waiting for it at the deadline: the caller gets :class:`TimeoutError` on
time, the thread finishes (or fails) on its own, and a bounded number of them may be left behind
at once. A request abandoned that way may still reach the server; every caller treats a timed-out
write as possibly applied (the lock's signal is confirmed only within its own call, the
controller's writes carry preconditions).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from .._clock import SYSTEM_CLOCK, Clock
from .._limits import printable

_T = TypeVar("_T")

MAX_ABANDONED = 16
"""Requests that may still run after their caller gave up on them, per process; beyond that, new
requests fail at once instead of piling up threads behind a server that never answers."""

_abandoned = threading.BoundedSemaphore(MAX_ABANDONED)


def single_attempt_client(
    api_client: k8s.ApiClient | None, *, keep_alive: bool = False
) -> k8s.ApiClient:
    """A client like ``api_client`` whose requests are never retried (and, with ``keep_alive``,
    whose connections are probed by TCP keepalive, as client-go's are). The caller's client is not
    changed."""
    base = api_client or k8s.ApiClient()
    configuration = copy.deepcopy(base.configuration)
    configuration.retries = False
    if keep_alive:
        configuration.keep_alive = True
    return k8s.ApiClient(configuration)


class Deadline:
    """Runs API requests so that each returns (or raises) by a monotonic deadline."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK):
        self.clock = clock

    def call(self, method: Callable[..., _T], *args: Any, until: float, **kwargs: Any) -> _T:
        """``method(*args, **kwargs, _request_timeout=...)``, or :class:`TimeoutError` at
        ``until`` (monotonic) if it has not finished by then."""
        budget = until - self.clock.monotonic()
        if budget <= 0:
            raise TimeoutError("the call's time budget is spent")
        if not _abandoned.acquire(blocking=False):
            raise TimeoutError(
                f"{MAX_ABANDONED} earlier API requests are still waiting for the server; "
                "not sending another"
            )
        outcome: list[Any] = []
        done = threading.Event()

        def run() -> None:
            try:
                outcome.append((True, method(*args, _request_timeout=budget, **kwargs)))
            except BaseException as exc:
                outcome.append((False, exc))
            finally:
                done.set()
                _abandoned.release()

        threading.Thread(target=run, name="mclease-api-request", daemon=True).start()
        if not self._wait(done, until):
            raise TimeoutError(f"the API server did not answer within {budget:.2f}s")
        ok, value = outcome[0]
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def _wait(self, done: threading.Event, until: float) -> bool:
        while True:
            remaining = until - self.clock.monotonic()
            if remaining <= 0:
                return done.is_set()
            if done.wait(min(remaining, 0.05)):
                return True


def describe_error(exc: BaseException) -> str:
    """One safe line for a failed request: ``HTTP 409 Conflict``, not the whole response."""
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {printable(exc.reason, 120)}"
    return f"{type(exc).__name__}: {printable(exc, 200)}"


class _RawWatch(k8s_watch.Watch):
    def get_return_type(self, func: Any) -> None:
        return None


def raw_watch() -> Any:
    """A ``kubernetes.watch.Watch`` whose events carry the object as the API server sent it (a
    dict), decoded once. The client's own watch decodes each event's JSON, encodes the object
    again and decodes it a second time to build a "model" that, for custom objects, is that same
    dict: a third of the controller's CPU per event went there. Bookmarks and errors are as the
    client's."""
    return _RawWatch()  # type: ignore[no-untyped-call]  # the client is untyped
