"""Pure decisions of the election controller: windows, candidate liveness, what to do, what status
says.

The reconciler feeds these functions what it read (the MultiClusterLease, the global record as its
elector observed it) and the time on its monotonic clock; they return what to do and the status
to write. No I/O, no clocks, no threads, so every safety rule has a unit test here. The rules are
numbered as in docs/safety.md.

- Rule 7, contend only for a live candidate: a signal is a spec generation this controller saw
  *replace* another, or an object created after it started watching. The first sight of an object
  after start-up is not a heartbeat, and it changes nothing in status either: the controller waits
  for the next signal instead of demoting a leader it has not yet heard from.
- Rule 8, confirm only after a renewal: status names a local candidate (bare identity) only when
  this controller's compare-and-swap succeeded for the generation being confirmed, and only within
  the confirm window; afterwards the status is rewritten cluster-qualified, which confirms nobody.
- Rule 11, the windows. From the candidate's timings ``D, R, P`` (the spec) the controller derives
  how long a confirming status may stay visible after it first saw the signal it confirms
  (``confirm``), until when renewing for a signal is still of use (``renew``: the candidate's own
  wait, when its lock says it), and how long the global lease is held per renewal (``hold``: a
  candidate that saw a confirmation within ``confirm`` stops acting before another cluster can
  take over ``hold`` later). ``hold`` is ``D`` whenever the timings leave room, longer otherwise
  (upstream Go candidates do not write ``R``).
- Rule 13, release promptly and safely: release the global lease held for a local candidate when it
  released after stopping its work (mclease's lock says so in an annotation), or once it cannot
  still be acting: ``hold`` after the last signal seen from it, also when its object is deleted (a
  signal after the deletion is not a heartbeat) or its release comes from a client that releases
  before stopping (client-go's ``ReleaseOnCancel``).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from .._decisions import safety_margin
from .._limits import MAX_DURATION, identity_problem, printable
from .._storage import LeaseObject
from ..kube._resource import (
    CONDITION_BACKEND_HEALTHY,
    CONDITION_LOCK_ACQUIRED,
    LeaseView,
    format_time,
    qualified,
)

MISSED_LIMIT = 2
"""Signals in a row confirmed too late for their candidate, after which the controller stops
renewing for it until the lease has run out (issue 8 item 9: renewing for signals nobody can be
confirmed for kept every cluster from leading)."""

MIN_CONFIRM_WINDOW = 1.5
"""The shortest time a confirming status stays visible: a candidate that polls once a second
(upstream's Go client) still sees it."""


@dataclasses.dataclass(frozen=True)
class Windows:
    """The bounds derived from one candidate's timings, in seconds after the controller first saw
    its signal (docs/safety.md, rule 11)."""

    hold: float
    """The global lease duration written for it; also how long after its last signal it may
    still act, so the controller releases for a silent candidate only then."""
    confirm: float
    """A status confirming the signal may be visible until then, never later."""
    renew: float
    """Renewing for the signal is of use until then (the candidate still waits)."""


def windows(
    lease_duration: int,
    renew_deadline: int | None,
    retry_period: int | None,
    call_bound: float | None = None,
) -> Windows:
    """The windows of a candidate with these spec timings.

    After a confirmation seen at ``c`` a candidate acts until ``c + P + R`` (client-go stops at
    its renew deadline; mclease's lock keeps the Python elector within ``D`` on its own). Seen no
    later than ``confirm`` after the signal, and the global lease taken over no earlier than
    ``hold`` after it: ``confirm + P + R + margin <= hold``. Unknown ``R`` counts as ``D``
    (client-go requires ``R < D``); unknown ``P`` as ``R / 1.2``; ``P = 0`` (faster than a second)
    as 1.
    """
    duration = float(lease_duration)
    margin = safety_margin(duration)
    renew = float(renew_deadline) if renew_deadline else duration
    period = renew / 1.2 if retry_period is None else float(max(retry_period, 1))
    room = duration - period - renew - margin
    if room >= MIN_CONFIRM_WINDOW:
        hold, confirm = duration, room
    else:
        hold, confirm = MIN_CONFIRM_WINDOW + period + renew + margin, MIN_CONFIRM_WINDOW
    useful = min(confirm, call_bound) if call_bound is not None else confirm
    return Windows(hold=hold, confirm=confirm, renew=useful)


def spec_problem(view: LeaseView) -> str:
    """Why the spec's candidate must never be contended for, or ``""``."""
    identity_error = identity_problem(view.holder_identity, allow_slash=False)
    if identity_error:
        return f"spec.holderIdentity: {identity_error}"
    if not view.holder_identity:
        return ""  # a release (client-go writes leaseDurationSeconds 1 with it): nobody to time
    duration = view.lease_duration_seconds
    if not 1 <= duration <= MAX_DURATION:
        return (
            f"spec.leaseDurationSeconds must be between 1 and {MAX_DURATION:g}, got "
            f"{printable(duration)}"
        )
    renew, period = view.renew_deadline_seconds, view.retry_period_seconds
    if renew is not None and not 1 <= renew < duration:
        return (
            "spec.renewDeadlineSeconds must be at least 1 and below leaseDurationSeconds, "
            f"got {renew}"
        )
    if period is not None and not 0 <= period < (renew if renew else duration):
        return (
            "spec.retryPeriodSeconds must be below renewDeadlineSeconds (or "
            f"leaseDurationSeconds), got {period}"
        )
    return ""


@dataclasses.dataclass(frozen=True)
class Signal:
    """A generation with a non-empty holder, and when this controller first saw it."""

    identity: str
    seen: float


@dataclasses.dataclass(frozen=True)
class CandidateState:
    """What this controller knows of a lease's local candidate (the spec holder)."""

    identity: str
    generation: int
    first_seen: float
    """Monotonic time this controller first saw the current generation."""
    changed: bool
    """Whether that generation is a heartbeat: it replaced one this controller saw, or the object
    was created after it started watching."""
    tracked_since: float
    """When this controller first saw the object at all."""
    signals: tuple[Signal, ...] = ()
    """Per identity, the last moment it could have signalled: when a generation naming it was
    first seen, or when a generation naming someone else replaced it (its own last signal may
    have been folded into that one). The latest few identities are kept."""
    deleting_since: float | None = None
    """When this controller first saw the object being deleted."""

    def age(self, now: float) -> float:
        return now - self.first_seen

    def last_seen_of(self, identity: str) -> float:
        """The last moment ``identity`` could have signalled, as far as this controller knows: for
        an identity it never saw, the first sight of the current generation (nothing it did
        see was written later)."""
        return next((s.seen for s in self.signals if s.identity == identity), self.first_seen)


KEPT_SIGNALS = 8


def _noted(signals: tuple[Signal, ...], now: float, *identities: str) -> tuple[Signal, ...]:
    named = {identity for identity in identities if identity}
    kept = tuple(s for s in signals if s.identity not in named)
    return (*(Signal(identity, now) for identity in sorted(named)), *kept)[:KEPT_SIGNALS]


def track_candidate(
    previous: CandidateState | None,
    identity: str,
    generation: int,
    now: float,
    *,
    created: bool = False,
    deleting: bool = False,
) -> CandidateState:
    """Fold the spec just read into what we knew; a newer generation is a heartbeat, and so is
    the first sight of an object the watch reported as created. An older generation (a watched
    copy that trails one already seen) changes nothing."""
    if previous is None:
        return CandidateState(
            identity,
            generation,
            now,
            changed=created,
            tracked_since=now,
            signals=_noted((), now, identity),
            deleting_since=now if deleting else None,
        )
    state = previous
    if generation > previous.generation:
        state = dataclasses.replace(
            previous,
            identity=identity,
            generation=generation,
            first_seen=now,
            changed=True,
            signals=_noted(previous.signals, now, identity, previous.identity),
        )
    if deleting and state.deleting_since is None:
        state = dataclasses.replace(state, deleting_since=now)
    return state


class ReconcileAction(enum.Enum):
    """What one reconcile does for a MultiClusterLease (:class:`Plan`)."""

    CONTEND = "contend"
    """A new signal: acquire or renew the global lease for the local candidate, then publish."""
    PUBLISH = "publish"
    """The signal was renewed: publish from the observed record, confirming only within its
    window (no store access)."""
    OBSERVE = "observe"
    """Read the global record and publish who holds it (confirms nobody)."""
    RELEASE = "release"
    """Give up the global lease held for a local candidate that can no longer act."""
    WAIT = "wait"
    """First sight since start-up: change nothing until the candidate's next signal."""
    WAIT_TO_RELEASE = "wait-to-release"
    """Deleted while its candidate may still act: keep the finalizer until it cannot."""
    FORGET = "forget"
    """Deleted and nothing to release: drop the finalizer."""


@dataclasses.dataclass(frozen=True)
class Plan:
    action: ReconcileAction
    reason: str
    release_identity: str = ""
    """For RELEASE: the local identity the global lease is held for."""
    confirm: bool = False
    """For CONTEND and PUBLISH: status may name the candidate (its confirm window is open)."""
    late: bool = False
    """The signal was first reconciled after its candidate stopped waiting: not renewed."""
    problem: str = ""
    """The spec is refused (see :func:`spec_problem`); nobody is contended for."""
    recheck_at: float | None = None
    """When this decision changes without a new signal (monotonic)."""


def plan(
    candidate: CandidateState,
    *,
    deleting: bool,
    held_for: str,
    stopped_first: bool,
    renewed: bool,
    attempted: bool,
    problem: str,
    windows: Windows | None,
    record_hold: float,
    now: float,
    missed: int = 0,
    renewed_ago: float | None = None,
) -> Plan:
    """What to do for one lease.

    ``held_for``: the local identity the observed global record names (``""``: not held by this
    cluster). ``stopped_first``: the spec says ``held_for`` released after stopping its work.
    ``renewed``/``attempted``: this generation's compare-and-swap succeeded / was tried.
    ``record_hold``: the observed record's lease duration (the ``hold`` it was written with).
    ``missed``: how many signals in a row the candidate's lock saw confirmed only after it had
    stopped waiting; ``renewed_ago``: seconds since this controller last renewed for it.
    """
    release_at: float | None = None
    if held_for:
        since = candidate.last_seen_of(held_for)
        if deleting and candidate.deleting_since is not None:
            since = min(since, candidate.deleting_since)
        release_at = now if stopped_first else since + record_hold
    if deleting:
        if not held_for or release_at is None:
            return Plan(
                ReconcileAction.FORGET, "deleted; this cluster holds no global lease for it"
            )
        if now >= release_at:
            return Plan(
                ReconcileAction.RELEASE, "deleted, and its candidate can no longer act", held_for
            )
        return Plan(
            ReconcileAction.WAIT_TO_RELEASE,
            "deleted; waiting until its candidate can no longer act",
            recheck_at=release_at,
        )
    identity = candidate.identity
    not_asked_for = held_for and (identity != held_for or problem)
    if not_asked_for and release_at is not None and now >= release_at:
        why = "released by its candidate" if stopped_first else "its candidate went silent"
        return Plan(ReconcileAction.RELEASE, why, held_for)
    if problem:
        return Plan(
            ReconcileAction.OBSERVE, "the spec is refused", problem=problem, recheck_at=release_at
        )
    if not identity or windows is None:
        return Plan(ReconcileAction.OBSERVE, "no candidate", recheck_at=release_at)
    age = candidate.age(now)
    stale = age >= windows.hold
    if held_for == identity and age >= max(windows.hold, record_hold):
        return Plan(ReconcileAction.RELEASE, "its candidate is stale", held_for)
    if not candidate.changed:
        if stale:
            return Plan(ReconcileAction.OBSERVE, "no live candidate")
        return Plan(
            ReconcileAction.WAIT,
            "first sight since start-up is not a heartbeat",
            recheck_at=candidate.first_seen + windows.hold,
        )
    if renewed:
        confirm = age < windows.confirm
        until = windows.confirm if confirm else windows.hold
        return Plan(
            ReconcileAction.PUBLISH,
            "renewed for this signal",
            confirm=confirm,
            recheck_at=candidate.first_seen + until,
        )
    too_slow = missed >= MISSED_LIMIT and held_for == identity
    if too_slow and renewed_ago is not None and renewed_ago - age < windows.hold:
        # Renewing could make nobody lead and keeps the other clusters out: let the lease run
        # out for them; once it has, try again for a signal first seen after that, which leaves
        # its candidate all of its wait (a confirmation in time clears ``missed``). Retrying for
        # the signal pending when the lease ran out confirmed it late, by the same phase, every
        # time (simulator seeds 7037, 10649 and 17650).
        return Plan(
            ReconcileAction.OBSERVE,
            "its candidate sees confirmations only after it stopped waiting",
            late=True,
            recheck_at=candidate.first_seen + windows.hold,
        )
    if age <= windows.renew and not stale:
        return Plan(
            ReconcileAction.CONTEND,
            f"candidate {printable(identity)} signalled",
            confirm=True,
            recheck_at=candidate.first_seen + windows.renew,
        )
    return Plan(
        ReconcileAction.OBSERVE,
        "it was first reconciled after its candidate stopped waiting"
        if not attempted
        else "no live candidate",
        late=not attempted,
        recheck_at=candidate.first_seen + windows.hold if not stale else None,
    )


def next_check(plan: Plan, now: float, retry_period: float) -> float:
    """Seconds until the next reconcile: the retry period, or sooner when the decision changes
    (a window closes, a candidate turns stale), so a rewrite or release is not late."""
    if plan.recheck_at is not None and plan.recheck_at > now:
        return min(retry_period, plan.recheck_at - now + 0.001)
    return retry_period


@dataclasses.dataclass(frozen=True)
class ReconcileFindings:
    """What one reconcile did and saw: what :func:`build_status` writes status from."""

    generation: int
    cluster: str
    record: LeaseObject | None
    holder_expired: bool
    confirmed: str = ""
    """The local identity confirmed by this status (renewed for this generation, in its
    window)."""
    backend_error: str = ""
    problem: str = ""
    late: bool = False
    deleting: bool = False
    spec_holder: str = ""
    """The local candidate the spec names (valid, or ``""``)."""

    def confirms(self) -> bool:
        """Whether this status confirms the generation: this reconcile renewed for it, in its
        window, and the record names exactly that local candidate."""
        record = self.record
        return (
            self.confirmed != ""
            and record is not None
            and not record.data.is_released
            and not self.holder_expired
            and record.data.holder == (self.cluster, self.confirmed)
        )


def build_status(
    findings: ReconcileFindings, previous_conditions: list[dict[str, Any]], wall_now: Any
) -> dict[str, Any]:
    """The status subresource to write (a merge patch of ``status``).

    Rule 8: the bare identity with ``observedGeneration`` = the generation confirms it. A lease
    held here for the spec's own candidate but not confirmed for this generation (not renewed, a
    closed window, an outage) keeps the bare identity with ``observedGeneration`` one below:
    no poller of this generation sees a confirmation, and no reader sees another holder, so
    withdrawing a confirmation, or a single late reconcile, demotes nobody. Not while the object
    is being deleted: the deletion raised the generation, so the one below is the candidate's
    last signal, perhaps never renewed, whose call may still be polling (the simulator found two
    leaders that way, seeds 5537, 5651 and 6419); and nothing is confirmed after a deletion
    (rule 13). Any other holder is written ``cluster/identity``.
    """
    generation = findings.generation
    record = findings.record
    live = record is not None and not record.data.is_released and not findings.holder_expired
    holder = ""
    holder_cluster = ""
    if record is not None and live:
        holder_cluster, identity = record.data.holder
        own = findings.spec_holder != "" and (holder_cluster, identity) == (
            findings.cluster,
            findings.spec_holder,
        )
        if findings.confirms():
            holder = identity
        elif own and not findings.deleting:
            holder, generation = identity, max(0, generation - 1)
        else:
            holder = qualified(holder_cluster, identity)
    status: dict[str, Any] = {"observedGeneration": generation}
    status["globalHolderIdentity"] = holder
    status["globalHolderCluster"] = holder_cluster
    if record is not None:
        status["globalRenewTime"] = format_time(record.data.renew_time)
        status["globalLeaseDurationSeconds"] = max(1, round(record.data.lease_duration_seconds))
        status["globalLeaseTransitions"] = record.data.lease_transitions
        status["fencingToken"] = record.fencing_token if live else None
    status["conditions"] = _conditions(findings, holder, previous_conditions, wall_now)
    return status


def _conditions(
    findings: ReconcileFindings,
    holder: str,
    previous: list[dict[str, Any]],
    wall_now: Any,
) -> list[dict[str, Any]]:
    if findings.backend_error:
        healthy = (
            "False",
            "BackendError",
            f"global store error: {printable(findings.backend_error, 1000)}",
        )
    else:
        healthy = ("True", "BackendHealthy", "the global store answered")
    confirmed = findings.confirms()
    if findings.deleting:
        acquired = ("False", "Deleting", "the object is being deleted; nobody is confirmed")
    elif findings.problem:
        acquired = ("False", "InvalidSpec", f"{findings.problem}; nobody is confirmed")
    elif findings.late:
        acquired = (
            "False",
            "ConfirmationLate",
            "the signal could not be confirmed before its candidate stopped waiting for a "
            "confirmation, so the global lease is not renewed for it",
        )
    elif confirmed:
        acquired = ("True", "LockAcquired", f"global lease held by this cluster's {holder}")
    elif holder and "/" not in holder:
        acquired = (
            "False",
            "NotConfirmed",
            f"global lease held for this cluster's {holder}, but generation "
            f"{findings.generation} is not confirmed",
        )
    elif holder:
        acquired = ("False", "HeldElsewhere", f"global lease held by {holder}")
    else:
        acquired = ("False", "LockNotAcquired", "no live holder of the global lease is known")
    by_type = {c.get("type"): c for c in previous if isinstance(c, dict)}
    return [
        _condition(CONDITION_BACKEND_HEALTHY, *healthy, by_type, findings.generation, wall_now),
        _condition(CONDITION_LOCK_ACQUIRED, *acquired, by_type, findings.generation, wall_now),
    ]


def _condition(
    kind: str,
    status: str,
    reason: str,
    message: str,
    previous: dict[Any, dict[str, Any]],
    generation: int,
    wall_now: Any,
) -> dict[str, Any]:
    old = previous.get(kind)
    changed = old is None or old.get("status") != status or not old.get("lastTransitionTime")
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message[:32768],
        "observedGeneration": generation,
        "lastTransitionTime": format_time(wall_now) if changed else old["lastTransitionTime"],  # type: ignore[index]
    }
