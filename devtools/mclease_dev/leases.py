"""Small helpers for MultiClusterLease objects on the test bed: names, bodies, API calls.

For: tests that poke the API server directly (``tests/kube``). Not the product's lock or
controller. The resource's names are the product's own (:mod:`mclease_core.kube._resource`);
``CRD_FILE`` is the CRD as ``config/`` ships it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from kubernetes import client as k8s

from mclease_core._crd import CRD_NAME
from mclease_core.kube._resource import GROUP, KIND, PLURAL, VERSION

from . import REPO_ROOT

__all__ = [
    "CRD_FILE",
    "CRD_NAME",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "Leases",
    "error_body",
    "lease_body",
    "micro_time",
]

CRD_FILE = (
    REPO_ROOT
    / "config"
    / "crd"
    / "bases"
    / "multicluster.core.cnrm.cloud.google.com_multiclusterleases.yaml"
)


def micro_time(when: dt.datetime | None = None) -> str:
    """RFC 3339 with microseconds, as metav1.MicroTime serialises (``...T12:00:00.123456Z``)."""
    when = when or dt.datetime.now(dt.UTC)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_body(name: str, **spec: Any) -> dict[str, Any]:
    """A MultiClusterLease with a candidate-like spec; ``spec`` entries override the defaults."""
    defaults: dict[str, Any] = {
        "holderIdentity": "pod-a_1234",
        "renewTime": micro_time(),
        "leaseDurationSeconds": 15,
        "renewDeadlineSeconds": 10,
        "retryPeriodSeconds": 2,
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {**defaults, **spec},
    }


def _dict(result: object) -> dict[str, Any]:
    assert isinstance(result, dict), f"expected a JSON object, got {type(result).__name__}"
    return result


def error_body(exc: Exception) -> str:
    """The message of the server's Status in an ApiException (the raw body if it has none)."""
    body = str(getattr(exc, "body", None) or "")
    try:
        status = json.loads(body)
    except ValueError:
        return body
    return str(status.get("message", body)) if isinstance(status, dict) else body


class Leases:
    """The custom-objects API narrowed to MultiClusterLeases of one namespace."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        self.api = k8s.CustomObjectsApi(api_client)
        self.namespace = namespace

    def create(self, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return _dict(
            self.api.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body, **kwargs
            )
        )

    def get(self, name: str) -> dict[str, Any]:
        return _dict(
            self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        )

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        return _dict(
            self.api.replace_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, body
            )
        )

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of the main resource."""
        return _dict(
            self.api.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, patch
            )
        )

    def patch_status(self, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of the status subresource."""
        return _dict(
            self.api.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, name, {"status": status}
            )
        )
