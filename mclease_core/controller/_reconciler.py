"""One reconcile of one MultiClusterLease: read it, act on the global lease, write status.

The reconciler keeps, per lease, what the decisions need between reconciles: the candidate's
generation and when it was first seen (liveness, rule 7), which generation was renewed, and a
:class:`LeaderElector` for the current candidate (its observation of the global record and its
cached version for one-write renewals). It is driven by the manager's work queue, one lease at a
time per key.

Every write (a compare-and-swap on the global store, a status or finalizer patch) first asks
``may_act``: a replica that lost its election term, say after a pause, acts on nothing it read
before, whatever moment it resumes in. Releases are bound to the record version they were judged
on, and status patches to the object version they were computed from, so even a write sent in the
instant between that check and a lost term changes nothing that moved on.

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

from .._changes import ChangeTracker, TrackedStorage
from .._clock import SYSTEM_CLOCK, Clock
from .._decisions import LeaseTiming
from .._elector import LeaderElector, release_observed
from .._errors import ConfigurationError, MCLeaseError, StorageError
from .._limits import MAX_DURATION, cluster_name_problem, printable
from .._storage import LeaseObject, Storage
from ..kube._client import Deadline
from ..kube._resource import FINALIZER, GROUP, PLURAL, VERSION, InvalidLeaseError, LeaseView
from ._decisions import (
    CandidateState,
    Plan,
    ReconcileAction,
    ReconcileFindings,
    Windows,
    build_status,
    next_check,
    plan,
    spec_problem,
    track_candidate,
    windows,
)
from ._metrics import MeteredStorage, Metrics

log = logging.getLogger("mclease.controller")

CONFIRM_SLACK = 0.05
"""A confirming status is sent only if at least this much of its window is left."""

_ASKS_STORE = frozenset({ReconcileAction.CONTEND, ReconcileAction.OBSERVE, ReconcileAction.RELEASE})


class NotActive(MCLeaseError):
    """This controller replica may not act (it is not the active one): nothing was written."""


class StaleCopy(MCLeaseError):
    """The object changed since the copy this reconcile acted on: reconcile it afresh."""


@dataclasses.dataclass
class _LeaseState:
    candidate: CandidateState
    uid: str = ""
    elector: LeaderElector | None = None
    renewed_generation: int | None = None
    """The generation this controller's compare-and-swap succeeded for."""
    attempted_generation: int | None = None
    renewed_at: float | None = None
    """When this controller's last compare-and-swap for the lease succeeded (monotonic)."""
    last_holder: str = ""
    reported: str = ""
    """The last warning (late signal, refused status) sent as an Event, so it is sent once."""
    last_cluster: str = ""
    """The cluster the last published status named as the holder's."""
    store_failing: bool = False
    """A BackendError Event was sent and no reconcile reached the store since."""


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
        may_act: Callable[[], bool] = lambda: True,
        changes: ChangeTracker | None = None,
    ):
        problem = cluster_name_problem(cluster)
        if problem:
            raise ConfigurationError(problem)
        self.api = api
        self.metrics = metrics or Metrics()
        self.changes = changes
        if changes is not None:
            storage = TrackedStorage(storage, changes)
        self.storage: Storage = MeteredStorage(storage, self.metrics)
        self.cluster = cluster
        self.retry_period = retry_period
        self.clock = clock
        self.events = events or (lambda view, kind, reason, message: None)
        self.request_timeout = request_timeout
        self.may_act = may_act
        self._requests = Deadline()  # real network time, whatever clock the decisions use
        self._leases: dict[str, _LeaseState] = {}

    def reconcile(
        self,
        namespace: str,
        name: str,
        obj: dict[str, Any] | None = None,
        *,
        created: bool = False,
        seen_at: float | None = None,
    ) -> ReconcileResult:
        """Reconcile one lease: ``obj`` as the watch last delivered it, or read now if ``None``.
        ``created``: the watch reported the object as created after it started. ``seen_at``:
        when the watch delivered ``obj`` (this reconciler's clock), so the windows of a signal
        count from its delivery, not from whenever a worker got to it.

        A watched copy may trail the API server by a moment; that is safe: status records the
        generation acted on (a newer signal is simply not confirmed by it), and status and
        finalizer writes carry the copy's resourceVersion, so a stale one fails and is retried.
        """
        if obj is None:
            try:
                obj = cast(
                    dict[str, Any],
                    self._request(
                        self.api.get_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        namespace,
                        PLURAL,
                        name,
                    ),
                )
            except ApiException as exc:
                if exc.status == 404:
                    self.forget(f"{namespace}/{name}")
                    return ReconcileResult(None)
                raise
        try:
            view = LeaseView.from_object(obj)
        except InvalidLeaseError as exc:
            log.error("%s/%s: %s; not reconciled", namespace, name, printable(exc, 300))
            return ReconcileResult(None)
        return self._reconcile(view, created, seen_at)

    def forget(self, key: str) -> None:
        """Drop what is known of a lease that no longer exists here, its metrics included."""
        self._leases.pop(key, None)
        namespace, _, name = key.partition("/")
        self.metrics.forget_lease(namespace, name)

    # ----- one lease -----------------------------------------------------------------------------

    def _reconcile(self, view: LeaseView, created: bool, seen_at: float | None) -> ReconcileResult:
        now = self.clock.monotonic()
        state = self._track(view, now if seen_at is None else min(now, seen_at), created)
        if not view.deleting and FINALIZER not in view.finalizers:
            view = self._set_finalizers(view, [*view.finalizers, FINALIZER])
        problem, lease_windows = self._assess(view)
        elector, error = self._elector_for(view, state, lease_windows)
        if elector is not None and elector.observed_record is None and not error:
            error = self._observe(elector)
        record = elector.observed_record if elector is not None else None
        held_for = self._held_for(record)
        decision = plan(
            state.candidate,
            deleting=view.deleting,
            held_for=held_for,
            stopped_first=bool(held_for)
            and view.holder_identity == ""
            and view.released_by(held_for),
            renewed=state.renewed_generation == view.generation,
            attempted=state.attempted_generation == view.generation,
            problem=problem,
            windows=lease_windows,
            record_hold=record.data.lease_duration_seconds if record is not None else 0.0,
            now=now,
            missed=view.missed_by(view.holder_identity),
            renewed_ago=None if state.renewed_at is None else now - state.renewed_at,
        )
        log.debug("%s: %s (%s)", view.key, decision.action.value, decision.reason)
        confirmed = ""
        if elector is not None and not error:
            confirmed, error = self._act(view, state, elector, decision)
        if view.deleting:
            result = self._finish_deletion(view, state, elector, decision, error)
            if self._leases.get(view.key) is state:  # not for an object that is gone
                self._report_store(view, state, decision.action, error)
            return result
        if decision.action is not ReconcileAction.WAIT or _needs_withdrawal(view):
            self._write_status(view, state, elector, confirmed, error, decision, lease_windows)
        self._report_store(view, state, decision.action, error)  # after status: Events are slow
        delay = next_check(decision, self.clock.monotonic(), self.retry_period)
        return ReconcileResult(delay, decision)

    def _track(self, view: LeaseView, now: float, created: bool) -> _LeaseState:
        state = self._leases.get(view.key)
        if state is not None and state.uid != view.uid:
            state = None  # deleted and recreated (a DELETED event missed): a new object
        candidate = track_candidate(
            state.candidate if state else None,
            view.holder_identity,
            view.generation,
            now,
            created=created,
            deleting=view.deleting,
        )
        if state is None:
            state = _LeaseState(candidate, uid=view.uid)
            self._leases[view.key] = state
        state.candidate = candidate
        return state

    def _assess(self, view: LeaseView) -> tuple[str, Windows | None]:
        """Why the spec is refused (or ``""``), and the windows of its candidate."""
        problem = spec_problem(view)
        if problem:
            return problem, None
        lease_windows = windows(
            view.lease_duration_seconds,
            view.renew_deadline_seconds,
            view.retry_period_seconds,
            view.call_bound_of(view.holder_identity),
        )
        if lease_windows.hold > MAX_DURATION:
            return (
                f"these timings need the global lease held {lease_windows.hold:g}s per renewal, "
                f"above the limit of {MAX_DURATION:g}s; shorten leaseDurationSeconds or set "
                "renewDeadlineSeconds",
                None,
            )
        return "", lease_windows

    def _held_for(self, record: LeaseObject | None) -> str:
        if record is None or record.data.is_released or record.data.holder_cluster != self.cluster:
            return ""
        return record.data.holder_identity

    def _elector_for(
        self, view: LeaseView, state: _LeaseState, lease_windows: Windows | None
    ) -> tuple[LeaderElector | None, str]:
        """The elector for the current candidate. Kept while the spec names nobody valid (an
        empty holder, a refused spec), whatever else changed, so it can release for the previous
        candidate; rebuilt for a new candidate or new timings."""
        identity = view.holder_identity if lease_windows is not None else ""
        current = state.elector
        hold = lease_windows.hold if lease_windows is not None else None
        same_timing = hold is None or (
            current is not None and current.timing.lease_duration == hold
        )
        if current is not None and identity in ("", current.identity) and same_timing:
            return current, ""
        if not identity:
            identity = "-"  # no candidate yet: an observer that never contends
        try:
            state.elector = LeaderElector(
                self.storage,
                view.key,
                identity,
                cluster=self.cluster,
                timing=self._timing(
                    hold if hold is not None else float(view.lease_duration_seconds)
                ),
                clock=self.clock,
                release_on_stop=False,
                changes=self.changes,
            )
        except (ConfigurationError, ValueError) as exc:
            return None, f"cannot elect for this lease: {exc}"
        if current is not None:
            state.elector.adopt_observation(current)
        state.renewed_generation = None
        return state.elector, ""

    def _timing(self, hold: float) -> LeaseTiming:
        hold = min(max(hold, 1.0), MAX_DURATION)
        retry = min(self.retry_period, hold / 2.5)
        retry = max(retry, self.storage.capabilities.min_write_interval)
        return LeaseTiming(hold, 0.75 * hold, retry)

    def _act(
        self,
        view: LeaseView,
        state: _LeaseState,
        elector: LeaderElector,
        decision: Plan,
    ) -> tuple[str, str]:
        """Carry out ``decision``; return (the identity renewed for this generation, which the
        status confirms if its window is still open when it is written; error)."""
        action = decision.action
        if action is ReconcileAction.CONTEND:
            self._check_active()
            state.attempted_generation = view.generation
            step = elector.step()
            if elector.fatal_error is not None:  # the store refused the configuration, say
                state.elector = None  # a rotated password: report it, build a new elector next
                return "", str(elector.fatal_error)
            if step.wrote:
                state.renewed_generation = view.generation
                state.renewed_at = self.clock.monotonic()
                return view.holder_identity, ""
            return "", str(step.error) if step.error else ""
        if action is ReconcileAction.PUBLISH:
            return (view.holder_identity if decision.confirm else ""), ""
        if action is ReconcileAction.RELEASE:
            return "", self._release(view, state, elector, decision)
        if action is ReconcileAction.OBSERVE:
            return "", self._observe(elector)
        return "", ""

    def _release(
        self, view: LeaseView, state: _LeaseState, elector: LeaderElector, decision: Plan
    ) -> str:
        record = elector.observed_record
        if record is None:
            return ""
        self._check_active()
        try:
            released = release_observed(self.storage, view.key, record, self.clock.now())
        except (StorageError, ConfigurationError) as exc:
            return str(exc)
        state.renewed_generation = None
        if released is not None:
            self.events(
                view,
                "Normal",
                "Released",
                f"released the global lease held for {printable(decision.release_identity)}: "
                f"{decision.reason}",
            )
            log.info(
                "%s: released the global lease held for %s (%s)",
                view.key,
                printable(decision.release_identity),
                decision.reason,
            )
        return self._observe(elector)

    def _observe(self, elector: LeaderElector) -> str:
        try:
            elector.observe()
        except (StorageError, ConfigurationError) as exc:
            return str(exc)
        return ""

    def _check_active(self) -> None:
        if not self.may_act():
            raise NotActive("this replica is not the active one; nothing written")

    # ----- writes to the API server --------------------------------------------------------------

    def _write_status(
        self,
        view: LeaseView,
        state: _LeaseState,
        elector: LeaderElector | None,
        confirmed: str,
        error: str,
        decision: Plan,
        lease_windows: Windows | None,
        *,
        deleting: bool = False,
    ) -> None:
        record = elector.observed_record if elector is not None else None
        expired = elector.holder_expired() if elector is not None else True
        budget = self.request_timeout
        if confirmed:  # rule 11: the window is absolute, whatever this reconcile spent so far
            left = -1.0
            if lease_windows is not None:
                left = state.candidate.first_seen + lease_windows.confirm - self.clock.monotonic()
            if left < CONFIRM_SLACK:
                confirmed = ""
            else:
                budget = min(budget, left)
        findings = ReconcileFindings(
            view.generation,
            self.cluster,
            record,
            expired,
            confirmed,
            error,
            problem=decision.problem,
            late=decision.late,
            deleting=deleting,
            spec_holder="" if decision.problem else view.holder_identity,
        )
        status = build_status(findings, list(view.conditions), self.clock.now())
        if not (view.status_is_possible and _same_status(status, view.status)):
            try:
                self._patch_status(view, status, budget)
            except ApiException as exc:
                if exc.status != 422:
                    raise
                self._status_refused(view, state, status, exc)
        self._publish(view, state, status, record, decision, findings.confirms())

    def _patch_status(self, view: LeaseView, status: dict[str, Any], budget: float) -> None:
        """The answer (the whole object) is read but not decoded: nothing here needs it, and
        decoding it into the client's types cost as much CPU as sending the patch."""
        answer = self._patch(
            view,
            self.api.patch_namespaced_custom_object_status,
            {"status": status},
            budget,
            _preload_content=False,
        )
        read = getattr(answer, "read", None)
        if callable(read):  # a raw HTTP response: read to the end, so its connection is reused
            read()

    def _status_refused(
        self, view: LeaseView, state: _LeaseState, status: dict[str, Any], exc: ApiException
    ) -> None:
        """The API server refused the status (a value its schema cannot hold): write one that
        confirms nobody and says why, once; never retry the refused one in a loop."""
        why = f"the API server refused the status: {printable(exc.body or exc.reason, 500)}"
        log.error("%s: %s", view.key, why)
        self.metrics.status_rejections.inc()
        if state.reported != why:
            state.reported = why
            self.events(view, "Warning", "StatusRejected", why)
        fallback = {
            "observedGeneration": view.generation,
            "globalHolderIdentity": "",
            "globalHolderCluster": "",
            "fencingToken": None,
            "conditions": [
                {**condition, "status": "False", "reason": "StatusRejected", "message": why}
                for condition in status["conditions"]
            ],
        }
        try:
            self._patch_status(view, fallback, self.request_timeout)
        except ApiException as again:
            log.error(
                "%s: the API server refused the fallback status too: HTTP %s",
                view.key,
                again.status,
            )

    def _publish(
        self,
        view: LeaseView,
        state: _LeaseState,
        status: dict[str, Any],
        record: Any,
        decision: Plan,
        confirmed: bool,
    ) -> None:
        """Metrics, Events and logs of what status says, after it was written (an Event that
        takes long must not delay a confirmation)."""
        self.metrics.is_leader.labels(view.namespace, view.name).set(1 if confirmed else 0)
        if record is not None:
            self.metrics.transitions.labels(view.namespace, view.name).set(
                record.data.lease_transitions
            )
        self._report_holder(view, state, status, decision)
        warning = decision.problem or ("late" if decision.late else "")
        if warning and state.reported != warning:
            state.reported = warning
            if decision.late:
                self.metrics.late_signals.inc()
                message = (
                    f"signal of {printable(view.holder_identity)} (generation {view.generation}) "
                    f"not renewed: {decision.reason}"
                )
                self.events(view, "Warning", "ConfirmationLate", message)
                log.warning("%s: %s", view.key, message)
            else:
                self.events(view, "Warning", "InvalidSpec", decision.problem)
                log.warning("%s: spec refused: %s", view.key, decision.problem)
        elif not warning and decision.action is ReconcileAction.PUBLISH:
            state.reported = ""

    def _report_holder(
        self, view: LeaseView, state: _LeaseState, status: dict[str, Any], decision: Plan
    ) -> None:
        """An Event when the holder status names changes: a Warning when this cluster held the
        global lease and lost it without releasing it (taken over, or run out)."""
        holder, cluster = status["globalHolderIdentity"], status["globalHolderCluster"]
        lost = (
            state.last_cluster == self.cluster
            and cluster != self.cluster
            and decision.action is not ReconcileAction.RELEASE
        )
        now_held_by = printable(holder) if holder else "nobody"
        if lost:
            message = (
                f"this cluster lost the global lease of {printable(state.last_holder)}; "
                f"global leader is now {now_held_by}"
            )
            self.events(view, "Warning", "LeadershipLost", message)
            log.warning("%s: %s", view.key, message)
        elif holder and holder != state.last_holder:
            self.events(view, "Normal", "LeaderChanged", f"global leader is now {now_held_by}")
            log.info("%s: global leader is now %s", view.key, now_held_by)
        state.last_holder, state.last_cluster = holder, cluster

    def _report_store(
        self, view: LeaseView, state: _LeaseState, action: ReconcileAction, error: str
    ) -> None:
        """One Warning when reconciles of the lease start failing on the global store (or on an
        elector it cannot build), one Normal when one of those that ask it gets through again."""
        if error and not state.store_failing:
            state.store_failing = True
            self.events(
                view, "Warning", "BackendError", f"global store error: {printable(error, 500)}"
            )
        elif not error and state.store_failing and action in _ASKS_STORE:
            state.store_failing = False
            self.events(view, "Normal", "BackendHealthy", "the global store answers again")

    def _finish_deletion(
        self,
        view: LeaseView,
        state: _LeaseState,
        elector: LeaderElector | None,
        decision: Plan,
        error: str,
    ) -> ReconcileResult:
        if decision.action is ReconcileAction.WAIT_TO_RELEASE:
            self._write_status(view, state, elector, "", error, decision, None, deleting=True)
            delay = next_check(decision, self.clock.monotonic(), self.retry_period)
            return ReconcileResult(delay, decision)
        if decision.action is ReconcileAction.RELEASE and error:
            return ReconcileResult(self.retry_period, decision)  # keep the finalizer; retry
        if FINALIZER in view.finalizers:
            self._set_finalizers(view, [f for f in view.finalizers if f != FINALIZER])
        self.forget(view.key)
        return ReconcileResult(None, decision)

    def _set_finalizers(self, view: LeaseView, finalizers: list[str]) -> LeaseView:
        """Write the finalizers; the view as it is afterwards (a new resourceVersion)."""
        patch = self.api.patch_namespaced_custom_object
        written = self._patch(view, patch, {"metadata": {"finalizers": finalizers}})
        version = str(((written or {}).get("metadata") or {}).get("resourceVersion") or "")
        return dataclasses.replace(
            view, resource_version=version or view.resource_version, finalizers=tuple(finalizers)
        )

    def _patch(
        self,
        view: LeaseView,
        method: Callable[..., Any],
        body: dict[str, Any],
        budget: float | None = None,
        **options: Any,
    ) -> Any:
        """A merge patch of the object as of ``view`` (its resourceVersion is the precondition),
        sent only while this replica may act: :class:`StaleCopy` when the object moved on.
        ``options`` go to the client (``_preload_content``)."""
        self._check_active()
        metadata = {**body.get("metadata", {}), "resourceVersion": view.resource_version}
        try:
            return self._request(
                method,
                GROUP,
                VERSION,
                view.namespace,
                PLURAL,
                view.name,
                {**body, "metadata": metadata},
                budget=budget,
                _content_type="application/merge-patch+json",
                **options,
            )
        except ApiException as exc:
            if exc.status == 409:
                raise StaleCopy(f"{view.key} changed while it was reconciled") from exc
            raise

    def _request(
        self, method: Callable[..., Any], *args: Any, budget: float | None = None, **kwargs: Any
    ) -> Any:
        seconds = self.request_timeout if budget is None else budget
        return self._requests.call(method, *args, until=time.monotonic() + seconds, **kwargs)


def _needs_withdrawal(view: LeaseView) -> bool:
    """At first sight status is left alone, unless it is impossible, or it confirms the current
    generation (a controller that stopped may have confirmed it; its window is unknown here):
    withdrawn, it still names the same holder (see ``build_status``), so nobody is demoted."""
    if not view.status_is_possible:
        return True
    return (
        view.holder_identity != ""
        and view.observed_generation == view.generation
        and view.global_holder_identity == view.holder_identity
    )


def _same_status(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    if not old:
        return False

    def strip(status: dict[str, Any]) -> dict[str, Any]:
        conditions = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in status.get("conditions") or ()
            if isinstance(c, dict)
        ]
        return {**{k: v for k, v in status.items() if v is not None}, "conditions": conditions}

    return strip(new) == strip(old)
