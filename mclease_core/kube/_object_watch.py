"""``ObjectWatch``: one MultiClusterLease followed through a watch of its name.

The candidate's lock waits on it for the controller's confirmation instead of polling, and
``CandidateElector`` learns from it that the global lease was freed. It is a hint with a fallback,
never the only way to see the object: a waiter that hears nothing for :data:`FALLBACK_POLL`
reads the object itself, and while the watch is down (an API server restart, a role without the
``list`` and ``watch`` verbs) the lock polls as before. What it delivers is what a ``get`` would
have returned a moment earlier, so the lock judges it exactly like a ``get`` (rule 9 counts from
the signal, whenever the answer arrives).

A watch that goes silent is noticed: the server ends each one after :data:`WATCH_SECONDS` and
the client read times out shortly after, so ``healthy`` turns false within that time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from ._client import describe_error, raw_watch
from ._resource import GROUP, PLURAL, VERSION

log = logging.getLogger("mclease.lock")

WATCH_SECONDS = 30
"""How long the API server keeps one watch open before the next one starts."""
FALLBACK_POLL = 0.25
"""Seconds a waiter trusts a silent watch before it reads the object itself."""
REFUSED_RETRY = 60.0
"""Seconds between tries of a watch that RBAC refused (the candidate role lacks list/watch)."""

Listener = Callable[[dict[str, Any] | None], None]


class ObjectWatch:
    """The latest copy of one object as its watch delivers it (``None``: it does not exist)."""

    def __init__(self, api: k8s.CustomObjectsApi, namespace: str, name: str) -> None:
        self._api = api
        self.namespace = namespace
        self.name = name
        self._cond = threading.Condition()
        self._sequence = 0
        self._object: dict[str, Any] | None = None
        self._healthy = False
        self._listeners: list[Listener] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"mclease-lock-watch-{name}", daemon=True
        )
        self.refused: ApiException | None = None
        """Set when RBAC refused the watch (its owner says so where it can tell why)."""

    def start(self) -> ObjectWatch:
        self._thread.start()
        return self

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._healthy = False
            self._cond.notify_all()

    @property
    def healthy(self) -> bool:
        with self._cond:
            return self._healthy

    def listen(self, listener: Listener) -> None:
        """Call ``listener`` with each copy delivered (on the watch thread; return promptly)."""
        with self._cond:
            self._listeners.append(listener)

    def wait_newer(self, sequence: int, timeout: float) -> tuple[int, dict[str, Any] | None]:
        """A copy newer than ``sequence`` (``(sequence, None)`` when none came within
        ``timeout`` or the watch is down); the sequence of what it returns."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._healthy and self._sequence <= sequence:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._healthy and self._sequence > sequence:
                return self._sequence, self._object
            return sequence, None

    @property
    def sequence(self) -> int:
        with self._cond:
            return self._sequence

    # ----- the watch thread ----------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                self._list_and_watch()
                backoff = 0.2
            except ApiException as exc:
                self._down()
                if exc.status in (401, 403):
                    self.refused = exc
                    self._stop.wait(REFUSED_RETRY)
                    continue
                log.debug("watch of %s/%s failed: %s", self.namespace, self.name, exc.status)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:
                self._down()
                log.debug(
                    "watch of %s/%s failed: %s", self.namespace, self.name, describe_error(exc)
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _list_and_watch(self) -> None:
        selector = f"metadata.name={self.name}"
        listing = cast(
            dict[str, Any],
            self._api.list_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                field_selector=selector,
                _request_timeout=(5.0, 10.0),
            ),
        )
        items = listing.get("items") or []
        self._deliver(items[0] if items else None, healthy=True)
        self.refused = None
        resource_version = listing["metadata"]["resourceVersion"]
        stream = raw_watch()
        for event in stream.stream(
            self._api.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            field_selector=selector,
            resource_version=resource_version,
            timeout_seconds=WATCH_SECONDS,
            allow_watch_bookmarks=True,
            _request_timeout=(5.0, WATCH_SECONDS + 5.0),
        ):
            if self._stop.is_set():
                stream.stop()
                return
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                raise ApiException(status=obj.get("code", 0), reason=obj.get("message", "error"))
            if kind in ("ADDED", "MODIFIED"):
                self._deliver(obj)
            elif kind == "DELETED":
                self._deliver(None)

    def _deliver(self, obj: dict[str, Any] | None, *, healthy: bool | None = None) -> None:
        with self._cond:
            self._sequence += 1
            self._object = obj
            if healthy is not None:
                self._healthy = healthy
            listeners = list(self._listeners)
            self._cond.notify_all()
        for listener in listeners:
            try:
                listener(obj)
            except Exception:
                log.exception("a listener of %s/%s failed", self.namespace, self.name)

    def _down(self) -> None:
        with self._cond:
            self._healthy = False
            self._cond.notify_all()
