"""One reconcile of one MultiClusterLease: read it, act on the global lease, write status.

The reconciler keeps, per lease, what the decisions need between reconciles: the candidate's
generation and when it was first seen (liveness, rule 2), and a :class:`LeaderElector` for the
current candidate (its observation of the global record and its cached version for one-write
renewals). It is driven by the manager's work queue, one lease at a time per key.

Not here: watching, queueing, threads (``_manager``) and the decisions themselves (``_decisions``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from .._clock import SYSTEM_CLOCK, Clock
from .._decisions import LeaseTiming
from .._elector import LeaderElector
from .._errors import ConfigurationError, StorageError
from .._storage import Storage
from ..kube._resource import FINALIZER, GROUP, PLURAL, VERSION, InvalidLeaseError, LeaseView
from ._decisions import (
    Action,
    CandidateState,
    Outcome,
    Plan,
    build_status,
    next_check,
    plan,
    track_candidate,
)
from ._metrics import MeteredStorage, Metrics

log = logging.getLogger("mclease.controller")


@dataclasses.dataclass
class _LeaseState:
    candidate: CandidateState
    elector: LeaderElector | None = None
    confirmed_generation: int | None = None
    last_status: dict[str, Any] | None = None
    last_holder: str = ""


@dataclasses.dataclass(frozen=True)
class ReconcileResult:
    requeue_after: float | None
    plan: Plan | None = None


class Reconciler:
    """Reconciles MultiClusterLease objects of one cluster against the global store."""

    def __init__(
        self,
        api: k8s.CustomObjectsApi,
        storage: Storage,
        *,
        cluster: str,
        retry_period: float = 2.0,
        clock: Clock = SYSTEM_CLOCK,
        metrics: Metrics | None = None,
        events: Callable[[LeaseView, str, str, str], None] | None = None,
        request_timeout: float = 5.0,
    ):
        if not cluster or "/" in cluster:
            raise ConfigurationError(f"cluster name must be non-empty without '/', got {cluster!r}")
        self.api = api
        self.metrics = metrics or Metrics()
        self.storage: Storage = MeteredStorage(storage, self.metrics)
        self.cluster = cluster
        self.retry_period = retry_period
        self.clock = clock
        self.events = events or (lambda view, kind, reason, message: None)
        self.request_timeout = request_timeout
        self._leases: dict[str, _LeaseState] = {}

    def reconcile(
        self, namespace: str, name: str, obj: dict[str, Any] | None = None
    ) -> ReconcileResult:
        """Reconcile one lease: ``obj`` as the watch last delivered it, or read now if ``None``.

        A watched copy may trail the API server by a moment; that is safe: status records the
        generation acted on (a newer signal is simply not confirmed by it), and the finalizer
        write carries the copy's resourceVersion, so a stale one fails and is retried.
        """
        started = time.monotonic()
        if obj is None:
            try:
                obj = cast(
                    dict[str, Any],
                    self.api.get_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        namespace,
                        PLURAL,
                        name,
                        _request_timeout=self.request_timeout,
                    ),
                )
            except ApiException as exc:
                if exc.status == 404:
                    self._leases.pop(f"{namespace}/{name}", None)
                    return ReconcileResult(None)
                raise
        try:
            view = LeaseView.from_object(obj)
        except InvalidLeaseError as exc:
            log.error("%s/%s: %s; not reconciled", namespace, name, exc)
            return ReconcileResult(None)
        try:
            return self._reconcile(view)
        finally:
            self.metrics.reconcile_seconds.observe(time.monotonic() - started)

    def forget(self, key: str) -> None:
        self._leases.pop(key, None)

    # ----- one lease -----------------------------------------------------------------------------

    def _reconcile(self, view: LeaseView) -> ReconcileResult:
        now = self.clock.monotonic()
        state = self._track(view, now)
        if not view.deleting and FINALIZER not in view.finalizers:
            self._set_finalizers(view, [*view.finalizers, FINALIZER])
        elector, setup_error = self._elector_for(view, state)
        error = setup_error
        if elector is not None and elector.observed_record is None and not error:
            error = self._observe(elector)
        holder = (
            elector.observed_record.data.holder if elector and elector.observed_record else None
        )
        decision = plan(
            state.candidate,
            deleting=view.deleting,
            global_holder=holder,
            cluster=self.cluster,
            now=now,
        )
        log.debug("%s: %s (%s)", view.key, decision.action.value, decision.reason)
        confirmed = ""
        if elector is not None and not error:
            confirmed, error = self._act(view, state, elector, decision)
        if view.deleting:
            return self._finish_deletion(view, decision)
        self._write_status(view, state, elector, confirmed, error)
        delay = next_check(state.candidate, self.clock.monotonic(), self.retry_period)
        return ReconcileResult(delay, decision)

    def _track(self, view: LeaseView, now: float) -> _LeaseState:
        state = self._leases.get(view.key)
        candidate = track_candidate(
            state.candidate if state else None,
            view.holder_identity,
            view.generation,
            float(view.lease_duration_seconds),
            now,
        )
        if state is None:
            state = _LeaseState(candidate)
            self._leases[view.key] = state
        state.candidate = candidate
        return state

    def _elector_for(self, view: LeaseView, state: _LeaseState) -> tuple[LeaderElector | None, str]:
        """The elector for the current candidate; kept while the holder is empty, so it can
        release for the previous one."""
        identity = view.holder_identity
        current = state.elector
        duration = float(view.lease_duration_seconds)
        if (
            current is not None
            and (identity in ("", current.identity))
            and (current.timing.lease_duration == duration)
        ):
            return current, ""
        if not identity and current is None:
            identity = "-"  # no candidate yet: an observer that never contends
        try:
            state.elector = LeaderElector(
                self.storage,
                view.key,
                identity,
                cluster=self.cluster,
                timing=self._timing(duration),
                clock=self.clock,
                release_on_stop=False,
            )
        except (ConfigurationError, ValueError) as exc:
            return None, f"cannot elect for this lease: {exc}"
        state.confirmed_generation = None
        return state.elector, ""

    def _timing(self, lease_duration: float) -> LeaseTiming:
        retry = min(self.retry_period, lease_duration / 2.5)
        retry = max(retry, self.storage.capabilities.min_write_interval)
        return LeaseTiming(lease_duration, 0.75 * lease_duration, retry)

    def _act(
        self, view: LeaseView, state: _LeaseState, elector: LeaderElector, decision: Plan
    ) -> tuple[str, str]:
        """Carry out ``decision``; return (the identity confirmed by this reconcile, error)."""
        if decision.action is Action.CONTEND:
            if state.confirmed_generation == view.generation:
                # Renewed for this signal already. One renewal per signal: renewing again without
                # a new one would keep the lease for a candidate whose signals we cannot see
                # (say, our API server hangs) and delay the other clusters' takeover.
                return view.holder_identity, ""
            outcome = elector.step()
            if outcome.wrote:
                state.confirmed_generation = view.generation
                return view.holder_identity, ""
            return "", str(outcome.error) if outcome.error else ""
        if decision.action is Action.RELEASE:
            releaser = elector
            if decision.release_identity != elector.identity:
                releaser = LeaderElector(
                    self.storage,
                    view.key,
                    decision.release_identity,
                    cluster=self.cluster,
                    timing=elector.timing,
                    clock=self.clock,
                )
            if releaser.release():
                self.events(
                    view,
                    "Normal",
                    "Released",
                    f"released the global lease held for {decision.release_identity!r}: "
                    f"{decision.reason}",
                )
            state.confirmed_generation = None
            error = self._observe(elector)
            return "", error
        return "", self._observe(elector)

    def _observe(self, elector: LeaderElector) -> str:
        try:
            elector.observe()
        except StorageError as exc:
            return str(exc)
        return ""

    # ----- writes to the API server --------------------------------------------------------------

    def _write_status(
        self,
        view: LeaseView,
        state: _LeaseState,
        elector: LeaderElector | None,
        confirmed: str,
        error: str,
    ) -> None:
        record = elector.observed_record if elector is not None else None
        expired = elector.holder_expired() if elector is not None else True
        outcome = Outcome(view.generation, self.cluster, record, expired, confirmed, error)
        status = build_status(outcome, list(view.conditions), self.clock.now())
        self._publish(view, state, status, record)
        if _same_status(status, state.last_status):
            return
        self.api.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            view.namespace,
            PLURAL,
            view.name,
            {"status": status},
            _request_timeout=self.request_timeout,
            _content_type="application/merge-patch+json",
        )
        state.last_status = status

    def _publish(
        self, view: LeaseView, state: _LeaseState, status: dict[str, Any], record: Any
    ) -> None:
        holder = status["globalHolderIdentity"]
        leader_here = holder != "" and "/" not in holder
        self.metrics.is_leader.labels(view.namespace, view.name).set(1 if leader_here else 0)
        if record is not None:
            self.metrics.transitions.labels(view.namespace, view.name).set(
                record.data.lease_transitions
            )
        if holder and holder != state.last_holder:
            self.events(view, "Normal", "LeaderChanged", f"global leader is now {holder}")
            log.info("%s: global leader is now %s", view.key, holder)
        state.last_holder = holder

    def _finish_deletion(self, view: LeaseView, decision: Plan) -> ReconcileResult:
        if decision.action is Action.WAIT_TO_RELEASE:
            state = self._leases[view.key]
            return ReconcileResult(
                next_check(state.candidate, self.clock.monotonic(), self.retry_period), decision
            )
        if FINALIZER in view.finalizers:
            self._set_finalizers(view, [f for f in view.finalizers if f != FINALIZER])
        self._leases.pop(view.key, None)
        return ReconcileResult(None, decision)

    def _set_finalizers(self, view: LeaseView, finalizers: list[str]) -> None:
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": view.resource_version}}
        self.api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            view.namespace,
            PLURAL,
            view.name,
            body,
            _request_timeout=self.request_timeout,
            _content_type="application/merge-patch+json",
        )


def _same_status(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    if old is None:
        return False

    def strip(status: dict[str, Any]) -> dict[str, Any]:
        conditions = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status["conditions"]
        ]
        return {**status, "conditions": conditions}

    return strip(new) == strip(old)
