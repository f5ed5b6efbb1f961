"""The reconciler against a real API server, one reconcile at a time, with a fake clock.

The global store is the in-memory reference (wrapped to inject outages), so every step is
deterministic; tests/e2e runs the same code as a process against real stores. The timings are
the e2e candidates' (D=6, R=2, P=1), written into the spec as mclease's lock writes them.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from mclease_core import FakeClock, LeaseNotFoundError
from mclease_core.backends import MemoryStorage
from mclease_core.conformance import sample_lease_data
from mclease_core.controller import ReconcileAction, Reconciler
from mclease_core.controller._decisions import windows
from mclease_core.controller._reconciler import NotActive, StaleCopy
from mclease_core.kube import FINALIZER, GROUP, PLURAL, VERSION
from mclease_core.kube._resource import ANNOTATION_CANDIDATE
from tests.support import FaultyStorage, put_raw_record, raw_record

pytestmark = pytest.mark.kube

D, R, P = 6, 2, 1
WINDOWS = windows(D, R, P)
KEY_NAME = "job"


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def __call__(self, view: Any, kind: str, reason: str, message: str) -> None:
        self.seen.append((kind, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.seen]


class Harness:
    def __init__(self, cluster: Any, namespace: str):
        self.api = k8s.CustomObjectsApi(cluster.api_client())
        self.namespace = namespace
        self.clock = FakeClock()
        self.store = FaultyStorage(MemoryStorage("reconciler-" + uuid.uuid4().hex[:8]), self.clock)
        self.events = Events()
        self.signals = 0
        self.reconciler = self.new_reconciler()
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "MultiClusterLease",
            "metadata": {"name": KEY_NAME, "namespace": namespace},
            "spec": self.spec("pod-a"),
        }
        self.api.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body, _request_timeout=30
        )

    @property
    def key(self) -> str:
        return f"{self.namespace}/{KEY_NAME}"

    def new_reconciler(self, may_act: Callable[[], bool] = lambda: True) -> Reconciler:
        return Reconciler(
            self.api,
            self.store,
            cluster="east",
            retry_period=1.0,
            clock=self.clock,
            events=self.events,
            may_act=may_act,
        )

    def spec(self, identity: str, **extra: Any) -> dict[str, Any]:
        self.signals += 1  # every signal changes the spec, as the lock's renewTime does
        return {
            "holderIdentity": identity,
            "renewTime": f"2026-11-26T12:{self.signals // 60 % 60:02d}:{self.signals % 60:02d}Z",
            "leaseDurationSeconds": D,
            "renewDeadlineSeconds": R,
            "retryPeriodSeconds": P,
            **extra,
        }

    def object(self) -> dict[str, Any]:
        return self.api.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, KEY_NAME
        )

    def signal(
        self, identity: str = "pod-a", note: dict[str, Any] | None = None, **extra: Any
    ) -> None:
        obj = self.object()
        obj["spec"] = {**obj["spec"], **self.spec(identity, **extra)}
        annotations = obj["metadata"].setdefault("annotations", {})
        if note is None:
            annotations.pop(ANNOTATION_CANDIDATE, None)
        else:
            annotations[ANNOTATION_CANDIDATE] = json.dumps(note)
        self.api.replace_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, KEY_NAME, obj
        )

    def set_status(self, **status: Any) -> None:
        self.api.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            KEY_NAME,
            {"status": status},
            _content_type="application/merge-patch+json",
        )

    def reconcile(
        self,
        *,
        created: bool = False,
        obj: dict[str, Any] | None = None,
        seen_at: float | None = None,
    ) -> ReconcileAction:
        result = self.reconciler.reconcile(
            self.namespace, KEY_NAME, obj, created=created, seen_at=seen_at
        )
        assert result.plan is not None
        return result.plan.action

    def start(self) -> None:
        """First sight, then pod-a's signal renewed and confirmed."""
        assert self.reconcile() is ReconcileAction.WAIT
        self.signal()
        assert self.reconcile() is ReconcileAction.CONTEND
        assert self.status()["globalHolderIdentity"] == "pod-a"

    def status(self) -> dict[str, Any]:
        return self.object().get("status", {})

    def confirms(self, identity: str = "pod-a") -> bool:
        """Status confirms ``identity``'s current signal (as a lock or upstream's client judges)."""
        obj = self.object()
        status = obj.get("status", {})
        return bool(
            status.get("globalHolderIdentity") == identity
            and (status.get("observedGeneration") or 0) >= obj["metadata"]["generation"]
        )

    def withdrawn(self, identity: str = "pod-a") -> bool:
        """Not confirmed, yet still naming ``identity``: nobody reads another holder."""
        return not self.confirms(identity) and self.status()["globalHolderIdentity"] == identity

    def condition(self, kind: str) -> dict[str, Any]:
        return next(c for c in self.status()["conditions"] if c["type"] == kind)

    def record(self) -> Any:
        return self.store.inner.read(self.key)


