"""``MultiClusterLeaseLock``: the candidate's lock, for ``kubernetes.leaderelection`` unchanged.

Signal, then wait. ``create``/``update`` write the candidate into ``spec`` with the API server's
optimistic concurrency (the ``resourceVersion`` of the last ``get``): only one local candidate can
hold the spec, which is the local election. Then the call waits until the election controller
confirms it in ``status``: ``observedGeneration`` at least the generation this write produced,
and ``globalHolderIdentity`` naming this candidate. A stale status never confirms anyone, nor does
an impossible one (``observedGeneration`` above ``metadata.generation``). The call learns of the
status through a watch of its object (:class:`ObjectWatch`), reading the object itself when the
watch says nothing for ``FALLBACK_POLL``, and polling every ``POLL_INTERVAL`` while it is down.

Every call ends by its deadline (docs/safety.md, rule 10), :func:`confirmation_bound` after it
started on the monotonic clock, whatever the network does (``_client.Deadline``), and a
confirmation seen after it is refused. Why that keeps two leaders apart (rule 9): the
controller renews the global lease only after it saw our signal, so another cluster can take the
lease over no earlier than ``D`` after the signal, which is after the call started at ``t0``.
After its last successful call returned (by ``t0 + C``), the standard Python elector sleeps
``P``, retries until ``R`` has passed, and its last, failing try (a ``get`` and an ``update``, up
to ``C`` each) is followed by one more sleep of ``P`` before it notices the deadline and calls
``onstopped_leading``. So it stops by ``t0 + 3C + 2P + R``, and ``3C + 2P + R + margin = D`` keeps
that before ``t0 + D``.

That elector measures its deadlines with ``time.time()``: a wall clock stepped back, or a process
paused and resumed, keeps it renewing past them. The lock keeps its own term on the monotonic
clock and refuses every call of a term that is over by it, so such a term is never confirmed
again and the elector has to notice its loss (``onstopped_leading``) before it can lead anew.
:meth:`MultiClusterLeaseLock.election_config` builds the elector's ``Config`` from the lock's own
timings and tells the lock when the elector stops; :attr:`MultiClusterLeaseLock.fencing_token` is
``None`` once the term is over by this process's monotonic clock.

Not here: the election loop (``kubernetes.leaderelection.LeaderElection``, or our
:class:`~mclease_core.kube.CandidateElector`), and the controller.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection import electionconfig
from kubernetes.leaderelection.leaderelectionrecord import LeaderElectionRecord

from .._clock import SYSTEM_CLOCK, Clock
from .._decisions import LeaseTiming
from .._decisions import safety_margin as lease_margin
from .._limits import identity_problem, printable
from ._client import Deadline, describe_error, single_attempt_client
from ._object_watch import FALLBACK_POLL, ObjectWatch
from ._resource import (
    ANNOTATION_CANDIDATE,
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    LeaseView,
    format_time,
)

log = logging.getLogger("mclease.lock")

MIN_CALL_BOUND = 0.25
"""The shortest bound on one lock call that still leaves time for a write and a confirmation."""
POLL_INTERVAL = 0.02


def safety_margin(timing: LeaseTiming) -> float:
    """Slack for clock-rate differences, scheduling and stopping the work: 10% of D, >= 0.5 s."""
    return lease_margin(timing.lease_duration)


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


def whole_seconds(name: str, value: float) -> int:
    """``value`` if it is a whole number of seconds; the MultiClusterLease spec holds only those,
    and every cluster computes its bounds from what the spec holds."""
    whole = isinstance(value, int | float) and not isinstance(value, bool)
    if not whole or not math.isfinite(value) or not float(value).is_integer():
        raise ValueError(
            f"{name} must be a whole number of seconds (the MultiClusterLease spec holds whole "
            f"seconds and every controller computes its bounds from it), got {value!r}"
        )
    return int(value)


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
    ``identity``, ``get``, ``create``, ``update``). Build the elector's ``Config`` with
    :meth:`election_config`, so both use the same timings.
    """

    def __init__(
        self,
        name: str,
        namespace: str,
        identity: str,
        *,
        lease_duration: int = 20,
        renew_deadline: int = 10,
        retry_period: int = 2,
        api_client: k8s.ApiClient | None = None,
        clock: Clock = SYSTEM_CLOCK,
        watch: bool = True,
    ):
        problem = identity_problem(identity, allow_slash=False) if identity else "it is empty"
        if problem:
            raise ValueError(f"invalid candidate identity: {problem}")
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.timing = LeaseTiming(
            whole_seconds("lease_duration", lease_duration),
            whole_seconds("renew_deadline", renew_deadline),
            whole_seconds("retry_period", retry_period),
        )
        self.call_bound = confirmation_bound(self.timing)
        self.clock = clock
        self._api = k8s.CustomObjectsApi(single_attempt_client(api_client))
        self.watch: ObjectWatch | None = None
        """The watch of the object, started with the first call (``watch=False``: poll only)."""
        if watch:
            watch_api = k8s.CustomObjectsApi(single_attempt_client(api_client, keep_alive=True))
            self.watch = ObjectWatch(watch_api, namespace, name)
        self._deadline = Deadline(clock)
        self._watch_warned = False
        self._refused_reported = False
        """Whether a refusal by RBAC was logged as a warning (once: the elector retries forever)."""
        self._last_seen: dict[str, Any] | None = None
        self.last_confirmation: Confirmation | None = None
        self.last_status: LeaseView | None = None
        self._guard = threading.Lock()
        self._term_end: float | None = None
        """Monotonic: the latest moment a call of the confirmed term may start on a correct
        clock: the last confirmed call started at ``t0`` returned by ``t0 + C``; the elector sleeps
        ``P`` and retries until ``R`` has passed, its last try being a ``get`` (up to ``C``) and
        an ``update``: ``t0 + 2C + P + R``."""
        self._elector_leading: bool | None = None
        """What the elector believes, when it tells us (``election_config``, CandidateElector);
        ``None`` when it does not."""
        self._refuse_until: float | None = None
        self._last_return: float | None = None
        self._warned_period = False
        self._gave_up: set[int] = set()
        """Generations of the latest calls that ended unconfirmed at their bound."""
        self._missed = 0
        """Signals in a row confirmed only after their call had given up (see ``_annotation``)."""

    # ----- building the elector -----------------------------------------------------------------

    def election_config(
        self,
        onstarted_leading: Callable[[], None],
        onstopped_leading: Callable[[], None] | None = None,
    ) -> electionconfig.Config:
        """The standard elector's ``Config`` with this lock's timings; it also tells the lock
        when the elector stops leading, so a term that is over is refused until it has."""
        self.bind_elector()

        def stopped() -> None:
            self.end_term()
            if onstopped_leading is not None:
                onstopped_leading()

        return electionconfig.Config(
            self,
            int(self.timing.lease_duration),
            int(self.timing.renew_deadline),
            int(self.timing.retry_period),
            onstarted_leading,
            stopped,
        )

    def bind_elector(self) -> None:
        """The elector using this lock calls :meth:`end_term` whenever it stops leading (the
        ``Config`` of :meth:`election_config` and ``CandidateElector`` do)."""
        with self._guard:
            self._elector_leading = False

    def end_term(self) -> None:
        """The elector has stopped leading: its next calls campaign anew."""
        with self._guard:
            self._term_end = None
            self._refuse_until = None
            if self._elector_leading is not None:
                self._elector_leading = False

    @property
    def fencing_token(self) -> int | None:
        """The token of the current term, or ``None`` once the term is over by this process's
        monotonic clock (whatever the elector believes): check it before every fenced write."""
        with self._guard:
            end = self._term_end
        confirmation = self.last_confirmation
        if end is None or confirmation is None or self.clock.monotonic() > end:
            return None
        return confirmation.fencing_token

    # ----- the interface of kubernetes.leaderelection --------------------------------------------

    def get(self, name: str, namespace: str) -> tuple[bool, Any]:
        """``(True, record)`` from status, or ``(False, ApiException)`` (404 when missing)."""
        self._start_watch()
        started = self.clock.monotonic()
        refusal = self._refusal(started, "get")
        if refusal:
            return False, _refused(refusal)
        try:
            obj = self._call(
                self._api.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                until=started + self.call_bound,
            )
            view = LeaseView.from_object(obj)
        except ApiException as exc:
            self._last_seen = None
            return False, exc
        except Exception as exc:
            self._last_seen = None
            return False, _refused(f"{type(exc).__name__}: {exc}")
        self._last_seen = obj
        self.last_status = view
        self._note_late_confirmation(view)
        self._warn_unwatched()
        return True, _record_from(view)

    def create(self, name: str, namespace: str, election_record: Any) -> bool:
        self._start_watch()
        started = self.clock.monotonic()
        if self._refusal(started, "create") or not self._duration_matches(election_record):
            return False
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {ANNOTATION_CANDIDATE: self._annotation()},
            },
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
                until=started + self.call_bound,
            )
        except Exception as exc:
            log.info("%s: create failed: %s", self.describe(), describe_error(exc))
            return self._returned(False)
        return self._returned(self._await_confirmation(started, written))

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        started = self.clock.monotonic()
        if self._refusal(started, "update"):
            return False
        if self._last_seen is None:
            log.info("%s: update without a preceding get; refusing", self.describe())
            return False
        if not self._duration_matches(updated_record):
            return False
        if (self._last_seen.get("metadata") or {}).get("deletionTimestamp"):
            log.info("%s: the object is being deleted; not signalling", self.describe())
            return self._returned(False)
        body = self._body(self._spec(), self._annotation())
        try:
            written = self._call(
                self._api.replace_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body,
                until=started + self.call_bound,
            )
        except ApiException as exc:
            reason = (
                "another candidate holds the local lock"
                if exc.status == 409
                else describe_error(exc)
            )
            log.info("%s: signal not written: %s", self.describe(), reason)
            return self._returned(False)
        except Exception as exc:
            log.info("%s: signal not written: %s", self.describe(), describe_error(exc))
            return self._returned(False)
        return self._returned(self._await_confirmation(started, written))

    def close(self) -> None:
        """Stop the watch of the object (the lock polls if used again)."""
        if self.watch is not None:
            self.watch.stop()
            self.watch = None

    def _warn_unwatched(self) -> None:
        """Once: the object can be read but not watched (a candidate role from before watches)."""
        refused = self.watch.refused if self.watch is not None else None
        if refused is not None and not self._watch_warned:
            self._watch_warned = True
            log.warning(
                "%s: cannot watch the object (HTTP %s): polling for confirmations instead; give "
                "the candidate's role the list and watch verbs on multiclusterleases "
                "(config/rbac/candidate_role.yaml)",
                self.describe(),
                refused.status,
            )

    def _start_watch(self) -> None:
        watch = self.watch
        if watch is not None and not watch.started:
            watch.start()

    def describe(self) -> str:
        return f"multiclusterlease/{self.namespace}/{self.name} as {printable(self.identity)}"

    # ----- release ------------------------------------------------------------------------------

    def release(self) -> bool:
        """Write an empty holder (only if we hold the spec) so the controller releases the
        global lease at once. Call it only after the work has stopped: the write says so."""
        self.end_term()
        started = self.clock.monotonic()
        ok, _ = self.get(self.name, self.namespace)
        if not ok or self._last_seen is None:
            return False
        spec = self._last_seen.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return False
        released = {**spec, "holderIdentity": "", "renewTime": format_time(self.clock.now())}
        body = self._body(released, json.dumps({"identity": self.identity, "released": True}))
        try:
            self._call(
                self._api.replace_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                self.name,
                body,
                until=started + self.call_bound,
            )
        except Exception as exc:
            log.info("%s: release not written: %s", self.describe(), describe_error(exc))
            return False
        return True

    # ----- signal, then poll ------------------------------------------------------------------

    def _spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "renewTime": format_time(self.clock.now()),
            "leaseDurationSeconds": int(self.timing.lease_duration),
            "renewDeadlineSeconds": int(self.timing.renew_deadline),
            "retryPeriodSeconds": int(self.timing.retry_period),
        }

    def _annotation(self) -> str:
        """Tells the controller how long this candidate waits for a confirmation, and how many
        of its signals in a row were confirmed only after it had stopped waiting, so the
        controller stops renewing for signals it cannot confirm in time."""
        note: dict[str, Any] = {"identity": self.identity, "callBound": round(self.call_bound, 3)}
        if self._missed:
            note["missed"] = self._missed
        return json.dumps(note)

    def _note_late_confirmation(self, view: LeaseView) -> None:
        """A status read after a call gave up: did it confirm that call after all?

        Only the latest signal counts. A controller that does not renew a signal (it refuses
        candidates whose confirmations come late) writes the status of the generation before it,
        which names this candidate for the signal before: counting that as a late confirmation
        of the earlier signal kept ``missed`` growing with every refusal, so the controller
        never renewed again (found by the simulator, seed 1327). The refusal of the signal a
        call is still polling for names the one before, which is the latest one given up on: the
        lock condition, which names the generation reconciled, tells it from a late confirmation
        (seeds 7037, 10649 and 17650: without it nobody led again after a store outage)."""
        if not self._gave_up or not view.status_is_possible:
            return
        confirmed = view.observed_generation
        reconciled = view.reconciled_generation
        if (
            view.holder_identity == self.identity
            and view.global_holder_identity == self.identity
            and confirmed == max(self._gave_up)
            and (reconciled is None or reconciled == confirmed)
        ):
            self._missed += 1
            self._gave_up = {g for g in self._gave_up if g > confirmed}
            log.warning(
                "%s: the controller confirmed a signal after this candidate stopped waiting (%d "
                "in a row): the path signal -> confirmation is slower than the call bound %.2fs",
                self.describe(),
                self._missed,
                self.call_bound,
            )

    def _body(self, spec: dict[str, Any], annotation: str) -> dict[str, Any]:
        assert self._last_seen is not None
        body = dict(self._last_seen)
        metadata = dict(body.get("metadata") or {})
        annotations = {**(metadata.get("annotations") or {}), ANNOTATION_CANDIDATE: annotation}
        metadata["annotations"] = annotations
        body["metadata"] = metadata
        body["spec"] = {**(body.get("spec") or {}), **spec}
        body.pop("status", None)
        return body

    def _await_confirmation(self, started: float, written: dict[str, Any]) -> bool:
        generation = int(written["metadata"]["generation"])
        self._last_seen = written
        until = started + self.call_bound
        # A status that had already observed this generation when the signal created it was
        # written for a generation that did not exist yet (rule 8): it confirms nothing, also
        # once the generation caught up with it. The simulator found two leaders when a status
        # forged one generation ahead named the candidate whose next signal reached it.
        found = written.get("status")
        observed = _int_or_zero(found.get("observedGeneration")) if isinstance(found, dict) else 0
        found_at_signal = found if observed >= generation else None
        seen = -1
        while True:
            if self.clock.monotonic() >= until:
                log.info(
                    "%s: no confirmation of generation %d within %.2fs; not leading",
                    self.describe(),
                    generation,
                    self.call_bound,
                )
                self._gave_up = {*sorted(self._gave_up)[-7:], generation}
                return False
            obj, polled = None, False
            watch = self.watch
            if watch is not None and watch.healthy:
                left = until - self.clock.monotonic()
                seen, obj = watch.wait_newer(seen, max(0.0, min(FALLBACK_POLL, left)))
                if obj is not None and not _after_write(obj, written):
                    obj = None  # a copy from before the write: nothing new, read it if silent
            if obj is None:
                polled = True
                try:
                    obj = self._call(
                        self._api.get_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        self.namespace,
                        PLURAL,
                        self.name,
                        until=until,
                    )
                except Exception as exc:
                    log.debug("%s: poll failed: %s", self.describe(), describe_error(exc))
                    self._pause(until)
                    continue
            try:
                view = LeaseView.from_object(obj)
            except Exception as exc:
                log.debug("%s: unreadable copy: %s", self.describe(), describe_error(exc))
                self._pause(until)
                continue
            self.last_status = view
            self._note_late_confirmation(view)
            verdict = _judge(view, generation, self.identity)
            if verdict and found_at_signal is not None and view.status == found_at_signal:
                verdict = None  # not rewritten since the signal: see found_at_signal
            if verdict is not None:
                return self._accept(started, generation, view, obj) if verdict else False
            if polled and (watch is None or not watch.healthy):
                self._pause(until)

    def _pause(self, until: float) -> None:
        time.sleep(max(0.0, min(POLL_INTERVAL, until - self.clock.monotonic())))

    def _accept(
        self, started: float, generation: int, view: LeaseView, obj: dict[str, Any]
    ) -> bool:
        if self.clock.monotonic() - started > self.call_bound:
            log.warning("%s: confirmation arrived too late; refused", self.describe())
            return False
        self._last_seen = obj
        self.last_confirmation = Confirmation(generation, view.fencing_token, started)
        self._missed, self._gave_up = 0, set()
        timing = self.timing
        with self._guard:
            self._term_end = (
                started + 2 * self.call_bound + timing.retry_period + timing.renew_deadline
            )
            self._refuse_until = None
            if self._elector_leading is not None:
                self._elector_leading = True
        return True

    def _refusal(self, now: float, call: str) -> str:
        """Why this call must be refused: it belongs to a term that is over by our clock and the
        elector has not noticed yet (``""``: go ahead)."""
        with self._guard:
            end = self._term_end
            if end is None or now <= end:
                self._check_period(now, call)
                return ""
            if self._elector_leading is False:  # the elector stopped: this is a new campaign
                self._term_end = None
                return ""
            first = self._refuse_until is None
            if self._elector_leading is None:  # it does not tell us: wait out its renew loop
                timing = self.timing
                if first:
                    self._refuse_until = (
                        now + timing.renew_deadline + 2 * timing.retry_period + self.call_bound
                    )
                elif self._refuse_until is not None and now >= self._refuse_until:
                    self._term_end = self._refuse_until = None
                    return ""
            elif first:  # it tells us: refuse until it has stopped leading (end_term)
                self._refuse_until = math.inf
        if first:
            log.error(
                "%s: the elector still renews a term that ended %.1fs ago by the monotonic clock "
                "(a process pause, a wall clock stepped back, or an elector with a longer "
                "renew_deadline or retry_period than the lock's); refusing its calls until it "
                "stops leading",
                self.describe(),
                now - end,
            )
        return "the lock's term is over by the monotonic clock; the elector must stop leading"

    def _check_period(self, now: float, call: str) -> None:
        """An elector whose retry period is longer than the lock's renews late: say so once."""
        last, self._last_return = self._last_return, None
        if call != "get" or last is None or self._warned_period or self._term_end is None:
            return
        gap = now - last
        period = self.timing.retry_period
        if gap > period + max(0.5, period / 4):
            self._warned_period = True
            log.error(
                "%s: the elector renewed %.2fs after its last confirmed call, but the lock's "
                "retry_period is %gs: give the elector and the lock the same timings "
                "(MultiClusterLeaseLock.election_config)",
                self.describe(),
                gap,
                period,
            )

    def _returned(self, confirmed: bool) -> bool:
        if confirmed:
            with self._guard:
                self._last_return = self.clock.monotonic()
        return confirmed

    def _call(self, method: Callable[..., Any], *args: Any, until: float) -> Any:
        try:
            return self._deadline.call(method, *args, until=until)
        except ApiException as exc:
            if exc.status in (401, 403):
                self._warn_refused(exc)
            raise

    def _warn_refused(self, exc: ApiException) -> None:
        """Say once why every call fails when RBAC refuses them (the elector only retries)."""
        if self._refused_reported:
            return
        self._refused_reported = True
        log.warning(
            "%s: the API server refused the lock (%s); bind the ClusterRole mclease-candidate "
            "to this pod's service account in namespace %s (config/rbac/candidate_role.yaml)",
            self.describe(),
            describe_error(exc),
            self.namespace,
        )

    def _duration_matches(self, record: Any) -> bool:
        written = getattr(record, "lease_duration", None)
        if written is not None and float(written) != self.timing.lease_duration:
            log.error(
                "%s: the elector's lease_duration (%s) differs from the lock's (%g); give both "
                "the same timings (MultiClusterLeaseLock.election_config)",
                self.describe(),
                printable(written),
                self.timing.lease_duration,
            )
            return False
        return True


