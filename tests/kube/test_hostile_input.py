"""Hostile MultiClusterLeases and corrupt global records on a real API server (issue 8, items
17 to 21), searched with Hypothesis on a fixed budget, with a healthy lease beside them.

Each example is a spec someone could write (or an older CRD without our validation would let
through: those reach the reconciler as a watched copy) and a stored record someone could forge.
Whatever it is, the reconciler must not crash, must never confirm an identity it refuses, must
keep its messages short and free of control characters, must let the object be deleted within
the hold of its timings, and must keep confirming the healthy lease.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from mclease_core import FakeClock
from mclease_core._limits import identity_problem
from mclease_core.backends import MemoryStorage
from mclease_core.controller import ReconcileAction, Reconciler
from mclease_core.controller._reconciler import StaleCopy
from mclease_core.kube import GROUP, PLURAL, VERSION
from tests.support import FaultyStorage, put_raw_record, raw_record

pytestmark = [pytest.mark.kube, pytest.mark.slow]

NASTY = st.sampled_from(["/", "\n", "\x00", "\t", "\u200f", "\u202e", "\u2028", "é", " ", "%"])
IDENTITIES = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=30),
    st.builds(lambda a, n, b: a + n + b, st.text(max_size=5), NASTY, st.text(max_size=5)),
    st.integers(1000, 3000).map(lambda n: "x" * n),
)
SECONDS = st.one_of(
    st.none(),
    st.integers(-5, 3700),
    st.sampled_from([0, 1, 2**31 - 1, 50 * 365 * 86400]),
)
SPECS = st.fixed_dictionaries(
    {"holderIdentity": IDENTITIES},
    optional={
        "leaseDurationSeconds": SECONDS,
        "renewDeadlineSeconds": SECONDS,
        "retryPeriodSeconds": SECONDS,
    },
)
RECORD_VALUES = st.fixed_dictionaries(
    {},
    optional={
        "holderIdentity": IDENTITIES,
        "holderCluster": st.sampled_from(["east", "west", "", "we\nst", "c" * 300]),
        "leaseDurationSeconds": st.one_of(
            st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70)
        ),
        "fencingToken": st.one_of(st.none(), st.integers(-(2**70), 2**70)),
        "leaseTransitions": st.integers(-(2**40), 2**40),
        "renewTime": st.sampled_from(
            ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "soon", "2026-01-01"]
        ),
    },
)


class Bed:
    def __init__(self, cluster: Any, namespace: str):
        self.api = k8s.CustomObjectsApi(cluster.api_client())
        self.namespace = namespace
        self.clock = FakeClock()
        self.store = FaultyStorage(MemoryStorage("hostile-" + uuid.uuid4().hex[:8]), self.clock)
        self.events: list[tuple[str, str, str]] = []
        self.reconciler = Reconciler(
            self.api,
            self.store,
            cluster="east",
            retry_period=1.0,
            clock=self.clock,
            events=lambda view, kind, reason, message: self.events.append((kind, reason, message)),
        )
        self.signals = 0
        self.create("healthy", {"holderIdentity": "pod-a"})
        self.reconcile("healthy")

    def spec(self, extra: dict[str, Any]) -> dict[str, Any]:
        self.signals += 1
        base = {
            "holderIdentity": "pod-a",
            "renewTime": f"2026-11-26T12:{self.signals // 60 % 60:02d}:{self.signals % 60:02d}Z",
            "leaseDurationSeconds": 6,
            "renewDeadlineSeconds": 2,
            "retryPeriodSeconds": 1,
        }
        return {**base, **{k: v for k, v in extra.items() if v is not None}}

    def create(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "MultiClusterLease",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": self.spec(spec),
        }
        return dict(
            self.api.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body, _request_timeout=10
            )
        )

    def get(self, name: str) -> dict[str, Any]:
        return dict(
            self.api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, _request_timeout=10
            )
        )

    def signal_healthy(self) -> None:
        obj = self.get("healthy")
        obj["spec"] = self.spec({})
        self.api.replace_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, "healthy", obj
        )

    def reconcile(self, name: str, obj: dict[str, Any] | None = None) -> ReconcileAction | None:
        for _ in range(3):
            try:
                result = self.reconciler.reconcile(self.namespace, name, obj)
            except StaleCopy:
                obj = None  # the manager reads afresh, so do we
                continue
            return result.plan.action if result.plan else None
        raise AssertionError(f"{name}: the copy kept going stale")


@pytest.fixture(scope="module")
def bed(mcl_cluster: Any) -> Bed:
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    mcl_cluster.ensure_namespace(namespace)
    return Bed(mcl_cluster, namespace)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=SPECS, values=RECORD_VALUES)
def test_hostile_specs_and_records_never_crash_confirm_or_block(
    bed: Bed, spec: dict[str, Any], values: dict[str, Any]
) -> None:
    name = f"h-{uuid.uuid4().hex[:8]}"
    key = f"{bed.namespace}/{name}"
    put_raw_record(bed.store.inner, key, raw_record(**values))
    try:
        created = bed.create(name, spec)
    except ApiException as exc:
        refused = exc.status
        created = bed.create(name, {})  # the CRD refused it; an older CRD would not have:
        assert refused == 422, f"the API server answered {refused}, not a validation error"
    hostile = copy.deepcopy(created)  # deliver the hostile spec as a watched copy
    hostile["spec"] = {**hostile["spec"], **{k: v for k, v in spec.items() if v is not None}}
    bed.reconcile(name, copy.deepcopy(hostile))
    hostile["metadata"]["generation"] += 1  # ... and as a signal
    hostile["metadata"]["resourceVersion"] = bed.get(name)["metadata"]["resourceVersion"]
    bed.reconcile(name, hostile)
    bed.clock.advance(1.0)
    status = bed.get(name).get("status") or {}
    holder = status.get("globalHolderIdentity") or ""
    if holder and "/" not in holder:
        assert not identity_problem(holder, allow_slash=False), f"confirmed {holder!r}"
        assert holder == (bed.get(name)["spec"].get("holderIdentity"))
    for condition in status.get("conditions") or ():
        assert len(condition["message"]) <= 2000
        assert not any(ch in condition["message"] for ch in "\n\x00\u202e")
    for _, _, message in bed.events:
        assert len(message) <= 1100
        assert "\n" not in message
        assert "\u202e" not in message

    bed.signal_healthy()
    assert bed.reconcile("healthy") is ReconcileAction.CONTEND
    assert (bed.get("healthy").get("status") or {}).get("globalHolderIdentity") == "pod-a"

    bed.api.delete_namespaced_custom_object(GROUP, VERSION, bed.namespace, PLURAL, name)
    for _ in range(30):  # deletion completes within the longest hold (about 2 hours of clock)
        if bed.reconcile(name) is None:
            break
        bed.clock.advance(300.0)
    with pytest.raises(ApiException) as gone:
        bed.get(name)
    assert gone.value.status == 404, "the object could not be deleted"
    bed.signal_healthy()
    bed.reconcile("healthy")