@pytest.fixture
def harness(mcl_cluster: Any, namespace: str) -> Harness:
    return Harness(mcl_cluster, namespace)


# ----- rule 7: signals and first sight ----------------------------------------------------------


def test_first_sight_never_demotes_the_leader_it_has_not_heard_from(harness: Harness) -> None:
    """Issue 8 item 10: a restarted controller (or a new active replica) rewrote the confirming
    status of the leader to cluster/identity at first sight: the leader stepped down, and the
    lease could go to another cluster. Now a status confirming an older generation is left
    alone, and one confirming the current generation (whose window this controller cannot know)
    is withdrawn without naming anyone else."""
    harness.store.inner.create(harness.key, sample_lease_data("pod-a"))
    harness.set_status(observedGeneration=1, globalHolderIdentity="pod-a", fencingToken=3)
    for _ in range(3):
        assert harness.reconcile() is ReconcileAction.WAIT
        harness.clock.advance(1.0)
    assert harness.withdrawn("pod-a")
    assert FINALIZER in harness.object()["metadata"]["finalizers"]
    harness.signal()
    assert harness.reconcile() is ReconcileAction.CONTEND
    status = harness.status()
    assert status["observedGeneration"] == harness.object()["metadata"]["generation"]
    assert status["globalHolderIdentity"] == "pod-a"
    assert status["globalHolderCluster"] == "east"
    assert status["fencingToken"] >= 1
    assert harness.condition("LockAcquiredInBackend")["status"] == "True"


def test_an_object_created_after_the_watch_started_is_a_signal(harness: Harness) -> None:
    """Issue 8 item 10: a candidate's create is its first signal (a Go candidate's first
    election took D + P when it was not counted)."""
    assert harness.reconcile(created=True) is ReconcileAction.CONTEND
    assert harness.status()["globalHolderIdentity"] == "pod-a"


def test_a_renewal_per_signal_is_one_conditional_write(harness: Harness) -> None:
    harness.start()
    elector = harness.reconciler._leases[harness.key].elector
    assert elector is not None
    before = elector.storage.counts()
    for _ in range(5):
        harness.clock.advance(1.0)
        harness.signal()
        assert harness.reconcile() is ReconcileAction.CONTEND
    after = elector.storage.counts()
    assert after["update"] - before["update"] == 5
    assert after["read"] == before["read"]


def test_no_renewal_without_a_new_signal(harness: Harness) -> None:
    """One renewal per signal: periodic reconciles write nothing to the store, so a candidate
    whose signals stop is not kept leading past its last signal's lease."""
    harness.start()
    counts = harness.reconciler._leases[harness.key].elector.storage.counts  # type: ignore[union-attr]
    before = counts()
    for _ in range(4):
        harness.clock.advance(1.0)
        assert harness.reconcile() is ReconcileAction.PUBLISH
    after = counts()
    assert after["update"] == before["update"]
    assert after["create"] == before["create"]


