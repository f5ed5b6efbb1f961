"""Pure decisions of the election controller: candidate liveness, what to do, what status says.

The reconciler feeds these functions what it read (the MultiClusterLease, the global record as its
elector observed it) and the time on its monotonic clock; they return what to do and the status
to write. No I/O, no clocks, no threads, so every safety rule has a unit test here.

- Rule 2, contend only for a live candidate: a candidate is live when this controller saw its
  spec *change* less than ``leaseDurationSeconds`` ago. The first sight of an object after start-up
  is not a change.
- Rule 3, confirm only after a renewal: status names a local candidate (bare identity, the form it
  compares with) only when this reconcile's own compare-and-swap succeeded for the spec generation
  being confirmed. Otherwise the holder is written cluster-qualified, which confirms nobody.
- Rule 6, release promptly and safely: release the global lease held for a local candidate when it
  wrote an empty holder (it stopped first), or when it is stale (no change for a lease duration,
  after which it cannot still be acting), including after the object was deleted.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from .._storage import LeaseObject
from ..kube._resource import (
    CONDITION_BACKEND_HEALTHY,
    CONDITION_LOCK_ACQUIRED,
    format_time,
    qualified,
)


@dataclasses.dataclass(frozen=True)
class CandidateState:
    """What this controller knows of a lease's local candidate (the spec holder)."""

    identity: str
    generation: int
    lease_duration: float
    first_seen: float
    """Monotonic time this controller first saw the current generation."""
    changed: bool
    """Whether that generation was seen to *replace* an earlier one (a heartbeat)."""

    def age(self, now: float) -> float:
        return now - self.first_seen


def track_candidate(
    previous: CandidateState | None,
    identity: str,
    generation: int,
    lease_duration: float,
    now: float,
) -> CandidateState:
    """Fold the spec just read into what we knew; a new generation is a heartbeat."""
    if previous is None:
        return CandidateState(identity, generation, lease_duration, now, changed=False)
    if generation != previous.generation:
        return CandidateState(identity, generation, lease_duration, now, changed=True)
    return previous


def is_live(candidate: CandidateState, now: float) -> bool:
    """Rule 2: a non-empty holder whose spec changed less than a lease duration ago."""
    return (
        candidate.identity != ""
        and candidate.changed
        and candidate.age(now) < candidate.lease_duration
    )


def is_stale(candidate: CandidateState, now: float) -> bool:
    """No change for a lease duration: whatever the candidate was doing, it has stopped."""
    return candidate.age(now) >= candidate.lease_duration


class Action(enum.Enum):
    CONTEND = "contend"
    """Acquire or renew the global lease for the local candidate."""
    RELEASE = "release"
    """Give up the global lease held for a local candidate."""
    OBSERVE = "observe"
    """Only read the global record, to publish who leads."""
    WAIT_TO_RELEASE = "wait-to-release"
    """Deleted while its candidate may still act: keep the finalizer until it is stale."""
    FORGET = "forget"
    """Deleted and nothing to release: drop the finalizer."""


@dataclasses.dataclass(frozen=True)
class Plan:
    action: Action
    reason: str
    release_identity: str = ""
    """For RELEASE: the local identity the global lease is held for."""


def plan(
    candidate: CandidateState,
    *,
    deleting: bool,
    global_holder: tuple[str, str] | None,
    cluster: str,
    now: float,
) -> Plan:
    """What to do for one lease. ``global_holder`` is the observed ``(cluster, identity)``."""
    held_here = global_holder is not None and global_holder[0] == cluster and global_holder[1] != ""
    local_holder = global_holder[1] if held_here and global_holder is not None else ""
    if deleting:
        if not held_here:
            return Plan(Action.FORGET, "deleted; this cluster holds no global lease for it")
        if candidate.identity == "" or is_stale(candidate, now):
            return Plan(Action.RELEASE, "deleted and its candidate stopped", local_holder)
        return Plan(Action.WAIT_TO_RELEASE, "deleted; waiting until its candidate is stale")
    if is_live(candidate, now):
        return Plan(Action.CONTEND, f"candidate {candidate.identity!r} is live")
    if held_here and (candidate.identity == "" or is_stale(candidate, now)):
        why = "released by its candidate" if candidate.identity == "" else "its candidate is stale"
        return Plan(Action.RELEASE, why, local_holder)
    if candidate.identity and not candidate.changed:
        return Plan(Action.OBSERVE, "first sight since start-up is not a heartbeat")
    return Plan(Action.OBSERVE, "no live candidate")


def next_check(candidate: CandidateState, now: float, retry_period: float) -> float:
    """Seconds until the next reconcile: the retry period, or sooner when the candidate turns
    stale, so a release is not late by up to a period."""
    until_stale = candidate.lease_duration - candidate.age(now)
    if until_stale > 0:
        return min(retry_period, until_stale + 0.001)
    return retry_period


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the reconcile did and saw, as input to :func:`build_status`."""

    generation: int
    cluster: str
    record: LeaseObject | None
    holder_expired: bool
    confirmed: str = ""
    """The local identity whose compare-and-swap succeeded in this reconcile."""
    backend_error: str = ""


def build_status(
    outcome: Outcome, previous_conditions: list[dict[str, Any]], wall_now: Any
) -> dict[str, Any]:
    """The status subresource to write (a merge patch of ``status``)."""
    status: dict[str, Any] = {"observedGeneration": outcome.generation}
    record = outcome.record
    live = record is not None and not record.data.is_released and not outcome.holder_expired
    holder = ""
    holder_cluster = ""
    if record is not None and live:
        holder_cluster, identity = record.data.holder
        confirmed = outcome.confirmed != "" and (holder_cluster, identity) == (
            outcome.cluster,
            outcome.confirmed,
        )
        holder = identity if confirmed else qualified(holder_cluster, identity)
    status["globalHolderIdentity"] = holder
    status["globalHolderCluster"] = holder_cluster
    if record is not None:
        status["globalRenewTime"] = format_time(record.data.renew_time)
        status["globalLeaseDurationSeconds"] = max(1, round(record.data.lease_duration_seconds))
        status["globalLeaseTransitions"] = record.data.lease_transitions
        status["fencingToken"] = record.fencing_token if live else None
    status["conditions"] = _conditions(
        outcome, holder, holder_cluster, previous_conditions, wall_now
    )
    return status


def _conditions(
    outcome: Outcome,
    holder: str,
    holder_cluster: str,
    previous: list[dict[str, Any]],
    wall_now: Any,
) -> list[dict[str, Any]]:
    if outcome.backend_error:
        healthy = ("False", "BackendError", f"global store error: {outcome.backend_error}")
    else:
        healthy = ("True", "BackendHealthy", "the global store answered")
    if outcome.confirmed:
        acquired = ("True", "LockAcquired", f"global lease held by this cluster's {holder}")
    elif holder:
        acquired = ("False", "HeldElsewhere", f"global lease held by {holder}")
    else:
        acquired = ("False", "LockNotAcquired", "no live holder of the global lease is known")
    by_type = {c.get("type"): c for c in previous}
    return [
        _condition(CONDITION_BACKEND_HEALTHY, *healthy, by_type, outcome.generation, wall_now),
        _condition(CONDITION_LOCK_ACQUIRED, *acquired, by_type, outcome.generation, wall_now),
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
    changed = old is None or old.get("status") != status
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message[:32768],
        "observedGeneration": generation,
        "lastTransitionTime": format_time(wall_now) if changed else old["lastTransitionTime"],  # type: ignore[index]
    }
