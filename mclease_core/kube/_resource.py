"""The MultiClusterLease resource as seen from Python: names, field formats, a typed view.

Shared by the candidate-side lock and the election controller so both read and write the wire
format of upstream ``gke-labs/multicluster-leader-election`` v1alpha1 the same way.

Not here: any API call. These are constants and pure conversions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

GROUP = "multicluster.core.cnrm.cloud.google.com"
VERSION = "v1alpha1"
PLURAL = "multiclusterleases"
KIND = "MultiClusterLease"
API_VERSION = f"{GROUP}/{VERSION}"
FINALIZER = "multiclusterlease.core.cnrm.cloud.google.com/finalizer"
"""Upstream's finalizer name, kept so both controllers recognise it."""

CONDITION_BACKEND_HEALTHY = "BackendHealthy"
CONDITION_LOCK_ACQUIRED = "LockAcquiredInBackend"

DEFAULT_LEASE_DURATION = 15


class InvalidLeaseError(ValueError):
    """A MultiClusterLease object does not have the shape the protocol needs."""


def format_time(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with microseconds, as Kubernetes ``MicroTime`` serializes."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def qualified(cluster: str, identity: str) -> str:
    """How a holder is named outside its own cluster: ``cluster/identity``."""
    return f"{cluster}/{identity}" if cluster else identity


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

    @property
    def key(self) -> str:
        """The global lease key: ``namespace/name``, the same in every cluster."""
        return f"{self.namespace}/{self.name}"

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


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"expected an integer, got {value!r}")
    return int(value)
