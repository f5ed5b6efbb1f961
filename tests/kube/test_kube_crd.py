"""The MultiClusterLease CRD against a real API server: install, schema, printer columns."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from mclease_dev.kube import KubeCluster, wait_crd_established
from mclease_dev.leases import CRD_FILE, CRD_NAME, Leases, error_body, lease_body, micro_time

pytestmark = pytest.mark.kube

# Upstream gke-labs/multicluster-leader-election v1alpha1: (field, openAPI type, format).
UPSTREAM_SPEC = {
    "holderIdentity": ("string", None),
    "renewTime": ("string", "date-time"),
    "leaseDurationSeconds": ("integer", "int32"),
    "renewDeadlineSeconds": ("integer", "int32"),
    "retryPeriodSeconds": ("integer", "int32"),
}
UPSTREAM_STATUS = {
    "conditions": ("array", None),
    "observedGeneration": ("integer", "int64"),
    "globalHolderIdentity": ("string", None),
    "globalRenewTime": ("string", None),
    "globalLeaseDurationSeconds": ("integer", "int32"),
    "globalLeaseTransitions": ("integer", "int32"),
}


def _schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_FILE.read_text())
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("section", "fields"), [("spec", UPSTREAM_SPEC), ("status", UPSTREAM_STATUS)]
)
def test_schema_keeps_every_upstream_field_and_type(
    section: str, fields: dict[str, tuple[str, str | None]]
) -> None:
    props = _schema()["properties"][section]["properties"]
    for name, (type_, fmt) in fields.items():
        assert props[name]["type"] == type_, name
        if fmt is not None:
            assert props[name]["format"] == fmt, name
    assert not _schema()["properties"][section].get("required"), "upstream requires nothing"


def test_crd_manifest_resource_is_the_canonical_file() -> None:
    from mclease_core._crd import crd_manifest

    assert crd_manifest() == CRD_FILE.read_text(encoding="utf-8")


def test_crd_is_established_with_names(mcl_cluster: KubeCluster) -> None:
    crd = wait_crd_established(mcl_cluster, CRD_NAME)
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions["NamesAccepted"] == "True"
    assert crd.status.accepted_names.kind == "MultiClusterLease"
    assert crd.status.accepted_names.plural == "multiclusterleases"
    assert crd.status.accepted_names.short_names == ["mcl"]
    assert crd.spec.scope == "Namespaced"
    assert crd.spec.versions[0].subresources.status is not None


def _condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-11-26T10:00:00Z",
    }


def test_valid_lease_round_trips(mcl_cluster: KubeCluster, namespace: str) -> None:
    leases = Leases(mcl_cluster.api_client(), namespace)
    renew = micro_time()
    created = leases.create(lease_body("ok", renewTime=renew, holderIdentity=""))
    assert created["spec"]["renewTime"] == renew
    assert created["spec"]["holderIdentity"] == ""
    status = {
        "observedGeneration": 1,
        "globalHolderIdentity": "pod-a_1234",
        "globalHolderCluster": "east",
        "globalRenewTime": "2026-11-26T10:00:00Z",
        "globalLeaseDurationSeconds": 15,
        "globalLeaseTransitions": 0,
        "fencingToken": 7,
        "conditions": [
            _condition("BackendHealthy", "True", "StoreReachable"),
            _condition("LockAcquiredInBackend", "True", "Acquired", "held by pod-a_1234"),
        ],
    }
    patched = leases.patch_status("ok", status)
    assert patched["status"] == status


# A row: case id -> (the one field the object gets, its value, what the server's message must
# say besides naming "<spec|status>.<field>").
Violations = dict[str, tuple[str, Any, str]]
_AT_LEAST = "should be greater than or equal to"

SPEC_VIOLATIONS: Violations = {
    "lease-duration-below-1": ("leaseDurationSeconds", 0, f"{_AT_LEAST} 1"),
    "negative-retry-period": ("retryPeriodSeconds", -1, f"{_AT_LEAST} 0"),
    "renew-time-not-rfc3339": ("renewTime", "yesterday", "date-time"),
    "holder-identity-too-long": ("holderIdentity", "x" * 1025, "1024"),
    "renew-deadline-not-integer": (
        "renewDeadlineSeconds",
        "10",
        'must be of type integer: "string"',
    ),
    "lease-duration-overflows-int32": (
        "leaseDurationSeconds",
        2**31,
        "must be of type integer with format int32",
    ),
    # Issue 8 items 5, 17, 18: identities another cluster's holder could be mistaken for, or
    # that forge log lines; durations that make an object undeletable for years.
    "holder-identity-with-slash": ("holderIdentity", "east/app-0", "should match"),
    **{
        f"holder-identity-with-U+{ord(char):04X}": ("holderIdentity", f"app{char}0", "should match")
        for char in ("\n", "\x00", "\t", "\u200f", "\u202e", "\u2028")
    },
    **{
        f"{field}-above-an-hour": (field, 3601, "should be less than or equal to 3600")
        for field in ("leaseDurationSeconds", "renewDeadlineSeconds", "retryPeriodSeconds")
    },
}

STATUS_VIOLATIONS: Violations = {
    "negative-fencing-token": ("fencingToken", -1, f"{_AT_LEAST} 0"),
    "negative-observed-generation": ("observedGeneration", -2, f"{_AT_LEAST} 0"),
    "cluster-name-too-long": ("globalHolderCluster", "c" * 254, "253"),
    "global-renew-time-not-rfc3339": ("globalRenewTime", "soon", "date-time"),
    "condition-status-not-enum": (
        "conditions",
        [_condition("BackendHealthy", "Maybe", "X")],
        'status.conditions[0].status: Unsupported value: "Maybe"',
    ),
    "condition-missing-reason": (
        "conditions",
        [{"type": "BackendHealthy", "status": "True"}],
        "status.conditions[0].reason: Required value",
    ),
}


def _cases(violations: Violations) -> list[Any]:
    return [
        pytest.param(field, value, message, id=case_id)
        for case_id, (field, value, message) in violations.items()
    ]


def _assert_rejected(excinfo: pytest.ExceptionInfo[ApiException], *fragments: str) -> None:
    assert excinfo.value.status == 422
    for fragment in fragments:
        assert fragment in error_body(excinfo.value)


@pytest.mark.parametrize(("field", "value", "message"), _cases(SPEC_VIOLATIONS))
def test_server_rejects_invalid_spec(
    mcl_cluster: KubeCluster, namespace: str, field: str, value: Any, message: str
) -> None:
    leases = Leases(mcl_cluster.api_client(), namespace)
    with pytest.raises(ApiException) as excinfo:
        leases.create(lease_body("bad", **{field: value}))
    _assert_rejected(excinfo, f"spec.{field}", message)


@pytest.mark.parametrize(("field", "value", "message"), _cases(STATUS_VIOLATIONS))
def test_server_rejects_invalid_status(
    mcl_cluster: KubeCluster, namespace: str, field: str, value: Any, message: str
) -> None:
    leases = Leases(mcl_cluster.api_client(), namespace)
    leases.create(lease_body("lease"))
    with pytest.raises(ApiException) as excinfo:
        leases.patch_status("lease", {field: value})
    _assert_rejected(excinfo, f"status.{field}", message)


def test_unknown_fields_are_rejected_under_strict_validation(
    mcl_cluster: KubeCluster, namespace: str
) -> None:
    leases = Leases(mcl_cluster.api_client(), namespace)
    with pytest.raises(ApiException) as excinfo:
        leases.create(lease_body("bad", holder="typo"), field_validation="Strict")
    assert excinfo.value.status == 400
    assert 'unknown field "spec.holder"' in error_body(excinfo.value)


def test_kubectl_get_mcl_shows_printer_columns(mcl_cluster: KubeCluster, namespace: str) -> None:
    leases = Leases(mcl_cluster.api_client(), namespace)
    leases.create(lease_body("printed", holderIdentity="pod-b_99"))
    leases.patch_status(
        "printed",
        {
            "globalHolderIdentity": "pod-z_1",
            "globalHolderCluster": "west",
            "globalRenewTime": "2026-11-26T10:00:00Z",
            "fencingToken": 42,
        },
    )
    out = mcl_cluster.kubectl("get", "mcl", "-n", namespace).stdout.splitlines()
    assert out[0].split() == ["NAME", "HOLDER", "GLOBAL", "LEADER", "RENEW", "TIME", "AGE"]
    assert out[1].split()[:4] == ["printed", "pod-b_99", "pod-z_1", "2026-11-26T10:00:00Z"]

    wide = mcl_cluster.kubectl("get", "mcl", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert "LEADER CLUSTER" in wide[0]
    assert "FENCING TOKEN" in wide[0]
    assert wide[1].split()[:6] == [
        "printed",
        "pod-b_99",
        "pod-z_1",
        "west",
        "2026-11-26T10:00:00Z",
        "42",
    ]
