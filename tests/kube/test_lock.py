"""``MultiClusterLeaseLock`` against a real API server, with the controller's part played by hand.

These pin down the confirmation rules (docs/safety.md, rules 3 and 4): a status confirms a signal
only if it has processed that signal's generation and names this candidate, and only within the
call bound. The real controller is exercised in tests/e2e.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s

from mclease_core import LeaseTiming
from mclease_core.kube import GROUP, PLURAL, VERSION, MultiClusterLeaseLock, confirmation_bound
from mclease_core.kube._lock import safety_margin

pytestmark = pytest.mark.kube

TIMING = {"lease_duration": 6, "renew_deadline": 2, "retry_period": 1}


def make_lock(cluster: Any, namespace: str, identity: str = "pod-a") -> MultiClusterLeaseLock:
    return MultiClusterLeaseLock(
        "job", namespace, identity, api_client=cluster.api_client(), **TIMING
    )


def set_status(cluster: Any, namespace: str, **status: Any) -> None:
    k8s.CustomObjectsApi(cluster.api_client()).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "job",
        {"status": status},
        _content_type="application/merge-patch+json",
    )


def generation(cluster: Any, namespace: str) -> int:
    obj = k8s.CustomObjectsApi(cluster.api_client()).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "job"
    )
    return int(obj["metadata"]["generation"])


def confirm_when_signalled(
    cluster: Any, namespace: str, status_for: Callable[[int], dict[str, Any]], delay: float = 0.0
) -> threading.Thread:
    """Play the controller once: wait for a new generation, then (after ``delay``) write the
    status ``status_for(generation)``."""
    start = generation(cluster, namespace)

    def controller() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            current = generation(cluster, namespace)
            if current > start:
                time.sleep(delay)
                set_status(cluster, namespace, **status_for(current))
                return
            time.sleep(0.01)

    thread = threading.Thread(target=controller, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def lease(mcl_cluster: Any, namespace: str) -> MultiClusterLeaseLock:
    """A lock whose object exists, created with the candidate's spec as a first signal would."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MultiClusterLease",
        "metadata": {"name": "job", "namespace": namespace},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 6},
    }
    k8s.CustomObjectsApi(mcl_cluster.api_client()).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, _request_timeout=30
    )
    return make_lock(mcl_cluster, namespace)


def test_a_create_nobody_confirms_fails_within_the_bound(mcl_cluster: Any, namespace: str) -> None:
    lock = make_lock(mcl_cluster, namespace)
    started = time.monotonic()
    assert lock.create("job", namespace, None) is False
    assert time.monotonic() - started < lock.call_bound + 0.5


