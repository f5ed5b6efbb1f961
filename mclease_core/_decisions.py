"""Pure decisions of the global leader election: no I/O, no clocks, no threads.

Given what an elector has observed of a lease record and the time on its own monotonic clock, these
functions say what to do next (create, acquire, renew or wait) and what record to write. The loop
in ``_elector`` runs them; unit tests call them directly.

The expiry rule (client-go's ``observedTime``): a record held by someone else is expired once this
observer has seen the *same version* for the record's lease duration, measured on its own
monotonic clock from when it first saw that version. The ``renew_time`` written by the holder is
never compared with the local clock, so clock skew between machines cannot cause two leaders.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

from ._limits import check_duration
from ._storage import LeaseData, LeaseObject

JITTER_FACTOR = 1.2
"""client-go's factor: the renew deadline must exceed ``JITTER_FACTOR * retry_period``."""

RELEASED_LEASE_DURATION = 1.0
"""The lease duration written on release (as client-go does); a released record is free anyway."""

Holder = tuple[str, str]
"""A cluster-qualified identity: ``(cluster, identity)``."""


def safety_margin(lease_duration: float) -> float:
    """Slack every bound keeps below a lease duration, for clock-rate differences, scheduling and
    stopping the work: 10% of it, at least 0.5 s."""
    return max(0.5, 0.1 * lease_duration)


@dataclasses.dataclass(frozen=True)
class LeaseTiming:
    """The three durations of an election, in seconds.

    ``lease_duration`` (D): how long others wait, after last seeing the record change, before
    taking it over. ``renew_deadline`` (R): how long a leader keeps leading without a successful
    renewal. ``retry_period`` (P): the pause between attempts. Requires ``D > R > 1.2 * P``, each
    within ``[MIN_DURATION, MAX_DURATION]``.
    """

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        for name in ("lease_duration", "renew_deadline", "retry_period"):
            object.__setattr__(self, name, check_duration(name, getattr(self, name)))
        if not self.lease_duration > self.renew_deadline:
            raise ValueError(
                f"lease_duration ({self.lease_duration:g}s) must be greater than renew_deadline "
                f"({self.renew_deadline:g}s), or another elector may take the lease while this "
                "one still leads"
            )
        if not self.renew_deadline > JITTER_FACTOR * self.retry_period:
            raise ValueError(
                f"renew_deadline ({self.renew_deadline:g}s) must be greater than "
                f"{JITTER_FACTOR} * retry_period ({JITTER_FACTOR * self.retry_period:g}s), "
                "or a leader gets no second attempt to renew"
            )


class ElectorAction(enum.Enum):
    """What the global elector does next with the lease record (:class:`Decision`)."""

    CREATE = "create"
    """No record exists: create one naming us."""
    ACQUIRE = "acquire"
    """The record is released, expired, or ours from an earlier term: start a new term."""
    RENEW = "renew"
    """We lead: extend our term."""
    WAIT = "wait"
    """Someone else holds a live lease."""


@dataclasses.dataclass(frozen=True)
class Observation:
    """A record version and when (our monotonic clock) we first saw it."""

    record: LeaseObject
    first_seen: float

    def expires_at(self) -> float:
        return self.first_seen + self.record.data.lease_duration_seconds


@dataclasses.dataclass(frozen=True)
class Decision:
    action: ElectorAction
    reason: str
    wait: float = 0.0
    """For ``WAIT``: seconds until the observed lease expires if nobody renews it."""


def observe(
    previous: Observation | None, record: LeaseObject | None, now: float
) -> Observation | None:
    """Fold a freshly read record into what we knew: a new version restarts its expiry clock."""
    if record is None:
        return None
    if previous is not None and previous.record.version == record.version:
        return previous
    return Observation(record, now)


def decide(observation: Observation | None, me: Holder, leading: bool, now: float) -> Decision:
    """What to do after reading the record (``observation``) at monotonic time ``now``."""
    if observation is None:
        return Decision(ElectorAction.CREATE, "no lease record exists")
    data = observation.record.data
    if data.holder == me:
        if leading:
            return Decision(ElectorAction.RENEW, "we hold the lease")
        return Decision(ElectorAction.ACQUIRE, "the record names us from an earlier term")
    if data.is_released:
        return Decision(ElectorAction.ACQUIRE, "the lease was released")
    remaining = observation.expires_at() - now
    if remaining > 0:
        return Decision(
            ElectorAction.WAIT, f"{_describe(data.holder)} holds the lease", wait=remaining
        )
    return Decision(
        ElectorAction.ACQUIRE,
        f"{_describe(data.holder)} has not renewed for {data.lease_duration_seconds:g}s",
    )


def new_record(
    action: ElectorAction,
    current: LeaseObject | None,
    me: Holder,
    lease_duration: float,
    wall_now: dt.datetime,
) -> LeaseData:
    """The record to write for ``action`` over ``current`` (``None`` when creating).

    A renewal carries the term's record (and token) forward; a create or an acquisition starts
    a new term, counted as a transition when the holder changes."""
    if action is ElectorAction.CREATE or current is None:
        transitions = 0
    elif action is ElectorAction.RENEW:
        return dataclasses.replace(
            current.data,
            lease_duration_seconds=lease_duration,
            renew_time=wall_now,
            fencing_token=current.fencing_token,
        )
    elif action is ElectorAction.ACQUIRE:
        old = current.data
        transitions = old.lease_transitions + (0 if old.holder == me else 1)
    else:
        raise ValueError(f"nothing to write for {action}")
    cluster, identity = me
    return LeaseData(
        holder_identity=identity,
        holder_cluster=cluster,
        lease_duration_seconds=lease_duration,
        acquire_time=wall_now,
        renew_time=wall_now,
        lease_transitions=transitions,
        fencing_token=None,  # a new term: its token is the version this write produces
    )


def released_record(current: LeaseObject, wall_now: dt.datetime) -> LeaseData:
    """The record that gives up ``current``: no holder, the transitions and last token kept."""
    return dataclasses.replace(
        current.data,
        holder_identity="",
        holder_cluster="",
        lease_duration_seconds=RELEASED_LEASE_DURATION,
        renew_time=wall_now,
        acquire_time=wall_now,
        fencing_token=current.fencing_token,
    )


def _describe(holder: Holder) -> str:
    cluster, identity = holder
    return f"{cluster}/{identity}" if cluster else identity
