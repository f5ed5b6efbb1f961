"""``MultiClusterLeaseLock``: the candidate's lock, for ``kubernetes.leaderelection`` unchanged.

Signal, then poll. ``create``/``update`` write the candidate into ``spec`` with the API server's
optimistic concurrency (the ``resourceVersion`` of the last ``get``): only one local candidate can
hold the spec, which is the local election. Then the call waits until the election controller
confirms it in ``status``: ``observedGeneration`` at least the generation this write produced,
and ``globalHolderIdentity`` naming this candidate. A stale status never confirms anyone.

Every call is bounded by :func:`confirmation_bound`, measured on the monotonic clock from the
start of the call, and a confirmation seen after the bound is refused. Why that keeps two leaders
apart (docs/safety.md, rule 4): the controller renews the global lease only after it saw our
signal, so another cluster can take the lease over no earlier than ``D`` after the signal, which
is after the call started at ``t0``. After its last successful call returned (by ``t0 + C``), the
standard Python elector sleeps ``P``, retries until ``R`` has passed, and its last, failing try
(a ``get`` and an ``update``, up to ``C`` each) is followed by one more sleep of ``P`` before it
notices the deadline and calls ``onstopped_leading``. So it stops by ``t0 + 3C + 2P + R``, and
``3C + 2P + R + margin = D`` keeps that before ``t0 + D``.

Not here: the election loop (``kubernetes.leaderelection.LeaderElection``, or our
:class:`~mclease_core.kube.CandidateElector`), and the controller.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection.leaderelectionrecord import LeaderElectionRecord

from .._clock import SYSTEM_CLOCK, Clock
from .._decisions import LeaseTiming
from ._client import single_attempt_client
from ._resource import API_VERSION, GROUP, KIND, PLURAL, VERSION, LeaseView, format_time

log = logging.getLogger("mclease.lock")

MIN_CALL_BOUND = 0.25
"""The shortest bound on one lock call that still leaves time for a write and a confirmation."""
POLL_INTERVAL = 0.02


def safety_margin(timing: LeaseTiming) -> float:
    """Slack for clock-rate differences, scheduling and stopping the work: 10% of D, >= 0.5 s."""
    return max(0.5, 0.1 * timing.lease_duration)


def confirmation_bound(timing: LeaseTiming) -> float:
    """The longest one lock call may take, so that ``3C + 2P + R + margin <= D``.

    Raises :class:`ValueError` when the timings leave less than :data:`MIN_CALL_BOUND`.
    """
    margin = safety_margin(timing)
    spare = timing.lease_duration - timing.renew_deadline - 2 * timing.retry_period - margin
    bound = spare / 3
    if bound < MIN_CALL_BOUND:
        raise ValueError(
            f"lease_duration {timing.lease_duration:g}s is too short for renew_deadline "
            f"{timing.renew_deadline:g}s and retry_period {timing.retry_period:g}s: a candidate "
            f"could still act after another cluster takes over. Use lease_duration >= "
            f"{_shortest_lease_duration(timing):g}s or shorten the other two (rule: 3 x call "
            "bound + 2 x retry_period + renew_deadline + margin <= lease_duration)"
        )
    return bound


def _shortest_lease_duration(timing: LeaseTiming) -> int:
    """The smallest whole number of seconds that leaves the minimum call bound."""
    needed = timing.renew_deadline + 2 * timing.retry_period + 3 * MIN_CALL_BOUND
    # margin = max(0.5, D / 10): solve D - margin >= needed for both branches
    return math.ceil(max(needed + 0.5, needed / 0.9) - 1e-9)


@dataclasses.dataclass(frozen=True)
class Confirmation:
    """What the controller confirmed for this candidate's latest signal."""

    generation: int
    fencing_token: int | None
    signalled_at: float
    """Monotonic time the confirmed call started; leadership is safe until ``D`` after it."""


