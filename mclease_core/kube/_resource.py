"""The MultiClusterLease resource as seen from Python: names, field formats, a typed view.

Shared by the candidate-side lock and the election controller so both read and write the wire
format of upstream ``gke-labs/multicluster-leader-election`` v1alpha1 the same way.

Not here: any API call. These are constants and pure conversions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

GROUP = "multicluster.core.cnrm.cloud.google.com"
VERSION = "v1alpha1"
PLURAL = "multiclusterleases"
KIND = "MultiClusterLease"
API_VERSION = f"{GROUP}/{VERSION}"
FINALIZER = "multiclusterlease.core.cnrm.cloud.google.com/finalizer"
"""Upstream's finalizer name, kept so both controllers recognise it."""

ANNOTATION_CANDIDATE = "mclease.io/candidate"
"""Written by mclease's lock with every signal: ``{"identity": ..., "callBound": seconds}`` (how
long that candidate waits for a confirmation), and with its release: ``{"identity": ...,
"released": true}`` (the candidate stopped its work before releasing). Other clients (client-go's
``ReleaseOnCancel`` releases *before* its work has stopped) do not write it; the controller
applies it only when it names the identity concerned."""

CONDITION_BACKEND_HEALTHY = "BackendHealthy"
CONDITION_LOCK_ACQUIRED = "LockAcquiredInBackend"

DEFAULT_LEASE_DURATION = 15


class InvalidLeaseError(ValueError):
    """A MultiClusterLease object does not have the shape the protocol needs."""


def format_time(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with microseconds, as Kubernetes ``MicroTime`` serializes.

    A time another writer put in a record may lie outside what UTC can show (year 9999 at
    -05:00, year 1 at +05:00): it is clamped, since nothing reads it but people."""
    try:
        utc = moment.astimezone(dt.UTC)
    except OverflowError:
        offset = moment.utcoffset() or dt.timedelta()
        utc = dt.datetime.max if offset < dt.timedelta() else dt.datetime.min
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"  # %Y drops zeros


def qualified(cluster: str, identity: str) -> str:
    """How a holder is named when it is not confirmed here: ``cluster/identity``, also for a
    record without a cluster (``/identity``): a bare name would confirm a local namesake."""
    return f"{cluster}/{identity}"


@dataclasses.dataclass(frozen=True)
class LeaseView:
    """The fields of a MultiClusterLease object the protocol uses."""

    namespace: str
    name: str
    generation: int
    resource_version: str
    deleting: bool
    finalizers: tuple[str, ...]
    holder_identity: str
    lease_duration_seconds: int
    renew_deadline_seconds: int | None
    retry_period_seconds: int | None
    observed_generation: int | None
    global_holder_identity: str
    global_holder_cluster: str
    global_renew_time: str
    fencing_token: int | None
    conditions: tuple[dict[str, Any], ...]
    status: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    """The status as written, for comparing with what the controller would write."""
    candidate_note: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    """The parsed :data:`ANNOTATION_CANDIDATE`, ``{}`` when absent or malformed."""
    uid: str = ""
    """Tells a recreated object of the same name from the one before."""

    @property
    def key(self) -> str:
        """The global lease key: ``namespace/name``, the same in every cluster."""
        return f"{self.namespace}/{self.name}"

    @property
    def status_is_possible(self) -> bool:
        """False when status claims a generation that does not exist yet: nobody wrote it in
        good faith, so it is never obeyed (and the controller rewrites it)."""
        return self.observed_generation is None or self.observed_generation <= self.generation

    def released_by(self, identity: str) -> bool:
        """The annotation says ``identity`` released after stopping its work."""
        note = self.candidate_note
        return note.get("identity") == identity and note.get("released") is True

    def call_bound_of(self, identity: str) -> float | None:
        """How long ``identity`` waits for a confirmation, if its lock said so."""
        note = self.candidate_note
        bound = note.get("callBound")
        if note.get("identity") != identity or isinstance(bound, bool):
            return None
        return float(bound) if isinstance(bound, int | float) and 0 < bound < 3600 else None

    @property
    def reconciled_generation(self) -> int | None:
        """The generation the controller last reconciled, as its lock condition says: above
        ``observed_generation`` when it did not renew the latest signal and wrote the status of
        the one before (rule 8). ``None`` without that condition (a status written by hand)."""
        for condition in self.conditions:
            if isinstance(condition, dict) and condition.get("type") == CONDITION_LOCK_ACQUIRED:
                seen = condition.get("observedGeneration")
                return seen if isinstance(seen, int) and not isinstance(seen, bool) else None
        return None

    def missed_by(self, identity: str) -> int:
        """How many signals in a row ``identity``'s lock saw confirmed only after it had stopped
        waiting (0 when it did not say)."""
        note = self.candidate_note
        missed = note.get("missed")
        if note.get("identity") != identity or isinstance(missed, bool):
            return 0
        return missed if isinstance(missed, int) and missed > 0 else 0

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> LeaseView:
        metadata = _mapping(obj, "metadata")
        spec = _mapping(obj, "spec", required=False)
        status = _mapping(obj, "status", required=False)
        try:
            return cls(
                namespace=str(metadata["namespace"]),
                name=str(metadata["name"]),
                generation=int(metadata.get("generation") or 0),
                resource_version=str(metadata.get("resourceVersion") or ""),
                deleting=bool(metadata.get("deletionTimestamp")),
                finalizers=tuple(metadata.get("finalizers") or ()),
                holder_identity=str(spec.get("holderIdentity") or ""),
                lease_duration_seconds=int(
                    spec.get("leaseDurationSeconds") or DEFAULT_LEASE_DURATION
                ),
                renew_deadline_seconds=_optional_int(spec.get("renewDeadlineSeconds")),
                retry_period_seconds=_optional_int(spec.get("retryPeriodSeconds")),
                observed_generation=_optional_int(status.get("observedGeneration")),
                global_holder_identity=str(status.get("globalHolderIdentity") or ""),
                global_holder_cluster=str(status.get("globalHolderCluster") or ""),
                global_renew_time=str(status.get("globalRenewTime") or ""),
                fencing_token=_optional_int(status.get("fencingToken")),
                conditions=tuple(status.get("conditions") or ()),
                status=status,
                candidate_note=_candidate_note(metadata),
                uid=str(metadata.get("uid") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidLeaseError(f"malformed {KIND} object: {exc}") from exc


def _mapping(obj: dict[str, Any], field: str, *, required: bool = True) -> dict[str, Any]:
    value = obj.get(field)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise InvalidLeaseError(f"malformed {KIND} object: {field} is {type(value).__name__}")
    return value


def _candidate_note(metadata: dict[str, Any]) -> dict[str, Any]:
    annotations = metadata.get("annotations") or {}
    text = annotations.get(ANNOTATION_CANDIDATE) if isinstance(annotations, dict) else None
    if not isinstance(text, str) or len(text) > 4096:
        return {}
    try:
        note = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: "[[[[...]]]]" nested 2000 deep
        return {}
    return note if isinstance(note, dict) else {}


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"expected an integer, got {value!r}")
    return int(value)