# ----- rule 11: confirm windows -----------------------------------------------------------------


def test_a_confirmation_is_withdrawn_once_its_window_has_passed(harness: Harness) -> None:
    """Issue 8 item 4: a status confirming a signal must not stay visible past its window
    (upstream's Go client accepts whatever it sees within D)."""
    harness.start()
    harness.clock.advance(WINDOWS.confirm - 0.2)
    assert harness.reconcile() is ReconcileAction.PUBLISH
    assert harness.status()["globalHolderIdentity"] == "pod-a"
    harness.clock.advance(0.2)
    assert harness.reconcile() is ReconcileAction.PUBLISH
    assert harness.withdrawn("pod-a")
    assert harness.condition("LockAcquiredInBackend")["status"] == "False"


def test_a_retried_status_write_never_confirms_after_the_window(harness: Harness) -> None:
    """Issue 8 item 4: the status patch after the only compare-and-swap failed; its retry comes
    after the window, from the cached record, and must not confirm."""
    assert harness.reconcile() is ReconcileAction.WAIT
    harness.signal()
    patch = harness.api.patch_namespaced_custom_object_status

    def timed_out(*args: Any, **kwargs: Any) -> Any:
        raise TimeoutError("injected: the status write timed out")

    harness.api.patch_namespaced_custom_object_status = timed_out  # type: ignore[method-assign]
    with pytest.raises(TimeoutError):
        harness.reconcile()
    harness.api.patch_namespaced_custom_object_status = patch  # type: ignore[method-assign]
    assert not harness.record().data.is_released
    harness.clock.advance(WINDOWS.confirm)
    assert harness.reconcile() is ReconcileAction.PUBLISH
    assert harness.withdrawn("pod-a")


def test_a_compare_and_swap_answered_after_the_window_confirms_nobody(harness: Harness) -> None:
    """Issue 8 item 4: a write that took most of D to answer counted as written."""
    assert harness.reconcile() is ReconcileAction.WAIT
    harness.signal()
    harness.store.fail_next["read"].append(WINDOWS.confirm)  # the read-and-acquire is slow
    assert harness.reconcile() is ReconcileAction.CONTEND
    assert harness.record().data.holder_identity == "pod-a", "the write itself succeeded"
    assert harness.withdrawn("pod-a")


def test_a_signal_its_candidate_no_longer_waits_for_is_not_renewed(harness: Harness) -> None:
    """Issue 8 item 9: renewing for signals whose confirmations the lock refuses kept every
    cluster from leading; surface it instead (condition, metric, Event)."""
    assert harness.reconcile() is ReconcileAction.WAIT
    harness.signal(note={"identity": "pod-a", "callBound": 0.5})
    delivered = harness.clock.monotonic()
    harness.clock.advance(0.6)  # its workers got to it later than the candidate waits
    assert harness.reconcile(seen_at=delivered) is ReconcileAction.OBSERVE
    with pytest.raises(LeaseNotFoundError):
        harness.record()  # nothing was written for a signal nobody can be confirmed for
    assert harness.condition("LockAcquiredInBackend")["reason"] == "ConfirmationLate"
    assert "ConfirmationLate" in harness.events.reasons()
    registry = harness.reconciler.metrics.registry
    assert registry.get_sample_value("mclease_late_signals_total") == 1


# ----- rule 13: releases ------------------------------------------------------------------------


def test_a_release_by_mclease_lock_frees_the_global_lease_at_once(harness: Harness) -> None:
    harness.start()
    harness.signal("", note={"identity": "pod-a", "released": True})
    assert harness.reconcile() is ReconcileAction.RELEASE
    assert harness.record().data.is_released
    assert harness.status()["globalHolderIdentity"] == ""