def test_a_signal_confirmed_in_time_succeeds_with_the_fencing_token(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    assert lease.get("job", namespace)[0]
    confirm_when_signalled(
        mcl_cluster,
        namespace,
        lambda g: {"observedGeneration": g, "globalHolderIdentity": "pod-a", "fencingToken": 42},
    )
    assert lease.update("job", namespace, None)
    assert lease.last_confirmation is not None
    assert lease.last_confirmation.fencing_token == 42


def test_a_stale_status_naming_the_candidate_never_confirms(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    old = generation(mcl_cluster, namespace)
    set_status(mcl_cluster, namespace, observedGeneration=old, globalHolderIdentity="pod-a")
    assert lease.get("job", namespace)[0]
    started = time.monotonic()
    assert lease.update("job", namespace, None) is False
    assert time.monotonic() - started < lease.call_bound + 0.5


def test_a_qualified_holder_with_our_name_never_confirms(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    """Rule 5: another cluster's pod-a (or ours, not renewed) is written cluster/identity."""
    assert lease.get("job", namespace)[0]
    confirm_when_signalled(
        mcl_cluster,
        namespace,
        lambda g: {
            "observedGeneration": g,
            "globalHolderIdentity": "west/pod-a",
            "globalHolderCluster": "west",
        },
    )
    assert lease.update("job", namespace, None) is False


def test_a_confirmation_after_the_call_bound_is_refused(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    assert lease.get("job", namespace)[0]
    writer = confirm_when_signalled(
        mcl_cluster,
        namespace,
        lambda g: {"observedGeneration": g, "globalHolderIdentity": "pod-a"},
        delay=lease.call_bound + 0.2,
    )
    started = time.monotonic()
    assert lease.update("job", namespace, None) is False
    assert time.monotonic() - started < lease.call_bound + 0.5
    writer.join(5)


def test_only_one_local_candidate_can_write_the_spec(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    other = make_lock(mcl_cluster, namespace, "pod-b")
    assert lease.get("job", namespace)[0]
    assert other.get("job", namespace)[0]
    first = lease.update("job", namespace, None)  # writes; unconfirmed, so False, but it wrote
    assert first is False
    started = time.monotonic()
    assert other.update("job", namespace, None) is False  # 409: its read is out of date
    assert time.monotonic() - started < 0.3, "a lost local election must not wait for confirmation"
    obj = k8s.CustomObjectsApi(mcl_cluster.api_client()).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "job"
    )
    assert obj["spec"]["holderIdentity"] == "pod-a"


def test_release_writes_an_empty_holder_only_for_the_holder(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    other = make_lock(mcl_cluster, namespace, "pod-b")
    assert other.release() is False
    assert lease.release() is True
    obj = k8s.CustomObjectsApi(mcl_cluster.api_client()).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "job"
    )
    assert obj["spec"]["holderIdentity"] == ""


def test_a_pending_local_signal_is_reported_as_the_holder(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    """Status names nobody, pod-a's signal waits in the spec: pod-b sees pod-a, so it waits
    instead of overwriting pod-a's signal (the standard elector tries at once on no holder)."""
    found, record = make_lock(mcl_cluster, namespace, "pod-b").get("job", namespace)
    assert found
    assert record.holder_identity == "pod-a"
    set_status(mcl_cluster, namespace, observedGeneration=1, globalHolderIdentity="west/x")
    assert make_lock(mcl_cluster, namespace, "pod-b").get("job", namespace)[1].holder_identity == (
        "west/x"
    )


def test_get_reports_a_missing_object_as_404(mcl_cluster: Any, namespace: str) -> None:
    found, error = make_lock(mcl_cluster, namespace).get("job", namespace)
    assert found is False
    assert error.status == 404


class TestTimingRules:
    def test_the_call_bound_leaves_the_margin(self) -> None:
        timing = LeaseTiming(6, 2, 1)
        bound = confirmation_bound(timing)
        assert bound == pytest.approx(1.4 / 3)
        assert 3 * bound + 2 * 1 + 2 + safety_margin(timing) == pytest.approx(6)

    def test_timings_without_room_for_a_call_are_refused(self) -> None:
        with pytest.raises(ValueError, match="lease_duration 5s is too short"):
            confirmation_bound(LeaseTiming(5, 2.5, 1))

    @pytest.mark.parametrize(("renew", "retry"), [(10, 2), (3, 1), (2.5, 1), (30, 5)])
    def test_the_suggested_lease_duration_is_enough(self, renew: float, retry: float) -> None:
        with pytest.raises(ValueError, match=r"Use lease_duration >= (\d+)s") as info:
            confirmation_bound(LeaseTiming(renew + 0.5, renew, retry))
        suggested = int(info.value.args[0].split(">= ")[1].split("s")[0])
        assert confirmation_bound(LeaseTiming(suggested, renew, retry)) >= 0.25
        with pytest.raises(ValueError):
            confirmation_bound(LeaseTiming(suggested - 1, renew, retry))

    def test_the_default_timings_are_valid(self) -> None:
        assert MultiClusterLeaseLock("job", "ns", "pod-a").call_bound == pytest.approx(4 / 3)

    @pytest.mark.parametrize("identity", ["", "east/pod-a"])
    def test_identities_must_be_bare(self, identity: str) -> None:
        with pytest.raises(ValueError, match="identity"):
            MultiClusterLeaseLock("job", "ns", identity)


class TestHungApiServer:
    """A server that accepts connections and never answers: every call still ends in time."""

    @pytest.fixture
    def silent_server(self) -> Any:
        import socket

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        try:
            yield listener.getsockname()[1]
        finally:
            listener.close()

    def test_each_call_ends_within_the_call_bound(self, silent_server: int) -> None:
        configuration = k8s.Configuration()
        configuration.host = f"http://127.0.0.1:{silent_server}"
        lock = MultiClusterLeaseLock(
            "job", "ns", "pod-a", api_client=k8s.ApiClient(configuration), **TIMING
        )
        for call in (lambda: lock.get("job", "ns"), lambda: lock.create("job", "ns", None)):
            started = time.monotonic()
            call()
            elapsed = time.monotonic() - started
            assert elapsed < lock.call_bound + 0.3, f"a call took {elapsed:.2f}s"

    def test_the_callers_client_keeps_its_retries(self, silent_server: int) -> None:
        client = k8s.ApiClient(k8s.Configuration())
        MultiClusterLeaseLock("job", "ns", "pod-a", api_client=client, **TIMING)
        assert client.configuration.retries is None