def _after_write(copy: dict[str, Any], written: dict[str, Any]) -> bool:
    """Whether a watched ``copy`` is of the object the write produced, as of that write or
    later: the same uid and at least its generation. A watch's latest copy can predate the write
    (an event in flight), or be of an object since deleted and recreated under the same name (a
    watch that went silent keeps its last copy): judged, such a copy confirmed a create without
    any renewal for it (found in review), or failed a handoff's first call."""
    copy_meta = copy.get("metadata") or {}
    written_meta = written.get("metadata") or {}
    return (
        bool(copy_meta.get("uid"))
        and copy_meta.get("uid") == written_meta.get("uid")
        and _int_or_zero(copy_meta.get("generation"))
        >= _int_or_zero(written_meta.get("generation"))
    )


def _int_or_zero(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _judge(view: LeaseView, generation: int, identity: str) -> bool | None:
    """True: confirmed. False: our signal was overtaken. None: not decided yet."""
    if view.holder_identity != identity:
        return False  # another local candidate wrote the spec after us
    if not view.status_is_possible:
        return None  # a status for a generation that does not exist yet: forged, never obeyed
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
    An impossible status (see :func:`_judge`) is ignored.
    """
    global_holder = view.global_holder_identity if view.status_is_possible else ""
    renew_time = view.global_renew_time if view.status_is_possible else ""
    return LeaderElectionRecord(
        global_holder or view.holder_identity or None,
        str(view.lease_duration_seconds),
        renew_time or "",
        renew_time or "",
    )


def _refused(reason: str) -> ApiException:
    """A failed lock call as the standard elector expects one: an ApiException with a Status
    body (kubernetes 36's elector ``json.loads`` the body of a failed get; without one its renew
    thread died and ``onstopped_leading`` never ran)."""
    exc = ApiException(status=0, reason=reason)
    exc.body = json.dumps({"kind": "Status", "status": "Failure", "message": reason, "code": 0})
    return exc