def test_a_release_by_client_go_waits_until_its_candidate_cannot_act(harness: Harness) -> None:
    """Issue 8 items 4 and 14: client-go's ReleaseOnCancel writes an empty holder *and*
    leaseDurationSeconds 1, before its work has stopped. The release must go through the
    existing elector (no "an elector needs a non-empty identity"), not at once, and status must
    not claim the lease is free while it is held."""
    harness.start()
    harness.clock.advance(0.5)
    harness.signal("", leaseDurationSeconds=1)
    assert harness.reconcile() is ReconcileAction.OBSERVE
    assert not harness.record().data.is_released
    assert harness.status()["globalHolderIdentity"] == "east/pod-a"
    assert harness.condition("BackendHealthy")["status"] == "True"
    harness.clock.advance(WINDOWS.hold - 0.01)
    assert harness.reconcile() is ReconcileAction.OBSERVE
    harness.clock.advance(0.01)
    assert harness.reconcile() is ReconcileAction.RELEASE
    assert harness.record().data.is_released


def test_a_stale_candidate_is_released_a_hold_after_its_last_signal(harness: Harness) -> None:
    harness.start()
    harness.clock.advance(WINDOWS.hold - 0.1)
    assert harness.reconcile() is ReconcileAction.PUBLISH
    assert not harness.record().data.is_released
    harness.clock.advance(0.1)
    assert harness.reconcile() is ReconcileAction.RELEASE
    assert harness.record().data.is_released


def test_a_paused_replica_cannot_release_the_renewal_of_the_active_one(harness: Harness) -> None:
    """Issue 8 item 1. Replica 1 renewed for pod-a, was paused past its term; replica 2 took
    over and renewed for the live pod-a. Replica 1 resumes with its old watched copy, judges pod-a
    stale and releases. Bound to the version it judged, the release changes nothing; and with
    its term over, the reconcile writes nothing at all."""
    harness.start()
    stale_copy = copy.deepcopy(harness.object())
    active = harness.new_reconciler()
    assert active.reconcile(harness.namespace, KEY_NAME).plan.action is ReconcileAction.WAIT  # type: ignore[union-attr]
    harness.clock.advance(1.0)
    harness.signal()
    assert active.reconcile(harness.namespace, KEY_NAME).plan.action is ReconcileAction.CONTEND  # type: ignore[union-attr]
    renewed = harness.record()
    harness.clock.advance(WINDOWS.hold)  # replica 1 wakes up: pod-a looks stale to it
    paused = harness.reconciler
    with pytest.raises(StaleCopy):  # it judged pod-a stale and released; its status write then
        paused.reconcile(harness.namespace, KEY_NAME, stale_copy)  # met the newer object
    assert harness.record().version == renewed.version, "released the other replica's renewal"
    assert not harness.record().data.is_released
    assert "Released" not in harness.events.reasons()
    gated = harness.new_reconciler(may_act=lambda: False)
    gated._leases = paused._leases
    with pytest.raises(NotActive):
        gated.reconcile(harness.namespace, KEY_NAME, stale_copy)
    assert harness.record().version == renewed.version


def test_deletion_completes_a_hold_after_it_while_the_candidate_keeps_signalling(
    harness: Harness,
) -> None:
    """Issue 8 item 12: `kubectl delete mcl` hung forever while the local candidate signalled."""
    harness.start()
    harness.api.delete_namespaced_custom_object(GROUP, VERSION, harness.namespace, PLURAL, KEY_NAME)
    assert harness.reconcile() is ReconcileAction.WAIT_TO_RELEASE
    assert harness.condition("LockAcquiredInBackend")["reason"] == "Deleting"
    # cluster-qualified: confirms no generation, not even the signal before the deletion's (the
    # simulator found that one confirmed while another cluster took over, seed 5537)
    assert harness.status()["globalHolderIdentity"] == "east/pod-a"
    waited = 0.0
    while waited < WINDOWS.hold - 1.0:
        harness.clock.advance(1.0)
        waited += 1.0
        harness.signal()
        assert harness.reconcile() is ReconcileAction.WAIT_TO_RELEASE
    harness.clock.advance(WINDOWS.hold - waited)
    assert harness.reconcile() is ReconcileAction.RELEASE
    assert harness.record().data.is_released
    with pytest.raises(k8s.ApiException) as info:
        harness.object()
    assert info.value.status == 404


