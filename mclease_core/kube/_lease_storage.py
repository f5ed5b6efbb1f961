"""A :class:`Storage` on ``coordination.k8s.io/v1`` Leases, for electing one controller replica.

Records are native Lease objects (``kubectl get lease`` reads them, and client-go electors see a
familiar record): ``holderIdentity``, ``leaseDurationSeconds``, ``acquireTime``, ``renewTime`` and
``leaseTransitions`` live in the spec. What a Lease cannot hold exactly lives in annotations: the
holder's cluster, the fencing token, a fractional lease duration (the spec gets it rounded up) and
the times with the writer's UTC offset (the spec's MicroTime is UTC). The version is the object's
``resourceVersion`` (an etcd revision: it grows across delete and recreate), and compare-and-swap
is the API server's optimistic concurrency. Object names are derived from the key (a DNS-1123
prefix plus a hash), so any key works; the key itself is kept in an annotation.

Not a plugin backend: it needs a Kubernetes API client, not a URL. The controller uses it for
``--leader-elect``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from .._errors import (
    ConfigurationError,
    CorruptRecordError,
    LeaseAlreadyExistsError,
    LeaseConflictError,
    LeaseNotFoundError,
    StorageError,
    StorageUnavailableError,
)
from .._limits import excerpt
from .._storage import Capabilities, LeaseData, LeaseObject, Storage, validate_key
from ._resource import format_time

ANNOTATION_KEY = "mclease.io/key"
ANNOTATION_CLUSTER = "mclease.io/holder-cluster"
ANNOTATION_TOKEN = "mclease.io/fencing-token"  # noqa: S105 - an annotation name
ANNOTATION_DURATION = "mclease.io/lease-duration-seconds"
ANNOTATION_RENEW = "mclease.io/renew-time"
ANNOTATION_ACQUIRE = "mclease.io/acquire-time"
ANNOTATION_WRITE = "mclease.io/write-id"
"""A fresh value on every write: the API server keeps the resourceVersion of an unchanged object,
and the storage contract needs every successful write to produce a new, larger version."""
_BACKEND = "kubernetes-lease"
_T = TypeVar("_T")


class CoordinationLeaseStorage(Storage):
    """Lease records as ``coordination.k8s.io/v1`` Leases in one namespace."""

    def __init__(self, api_client: k8s.ApiClient | None, namespace: str, *, timeout: float = 5.0):
        self._api = k8s.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.timeout = timeout

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(operation_timeout=self.timeout)

    def read(self, key: str) -> LeaseObject:
        name = object_name(key)
        lease = self._call(
            key,
            lambda: self._api.read_namespaced_lease(
                name, self.namespace, _request_timeout=self.timeout
            ),
        )
        return _to_object(lease, key)

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        body = _to_lease(key, data, resource_version=None)
        lease = self._call(
            key,
            lambda: self._api.create_namespaced_lease(
                self.namespace, body, _request_timeout=self.timeout
            ),
        )
        return LeaseObject(data, _version_of(lease))

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        # A merge patch, not a PUT: a PUT of a missing Lease creates it, whatever resourceVersion
        # it carries; a patch answers 404, and 409 when the resourceVersion is not current.
        body = _patch_body(key, data, resource_version=str(version))
        lease = self._call(
            key,
            lambda: self._api.patch_namespaced_lease(
                object_name(key),
                self.namespace,
                body,
                _request_timeout=self.timeout,
                _content_type="application/merge-patch+json",
            ),
            missing=LeaseConflictError,
        )
        return LeaseObject(data, _version_of(lease))

    def delete(self, key: str, *, version: int) -> None:
        options = k8s.V1DeleteOptions(
            preconditions=k8s.V1Preconditions(resource_version=str(version))
        )
        self._call(
            key,
            lambda: self._api.delete_namespaced_lease(
                object_name(key), self.namespace, body=options, _request_timeout=self.timeout
            ),
            missing=LeaseConflictError,
        )

    def _call(
        self,
        key: str,
        operation: Callable[[], _T],
        missing: type[StorageError] = LeaseNotFoundError,
    ) -> _T:
        validate_key(key)
        try:
            return operation()
        except ApiException as exc:
            raise _mapped(exc, key, missing, self.namespace) from exc
        except (HTTPError, OSError) as exc:
            raise StorageUnavailableError(
                f"the Kubernetes API server did not answer: {exc}", key=key, backend=_BACKEND
            ) from exc


def object_name(key: str) -> str:
    """A valid Lease name for ``key``: a readable prefix and a hash that keeps keys distinct."""
    readable = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")[:40].strip("-") or "lease"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
    return f"{readable}-{digest}"


def _mapped(
    exc: ApiException, key: str, missing: type[StorageError], namespace: str
) -> StorageError | ConfigurationError:
    if exc.status in (401, 403):  # retrying cannot help: the elector stops, the replica exits
        return ConfigurationError(
            f"the Kubernetes API server refused a request for the Lease of {key!r} "
            f"({exc.status} {exc.reason}: {_status_message(exc)}); grant this service account "
            f"get, create and patch on coordination.k8s.io leases in namespace {namespace!r} "
            "(config/rbac/leader_election_role.yaml), or pick the namespace with "
            "--leader-elect-namespace"
        )
    if exc.status == 404:
        return missing("no lease record", key=key, backend=_BACKEND)
    if exc.status == 409:
        if missing is LeaseNotFoundError:
            return LeaseAlreadyExistsError("lease record already exists", key=key, backend=_BACKEND)
        return LeaseConflictError("the Lease changed since it was read", key=key, backend=_BACKEND)
    if exc.status in (429, 500, 502, 503, 504) or exc.status == 0:
        return StorageUnavailableError(
            f"the Kubernetes API server answered {exc.status} {exc.reason}",
            key=key,
            backend=_BACKEND,
        )
    return StorageError(
        f"the Kubernetes API server refused: {exc.status} {exc.reason}", key=key, backend=_BACKEND
    )


def _status_message(exc: ApiException) -> str:
    """The API server's own one-line reason (who may not do what where), if it gave one."""
    try:
        message = json.loads(exc.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        message = ""
    return excerpt(str(message), 300) or "no reason given"


def _patch_body(key: str, data: LeaseData, resource_version: str) -> dict[str, Any]:
    annotations: dict[str, str | None] = {**_annotations(key, data)}
    annotations.setdefault(ANNOTATION_TOKEN, None)  # null removes it in a merge patch
    return {
        "metadata": {"resourceVersion": resource_version, "annotations": annotations},
        "spec": {
            "holderIdentity": data.holder_identity,
            "leaseDurationSeconds": max(1, math.ceil(data.lease_duration_seconds)),
            "acquireTime": format_time(data.acquire_time),
            "renewTime": format_time(data.renew_time),
            "leaseTransitions": data.lease_transitions,
        },
    }


def _annotations(key: str, data: LeaseData) -> dict[str, str]:
    annotations = {
        ANNOTATION_KEY: key,
        ANNOTATION_CLUSTER: data.holder_cluster,
        ANNOTATION_DURATION: repr(data.lease_duration_seconds),
        ANNOTATION_RENEW: data.renew_time.isoformat(timespec="microseconds"),
        ANNOTATION_ACQUIRE: data.acquire_time.isoformat(timespec="microseconds"),
        ANNOTATION_WRITE: uuid.uuid4().hex,
    }
    if data.fencing_token is not None:
        annotations[ANNOTATION_TOKEN] = str(data.fencing_token)
    return annotations


def _to_lease(key: str, data: LeaseData, resource_version: str | None) -> k8s.V1Lease:
    annotations = _annotations(key, data)
    return k8s.V1Lease(
        metadata=k8s.V1ObjectMeta(
            name=object_name(key), annotations=annotations, resource_version=resource_version
        ),
        spec=k8s.V1LeaseSpec(
            holder_identity=data.holder_identity,
            lease_duration_seconds=max(1, math.ceil(data.lease_duration_seconds)),
            acquire_time=data.acquire_time,
            renew_time=data.renew_time,
            lease_transitions=data.lease_transitions,
        ),
    )


def _to_object(lease: Any, key: str) -> LeaseObject:
    try:
        annotations = lease.metadata.annotations or {}
        spec = lease.spec
        token = annotations.get(ANNOTATION_TOKEN)
        data = LeaseData(
            holder_identity=spec.holder_identity or "",
            holder_cluster=annotations.get(ANNOTATION_CLUSTER, ""),
            lease_duration_seconds=float(
                annotations.get(ANNOTATION_DURATION) or spec.lease_duration_seconds
            ),
            acquire_time=_time(annotations.get(ANNOTATION_ACQUIRE), spec.acquire_time),
            renew_time=_time(annotations.get(ANNOTATION_RENEW), spec.renew_time),
            lease_transitions=int(spec.lease_transitions or 0),
            fencing_token=int(token) if token is not None else None,
        )
        return LeaseObject(data, _version_of(lease))
    except (AttributeError, TypeError, ValueError) as exc:
        raise CorruptRecordError(
            f"Lease {lease.metadata.name!r} is a corrupt mclease record: {exc}; delete it",
            key=key,
            backend=_BACKEND,
        ) from exc


def _version_of(lease: k8s.V1Lease) -> int:
    if lease.metadata is None or lease.metadata.resource_version is None:
        raise StorageUnavailableError("the API server answered without a resourceVersion")
    return int(lease.metadata.resource_version)


def _time(annotated: str | None, spec_value: Any) -> dt.datetime:
    if annotated:
        return dt.datetime.fromisoformat(annotated)
    return _aware(spec_value)


def _aware(value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"expected a time, got {value!r}")
    return value if value.utcoffset() is not None else value.replace(tzinfo=dt.UTC)


__all__ = ["CoordinationLeaseStorage", "format_time", "object_name"]