class MultiClusterLeaseLock:
    """A resource lock backed by a MultiClusterLease in the candidate's own cluster.

    Duck-types the lock interface of ``kubernetes.leaderelection`` (``name``, ``namespace``,
    ``identity``, ``get``, ``create``, ``update``). Pass the same three durations to the elector's
    ``Config`` and here; the lock checks the lease duration the elector writes.
    """

    def __init__(
        self,
        name: str,
        namespace: str,
        identity: str,
        *,
        lease_duration: float = 20,
        renew_deadline: float = 10,
        retry_period: float = 2,
        api_client: k8s.ApiClient | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        if not identity or "/" in identity:
            raise ValueError(f"identity must be non-empty and contain no '/', got {identity!r}")
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.timing = LeaseTiming(lease_duration, renew_deadline, retry_period)
        self.call_bound = confirmation_bound(self.timing)
        self.clock = clock
        self._api = k8s.CustomObjectsApi(single_attempt_client(api_client))
        self._last_seen: dict[str, Any] | None = None
        self.last_confirmation: Confirmation | None = None
        self.last_status: LeaseView | None = None

    # ----- the interface of kubernetes.leaderelection --------------------------------------------

    def get(self, name: str, namespace: str) -> tuple[bool, Any]:
        """``(True, record)`` from status, or ``(False, ApiException)`` (404 when missing)."""
        try:
            obj = self._call(
                self._api.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                budget=self.call_bound,
            )
        except ApiException as exc:
            self._last_seen = None
            return False, exc
        except Exception as exc:
            self._last_seen = None
            return False, ApiException(status=0, reason=f"{type(exc).__name__}: {exc}")
        self._last_seen = obj
        view = LeaseView.from_object(obj)
        self.last_status = view
        return True, _record_from(view)

    def create(self, name: str, namespace: str, election_record: Any) -> bool:
        started = self.clock.monotonic()
        if not self._duration_matches(election_record):
            return False
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": self._spec(),
        }
        try:
            written = self._call(
                self._api.create_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                body,
                budget=self._remaining(started),
            )
        except Exception as exc:
            log.info("%s: create failed: %s", self.describe(), _short(exc))
            return False
        return self._await_confirmation(started, written)

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        started = self.clock.monotonic()
        if self._last_seen is None:
            log.info("%s: update without a preceding get; refusing", self.describe())
            return False
        if not self._duration_matches(updated_record):
            return False
        body = dict(self._last_seen)
        body["spec"] = {**(body.get("spec") or {}), **self._spec()}
        body.pop("status", None)
        try:
            written = self._call(
                self._api.replace_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body,
                budget=self._remaining(started),
            )
        except ApiException as exc:
            reason = "another candidate holds the local lock" if exc.status == 409 else _short(exc)
            log.info("%s: signal not written: %s", self.describe(), reason)
            return False
        except Exception as exc:
            log.info("%s: signal not written: %s", self.describe(), _short(exc))
            return False
        return self._await_confirmation(started, written)

    def describe(self) -> str:
        return f"multiclusterlease/{self.namespace}/{self.name} as {self.identity!r}"

    # ----- signal, then poll ------------------------------------------------------------------

    def release(self) -> bool:
        """Write an empty holder (only if we hold the spec) so the controller releases the
        global lease at once. Call it only after the work has stopped."""
        started = self.clock.monotonic()
        ok, _ = self.get(self.name, self.namespace)
        if not ok or self._last_seen is None:
            return False
        spec = self._last_seen.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return False
        body = dict(self._last_seen)
        body["spec"] = {**spec, "holderIdentity": "", "renewTime": format_time(self.clock.now())}
        body.pop("status", None)
        try:
            self._call(
                self._api.replace_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                self.name,
                body,
                budget=self._remaining(started),
            )
        except Exception as exc:
            log.info("%s: release not written: %s", self.describe(), _short(exc))
            return False
        return True

    def _spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "renewTime": format_time(self.clock.now()),
            "leaseDurationSeconds": _seconds(self.timing.lease_duration),
            "renewDeadlineSeconds": _seconds(self.timing.renew_deadline),
            "retryPeriodSeconds": int(self.timing.retry_period),
        }

    def _await_confirmation(self, started: float, written: dict[str, Any]) -> bool:
        generation = int(written["metadata"]["generation"])
        self._last_seen = written
        while True:
            remaining = self._remaining(started)
            if remaining <= 0:
                log.info(
                    "%s: no confirmation of generation %d within %.2fs; not leading",
                    self.describe(),
                    generation,
                    self.call_bound,
                )
                return False
            try:
                obj = self._call(
                    self._api.get_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    self.name,
                    budget=remaining,
                )
            except Exception as exc:
                log.debug("%s: poll failed: %s", self.describe(), _short(exc))
                time.sleep(min(POLL_INTERVAL, max(0.0, self._remaining(started))))
                continue
            view = LeaseView.from_object(obj)
            self.last_status = view
            verdict = _judge(view, generation, self.identity)
            if verdict is not None:
                return self._accept(started, generation, view, obj) if verdict else False
            time.sleep(min(POLL_INTERVAL, max(0.0, self._remaining(started))))

    def _accept(
        self, started: float, generation: int, view: LeaseView, obj: dict[str, Any]
    ) -> bool:
        if self.clock.monotonic() - started > self.call_bound:
            log.warning("%s: confirmation arrived too late; refused", self.describe())
            return False
        self._last_seen = obj
        self.last_confirmation = Confirmation(generation, view.fencing_token, started)
        return True

    def _remaining(self, started: float) -> float:
        return self.call_bound - (self.clock.monotonic() - started)

    def _call(self, method: Callable[..., Any], *args: Any, budget: float) -> Any:
        if budget <= 0:
            raise TimeoutError("the call's time budget is spent")
        return method(*args, _request_timeout=budget)

    def _duration_matches(self, record: Any) -> bool:
        written = getattr(record, "lease_duration", None)
        if written is not None and float(written) != self.timing.lease_duration:
            log.error(
                "%s: the elector's lease_duration (%s) differs from the lock's (%g); give both "
                "the same timings",
                self.describe(),
                written,
                self.timing.lease_duration,
            )
            return False
        return True


def _judge(view: LeaseView, generation: int, identity: str) -> bool | None:
    """True: confirmed. False: our signal was overtaken. None: not decided yet."""
    if view.holder_identity != identity:
        return False  # another local candidate wrote the spec after us
    if view.observed_generation is None or view.observed_generation < generation:
        return None  # the controller has not acted on our signal yet: a stale status
    if view.global_holder_identity == identity:
        return True
    return None  # processed, someone else leads; a later reconcile may still confirm us


def _record_from(view: LeaseView) -> LeaderElectionRecord:
    """The record the standard elector sees: the *global* holder as status names it; when status
    names nobody, the local candidate whose signal is pending in the spec.

    Showing the pending local signal keeps the other local candidates from all signalling at once
    and overwriting each other's spec, which would leave the global lease taken for a candidate
    that is no longer the spec holder. Nobody at all (released, expired, never held) becomes
    ``None``, which makes the standard elector try at once instead of waiting a lease duration.
    """
    return LeaderElectionRecord(
        view.global_holder_identity or view.holder_identity or None,
        str(view.lease_duration_seconds),
        view.global_renew_time or "",
        view.global_renew_time or "",
    )


def _seconds(value: float) -> int:
    return max(1, round(value))


def _short(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"