# ----- errors and hostile input -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "message"),
    [("down", "down"), ("refusing", "refused the credentials")],
    ids=["outage", "refused-credentials"],
)
def test_a_store_fault_sets_the_condition_confirms_nobody_and_recovers(
    harness: Harness, fault: str, message: str
) -> None:
    """An outage, or a store that starts refusing the credentials (a rotated password): a
    condition and a retry; the lease's elector is rebuilt, not left stopped for good."""
    harness.start()
    setattr(harness.store, fault, True)
    harness.signal()
    assert harness.reconcile() is ReconcileAction.CONTEND
    healthy = harness.condition("BackendHealthy")
    assert healthy["status"] == "False"
    assert message in healthy["message"]
    assert not harness.confirms("pod-a")
    setattr(harness.store, fault, False)
    harness.signal()
    harness.reconcile()
    assert harness.status()["globalHolderIdentity"] == "pod-a"
    assert harness.condition("BackendHealthy")["status"] == "True"


@pytest.mark.parametrize(
    "raw",
    [
        b"{garbage",
        # Issue 8 item 19: values the status schema cannot hold are corrupt records, not an
        # endless loop of refused status writes.
        *(
            raw_record(**bad)
            for bad in (
                {"fencingToken": -5},
                {"fencingToken": 2**70},
                {"holderIdentity": "h" * 2**20},
                {"holderIdentity": "x\ny"},
                {"leaseTransitions": 2**40},
                {"leaseDurationSeconds": 1e308},
            )
        ),
    ],
    ids=["garbage", "token-negative", "token-2^70", "holder-1MiB", "holder-newline",
         "transitions-2^40", "duration-1e308"],
)  # fmt: skip
def test_a_corrupt_global_record_sets_the_condition_and_does_not_crash(
    harness: Harness, raw: bytes
) -> None:
    harness.start()
    put_raw_record(harness.store.inner, harness.key, raw)
    harness.clock.advance(1.0)
    harness.signal()
    harness.reconcile()
    healthy = harness.condition("BackendHealthy")
    assert healthy["status"] == "False"
    assert "corrupt" in healthy["message"]
    assert len(healthy["message"]) < 2000
    assert not harness.confirms("pod-a")


def test_a_status_the_api_server_refuses_becomes_a_condition_not_a_loop(harness: Harness) -> None:
    """Issue 8 item 19. The API server's 422 is injected (no value our decoder lets through can
    provoke one any more): the controller writes a status that confirms nobody and says why,
    sends one Event, and does not retry the refused status in a loop."""
    harness.start()
    patch = harness.api.patch_namespaced_custom_object_status
    refused: list[int] = []

    def refuse_first(*args: Any, **kwargs: Any) -> Any:
        if not refused:
            refused.append(1)
            raise ApiException(status=422, reason="Unprocessable Entity")
        return patch(*args, **kwargs)

    harness.api.patch_namespaced_custom_object_status = refuse_first  # type: ignore[method-assign]
    harness.clock.advance(1.0)
    harness.signal()
    assert harness.reconcile() is ReconcileAction.CONTEND
    status = harness.status()
    assert status["globalHolderIdentity"] == ""
    assert harness.condition("LockAcquiredInBackend")["reason"] == "StatusRejected"
    assert harness.events.reasons().count("StatusRejected") == 1


@pytest.mark.parametrize("identity", ["west/app-0", "app\n0", "app\u200f0", "a" * 1025])
def test_an_identity_the_crd_should_have_refused_is_never_confirmed(
    harness: Harness, identity: str
) -> None:
    """Issue 8 items 5 and 17: objects written under an older CRD (no pattern) still reach the
    controller: a candidate in west named east/app-0 must not be confirmed by west's status."""
    harness.start()
    obj = harness.object()
    obj["spec"]["holderIdentity"] = identity
    obj["metadata"]["generation"] += 1  # as the watch would deliver the signal
    assert harness.reconcile(obj=obj) is ReconcileAction.OBSERVE
    assert harness.condition("LockAcquiredInBackend")["reason"] == "InvalidSpec"
    assert "InvalidSpec" in harness.events.reasons()
    assert not harness.confirms(identity)
    assert all("\n" not in message for _, _, message in harness.events.seen)


def test_a_status_from_the_future_is_rewritten_never_obeyed(harness: Harness) -> None:
    """Issue 8 item 20: an observedGeneration above metadata.generation is impossible."""
    harness.start()
    harness.set_status(observedGeneration=2**62, globalHolderIdentity="x")
    assert harness.reconcile() is ReconcileAction.PUBLISH
    status = harness.status()
    assert status["observedGeneration"] <= harness.object()["metadata"]["generation"]
    assert status["globalHolderIdentity"] == "pod-a"


@pytest.mark.parametrize("year", [1, 9999])
def test_a_record_of_another_holder_expires_by_observation_whatever_its_renew_time(
    harness: Harness, year: int
) -> None:
    """Issue 8 item 20: the written renewTime (year 1 or year 9999) is never compared with a
    clock; the record is taken over D after this controller first saw it unchanged."""
    moment = f"{year:04d}-12-31T23:00:00-05:00" if year == 9999 else "0001-01-01T01:00:00+05:00"
    put_raw_record(
        harness.store.inner,
        harness.key,
        raw_record(acquireTime=moment, renewTime=moment),
    )
    assert harness.reconcile() is ReconcileAction.WAIT
    harness.signal()
    assert harness.reconcile() is ReconcileAction.CONTEND
    assert harness.status()["globalHolderIdentity"] == "west/x"
    harness.clock.advance(D)
    harness.signal()
    assert harness.reconcile() is ReconcileAction.CONTEND
    assert harness.record().data.holder == ("east", "pod-a")
    assert harness.status()["globalHolderIdentity"] == "pod-a"


def test_the_metrics_count_one_store_write_per_renewal(harness: Harness) -> None:
    registry = harness.reconciler.metrics.registry

    def operations(kind: str) -> float:
        value = registry.get_sample_value(
            "mclease_storage_operation_seconds_count", {"operation": kind}
        )
        return value or 0.0

    harness.start()
    before = {kind: operations(kind) for kind in ("read", "update", "create")}
    for _ in range(4):
        harness.clock.advance(1.0)
        harness.signal()
        harness.reconcile()
    assert operations("update") - before["update"] == 4
    assert operations("read") == before["read"]
    assert operations("create") == before["create"]
    assert (
        registry.get_sample_value(
            "mclease_lease_leader_here", {"namespace": harness.namespace, "name": KEY_NAME}
        )
        == 1
    )


def test_a_record_seen_expired_stays_expired_for_the_next_local_candidate(
    harness: Harness,
) -> None:
    """Found by the chaos runner: the expiry clock of another cluster's record restarted with
    each new local candidate (an elector per candidate), so two candidates signalling in turn
    never saw a record expire that the other cluster had long given up: 10 s from heal to a
    leader against the 8 s bound, rescued only by the other cluster's release."""
    put_raw_record(harness.store.inner, harness.key, raw_record())
    assert harness.reconcile() is ReconcileAction.WAIT
    harness.signal("pod-a")
    assert harness.reconcile() is ReconcileAction.CONTEND  # held elsewhere: refused
    harness.clock.advance(D)  # unchanged for its lease duration, as seen here
    harness.signal("pod-b")  # another local candidate took the spec meanwhile
    assert harness.reconcile() is ReconcileAction.CONTEND
    assert harness.record().data.holder == ("east", "pod-b")
    assert harness.confirms("pod-b")
