"""``MultiClusterLeaseLock`` against a real API server, with the controller's part played by hand.

These pin down the confirmation rules (docs/safety.md, rules 8 and 9): a status confirms a signal
only if it has processed that signal's generation and names this candidate, and only within the
call bound. The real controller is exercised in tests/e2e.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s

from mclease_core import LeaseTiming
from mclease_core.kube import (
    CONDITION_LOCK_ACQUIRED,
    GROUP,
    PLURAL,
    VERSION,
    MultiClusterLeaseLock,
    confirmation_bound,
)
from mclease_core.kube._lock import safety_margin

pytestmark = pytest.mark.kube

TIMING = {"lease_duration": 6, "renew_deadline": 2, "retry_period": 1}


def make_lock(
    cluster: Any, namespace: str, identity: str = "pod-a", **options: Any
) -> MultiClusterLeaseLock:
    return MultiClusterLeaseLock(
        "job", namespace, identity, api_client=cluster.api_client(), **TIMING, **options
    )


def merge_patch(
    cluster: Any, namespace: str, patch: dict[str, Any], *, status_subresource: bool = False
) -> None:
    api = k8s.CustomObjectsApi(cluster.api_client())
    send = (
        api.patch_namespaced_custom_object_status
        if status_subresource
        else api.patch_namespaced_custom_object
    )
    send(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "job",
        patch,
        _content_type="application/merge-patch+json",
    )


def set_status(cluster: Any, namespace: str, **status: Any) -> None:
    merge_patch(cluster, namespace, {"status": status}, status_subresource=True)


def read_job(cluster: Any, namespace: str) -> dict[str, Any]:
    api = k8s.CustomObjectsApi(cluster.api_client())
    job = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "job")
    assert isinstance(job, dict)
    return job


def generation(cluster: Any, namespace: str) -> int:
    return int(read_job(cluster, namespace)["metadata"]["generation"])


def assert_refused_within(seconds: float, call: Callable[[], bool], why: str = "") -> None:
    """``call()`` answers False, and no later than ``seconds`` after it started."""
    started = time.monotonic()
    assert call() is False
    assert time.monotonic() - started < seconds, why


def confirm_when_signalled(
    cluster: Any, namespace: str, holder: str, *, delay: float = 0.0, **more_status: Any
) -> threading.Thread:
    """Play the controller once: wait for a new generation, then (after ``delay``) write a
    status that has observed it and names ``holder`` (plus ``more_status``)."""
    start = generation(cluster, namespace)

    def controller() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            current = generation(cluster, namespace)
            if current > start:
                time.sleep(delay)
                set_status(
                    cluster,
                    namespace,
                    observedGeneration=current,
                    globalHolderIdentity=holder,
                    **more_status,
                )
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
    assert_refused_within(lock.call_bound + 0.5, lambda: lock.create("job", namespace, None))


def test_a_signal_confirmed_in_time_succeeds_with_the_fencing_token(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    assert lease.get("job", namespace)[0]
    confirm_when_signalled(mcl_cluster, namespace, "pod-a", fencingToken=42)
    assert lease.update("job", namespace, None)
    assert lease.last_confirmation is not None
    assert lease.last_confirmation.fencing_token == 42


def test_a_stale_status_naming_the_candidate_never_confirms(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    old = generation(mcl_cluster, namespace)
    set_status(mcl_cluster, namespace, observedGeneration=old, globalHolderIdentity="pod-a")
    assert lease.get("job", namespace)[0]
    assert_refused_within(lease.call_bound + 0.5, lambda: lease.update("job", namespace, None))


def test_a_qualified_holder_with_our_name_never_confirms(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    """Rule 12: another cluster's pod-a (or ours, not renewed) is written cluster/identity."""
    assert lease.get("job", namespace)[0]
    confirm_when_signalled(mcl_cluster, namespace, "west/pod-a", globalHolderCluster="west")
    assert lease.update("job", namespace, None) is False


def test_a_confirmation_after_the_call_bound_is_refused(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    assert lease.get("job", namespace)[0]
    writer = confirm_when_signalled(mcl_cluster, namespace, "pod-a", delay=lease.call_bound + 0.2)
    assert_refused_within(lease.call_bound + 0.5, lambda: lease.update("job", namespace, None))
    writer.join(5)


def test_only_one_local_candidate_can_write_the_spec(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    other = make_lock(mcl_cluster, namespace, "pod-b")
    assert lease.get("job", namespace)[0]
    assert other.get("job", namespace)[0]
    first = lease.update("job", namespace, None)  # writes; unconfirmed, so False, but it wrote
    assert first is False
    assert_refused_within(  # 409: its read is out of date
        0.3,
        lambda: other.update("job", namespace, None),
        "a lost local election must not wait for confirmation",
    )
    assert read_job(mcl_cluster, namespace)["spec"]["holderIdentity"] == "pod-a"


def test_release_writes_an_empty_holder_only_for_the_holder(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    other = make_lock(mcl_cluster, namespace, "pod-b")
    assert other.release() is False
    assert lease.release() is True
    assert read_job(mcl_cluster, namespace)["spec"]["holderIdentity"] == ""


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

    @staticmethod
    def lock_talking_to(port: int) -> MultiClusterLeaseLock:
        configuration = k8s.Configuration()
        configuration.host = f"http://127.0.0.1:{port}"
        return MultiClusterLeaseLock(
            "job", "ns", "pod-a", api_client=k8s.ApiClient(configuration), **TIMING
        )

    def test_each_call_ends_within_the_call_bound(self, silent_server: int) -> None:
        lock = self.lock_talking_to(silent_server)
        for call in (lambda: lock.get("job", "ns"), lambda: lock.create("job", "ns", None)):
            started = time.monotonic()
            call()
            elapsed = time.monotonic() - started
            assert elapsed < lock.call_bound + 0.3, f"a call took {elapsed:.2f}s"

    @pytest.fixture
    def trickling_server(self) -> Any:
        """Answers every request with a valid response, one byte every 50 ms (each byte resets
        a per-read socket timeout). No real API server does this; a hostile proxy can."""
        import socket

        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.2)
        stop = threading.Event()
        body = b'{"kind": "Status", "code": 404, "message": "' + b"x" * 300 + b'"}'
        answer = (
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )

        def serve(conn: socket.socket) -> None:
            with conn:
                try:
                    conn.recv(65536)
                    for index in range(len(answer)):
                        if stop.is_set():
                            return
                        conn.sendall(answer[index : index + 1])
                        time.sleep(0.05)
                except OSError:
                    return

        def accept() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except (TimeoutError, OSError):
                    continue
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        try:
            yield listener.getsockname()[1]
        finally:
            stop.set()
            listener.close()

    def test_a_trickled_answer_ends_within_the_call_bound(self, trickling_server: int) -> None:
        """Item 3: the bound was a per-read socket timeout; an answer trickling in a byte at a
        time made one get last 10.8 s with C = 1.33 s."""
        lock = self.lock_talking_to(trickling_server)
        started = time.monotonic()
        found, _ = lock.get("job", "ns")
        elapsed = time.monotonic() - started
        assert not found
        assert elapsed < lock.call_bound + 0.1, f"a call took {elapsed:.2f}s"

    def test_the_callers_client_keeps_its_retries(self, silent_server: int) -> None:
        client = k8s.ApiClient(k8s.Configuration())
        MultiClusterLeaseLock("job", "ns", "pod-a", api_client=client, **TIMING)
        assert client.configuration.retries is None


# ----- issue 8: adversarial schedules against the lock -----------------------------------------


@pytest.mark.parametrize(
    "identity", ["", "east/pod-a", "pod\na", "pod\x00a", "pod\ta", "pod\u200fa", "p" * 1025]
)
def test_identities_another_cluster_or_a_log_could_misread_are_refused(identity: str) -> None:
    """Items 5 and 17: the lock refuses what the CRD and the controller refuse."""
    with pytest.raises(ValueError, match="identity"):
        MultiClusterLeaseLock("job", "ns", identity)


@pytest.mark.parametrize("field", ["lease_duration", "renew_deadline", "retry_period"])
def test_fractional_timings_are_refused_as_the_spec_holds_whole_seconds(field: str) -> None:
    """Item 6: the lock sized C from D=4.5 but wrote round(4.5) = 4, which every cluster then
    waited: margin 0. What is computed and what is written must agree."""
    timings: dict[str, Any] = {"lease_duration": 9, "renew_deadline": 3, "retry_period": 1}
    timings[field] += 0.5
    with pytest.raises(ValueError, match="whole number of seconds"):
        MultiClusterLeaseLock("job", "ns", "pod-a", **timings)


def test_the_spec_carries_exactly_the_timings_the_bound_is_computed_from(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    assert lease.get("job", namespace)[0]
    lease.update("job", namespace, None)
    spec = read_job(mcl_cluster, namespace)["spec"]
    written = (
        spec["leaseDurationSeconds"],
        spec["renewDeadlineSeconds"],
        spec["retryPeriodSeconds"],
    )
    assert written == (6, 2, 1)
    assert confirmation_bound(LeaseTiming(*written)) == lease.call_bound


def test_a_status_from_the_future_neither_confirms_nor_deposes(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    """Item 20: an observedGeneration above metadata.generation is impossible: ignored."""
    set_status(mcl_cluster, namespace, observedGeneration=2**62, globalHolderIdentity="pod-a")
    assert lease.get("job", namespace)[0]
    assert lease.update("job", namespace, None) is False
    set_status(mcl_cluster, namespace, observedGeneration=2**62, globalHolderIdentity="west/x")
    found, record = lease.get("job", namespace)
    assert found
    assert record.holder_identity == "pod-a", "a forged holder made the leader step down"


def test_no_signal_is_written_to_an_object_being_deleted(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    """Item 12: the controller confirms nobody while an object is being deleted; a candidate
    that keeps signalling into it only delays nothing and wastes writes."""
    merge_patch(mcl_cluster, namespace, {"metadata": {"finalizers": ["test/keep"]}})
    k8s.CustomObjectsApi(mcl_cluster.api_client()).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "job"
    )
    before = generation(mcl_cluster, namespace)
    assert lease.get("job", namespace)[0]
    assert_refused_within(0.5, lambda: lease.update("job", namespace, None))
    assert generation(mcl_cluster, namespace) == before
    merge_patch(mcl_cluster, namespace, {"metadata": {"finalizers": None}})


class JumpClock:
    """The machine's clocks, with the monotonic one able to jump ahead, as it does for a process
    that was paused (SIGSTOP, a VM migration, a long GC) and resumes."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def now(self) -> Any:
        import datetime as dt

        return dt.datetime.now(dt.UTC)


class HandController:
    """Plays the controller: confirms each new generation naming ``identity`` while enabled."""

    def __init__(
        self, cluster: Any, namespace: str, identity: str = "pod-a", *, delay: float = 0.0
    ):
        self.cluster = cluster
        self.namespace = namespace
        self.identity = identity
        self.delay = delay
        self.enabled = threading.Event()
        self.enabled.set()
        self._started_at = generation(cluster, namespace)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        api = k8s.CustomObjectsApi(self.cluster.api_client())
        confirmed = self._started_at  # only signals written after it started
        while not self._stop.is_set():
            try:
                obj = api.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, "job", _request_timeout=2
                )
            except k8s.ApiException:
                time.sleep(0.01)
                continue
            current = int(obj["metadata"]["generation"])
            holder = (obj.get("spec") or {}).get("holderIdentity")
            if self.enabled.is_set() and current > confirmed and holder == self.identity:
                time.sleep(self.delay)
                set_status(
                    self.cluster,
                    self.namespace,
                    observedGeneration=current,
                    globalHolderIdentity=self.identity,
                    fencingToken=current,
                )
                confirmed = current
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_a_term_over_by_the_monotonic_clock_is_never_confirmed_again(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    """Item 7: the standard elector measures its deadlines with time.time(), so after a pause
    (or a wall clock stepped back) it keeps renewing a term that is over. The lock keeps that
    term on its own monotonic clock: it refuses the term's calls until the elector reports that
    it stopped leading, and its fencing token is gone meanwhile."""
    clock = JumpClock()
    lock = make_lock(mcl_cluster, namespace, clock=clock)
    stopped: list[bool] = []
    config = lock.election_config(lambda: None, lambda: stopped.append(True))
    controller = HandController(mcl_cluster, namespace)
    try:
        assert lock.get("job", namespace)[0]
        assert lock.update("job", namespace, None)
        assert lock.fencing_token is not None
        clock.offset = 60.0  # the process was paused for a minute
        assert lock.fencing_token is None, "a token outlived its term on the monotonic clock"
        before = generation(mcl_cluster, namespace)
        assert lock.get("job", namespace)[0] is False
        assert lock.update("job", namespace, None) is False
        assert generation(mcl_cluster, namespace) == before, "a dead term signalled again"
        config.onstopped_leading()  # the elector noticed: campaigning anew is allowed
        assert stopped == [True]
        assert lock.get("job", namespace)[0]
        assert lock.update("job", namespace, None), "a new campaign must be confirmed"
        assert lock.fencing_token is not None
    finally:
        controller.stop()


def test_without_the_electors_word_a_dead_term_is_refused_for_the_rest_of_its_renew_loop(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    clock = JumpClock()
    lock = make_lock(mcl_cluster, namespace, clock=clock)
    controller = HandController(mcl_cluster, namespace)
    try:
        assert lock.get("job", namespace)[0]
        assert lock.update("job", namespace, None)
        clock.offset = 60.0
        assert lock.get("job", namespace)[0] is False
        clock.offset += 2 + 2 * 1 + lock.call_bound + 0.01  # R + 2P + C later
        assert lock.get("job", namespace)[0]
        assert lock.update("job", namespace, None)
    finally:
        controller.stop()


def test_one_constructor_gives_the_elector_the_locks_timings(
    mcl_cluster: Any, namespace: str
) -> None:
    """Item 8: only D was compared; R and P could differ between lock and elector."""
    lock = make_lock(mcl_cluster, namespace)
    config = lock.election_config(lambda: None)
    assert (config.lease_duration, config.renew_deadline, config.retry_period) == (6, 2, 1)


def test_an_elector_renewing_slower_than_the_locks_retry_period_is_reported(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock, caplog: Any
) -> None:
    """Item 8: an elector whose retry period is longer than the lock's acts longer than the
    lock's bound after its last confirmation; the lock says so."""
    controller = HandController(mcl_cluster, namespace)
    try:
        assert lease.get("job", namespace)[0]
        assert lease.update("job", namespace, None)
        time.sleep(1 + 1.0)  # the elector's P = 2 s, the lock's P = 1 s
        with caplog.at_level("ERROR", logger="mclease.lock"):
            lease.get("job", namespace)
        assert any("retry_period is 1s" in message for message in caplog.messages)
    finally:
        controller.stop()


def test_confirmations_seen_only_after_the_call_gave_up_are_reported_to_the_controller(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    """Found in review: a path signal -> confirmation slower than C (a lagging watch) renewed
    every signal and confirmed nobody. The lock tells the controller on its next signals."""
    controller = HandController(mcl_cluster, namespace, delay=lease.call_bound + 0.2)
    try:
        for _ in range(5):
            assert lease.get("job", namespace)[0]
            assert lease.update("job", namespace, None) is False
            time.sleep(0.5)
        obj = read_job(mcl_cluster, namespace)
        note = json.loads(obj["metadata"]["annotations"]["mclease.io/candidate"])
        assert note["missed"] >= 2
    finally:
        controller.stop()


def test_a_status_that_does_not_renew_the_latest_signal_is_no_late_confirmation(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    """Found by the simulator (seed 1327): a controller that stops renewing for a candidate
    whose confirmations come late writes, for each new signal, the status of the generation
    before it, naming the candidate. The lock counted each as a late confirmation of its previous
    signal, so ``missed`` grew with every refusal and never fell back."""
    assert lease.get("job", namespace)[0]
    assert lease.update("job", namespace, None) is False  # no controller: gives up
    first = int(read_job(mcl_cluster, namespace)["metadata"]["generation"])
    set_status(
        mcl_cluster, namespace, observedGeneration=first, globalHolderIdentity=lease.identity
    )
    assert lease.get("job", namespace)[0]  # the first signal confirmed late: counts once
    assert lease.update("job", namespace, None) is False
    second = int(read_job(mcl_cluster, namespace)["metadata"]["generation"])
    for _ in range(3):  # each signal refused: status stays at the generation before it
        assert lease.get("job", namespace)[0]
        assert lease.update("job", namespace, None) is False
        latest = int(read_job(mcl_cluster, namespace)["metadata"]["generation"])
        set_status(
            mcl_cluster,
            namespace,
            observedGeneration=latest - 1,
            globalHolderIdentity=lease.identity,
        )
    assert second > first
    assert lease.get("job", namespace)[0]
    assert lease.update("job", namespace, None) is False
    note = json.loads(
        read_job(mcl_cluster, namespace)["metadata"]["annotations"]["mclease.io/candidate"]
    )
    assert note.get("missed", 0) == 1, note


def test_the_refusal_of_a_new_signal_is_no_late_confirmation_of_the_one_before(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    """Found by the simulator (seeds 7037, 10649, 17650): the refusal of a signal (the status of
    the generation before, rule 8) arrives while the lock still polls for it, and the generation
    before is the latest one it gave up on. It counted each refusal as a late confirmation, so
    ``missed`` never fell and the controller never renewed for it again: nobody led for good.
    The lock condition names the generation the controller reconciled, which tells them apart."""
    assert lease.get("job", namespace)[0]
    assert lease.update("job", namespace, None) is False  # no controller: gives up

    before = generation(mcl_cluster, namespace)
    refused: list[int] = []

    def refuse() -> None:
        deadline = time.monotonic() + 10
        while (current := generation(mcl_cluster, namespace)) == before:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        refusal = {
            "type": CONDITION_LOCK_ACQUIRED,
            "status": "False",
            "reason": "ConfirmationLate",
            "message": "not renewed",
            "observedGeneration": current,
            "lastTransitionTime": "2026-12-02T00:00:00Z",
        }
        set_status(
            mcl_cluster,
            namespace,
            observedGeneration=current - 1,
            globalHolderIdentity=lease.identity,
            conditions=[refusal],
        )
        refused.append(current)

    refusing = threading.Thread(target=refuse, daemon=True)
    refusing.start()
    assert lease.get("job", namespace)[0]
    assert lease.update("job", namespace, None) is False  # refused
    refusing.join()
    assert refused == [before + 1], "the refusal was not written while the lock polled"
    assert lease.get("job", namespace)[0]
    assert lease.update("job", namespace, None) is False  # its annotation carries the count
    note = json.loads(
        read_job(mcl_cluster, namespace)["metadata"]["annotations"]["mclease.io/candidate"]
    )
    assert note.get("missed", 0) == 0, note


def test_a_status_written_ahead_of_the_generation_never_confirms_once_it_is_reached(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    """Found by the simulator (a status forged one generation ahead, seed 3 of a
    forge-status search): the lock ignored it only while it was ahead; the candidate's next
    signal raised the generation to it, and it confirmed a signal no controller had seen, while
    another cluster led. A status already there when the signal was written confirms nothing."""
    assert lease.get("job", namespace)[0]
    ahead = generation(mcl_cluster, namespace) + 1  # what the lock's next write will create
    set_status(
        mcl_cluster, namespace, observedGeneration=ahead, globalHolderIdentity=lease.identity
    )
    assert lease.get("job", namespace)[0]
    assert lease.update("job", namespace, None) is False
    assert generation(mcl_cluster, namespace) == ahead


class StaleWatch:
    """Stands in for the lock's watch of its object when its connection went silent without
    closing (a NAT forgetting it): healthy by its own account, and its latest copy is ``copy``
    forever. Nothing real here can be made to go silent at the right moment of one call."""

    started = True
    healthy = True
    refused = None

    def __init__(self, copy: dict[str, Any]) -> None:
        self.copy = copy

    def wait_newer(self, sequence: int, timeout: float) -> tuple[int, dict[str, Any] | None]:
        if sequence < 1:
            return 1, self.copy
        time.sleep(timeout)
        return sequence, None

    def stop(self) -> None:
        pass


def test_a_watched_copy_of_a_deleted_object_never_confirms_its_successor(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    """Found in review: the watch's last copy of a deleted object, confirmed for pod-a at a
    generation above the new object's, confirmed pod-a's create of the successor at once, with
    no renewal for it, while another cluster could lead."""
    for second in (0, 1):  # two more signals: a generation the successor starts below
        merge_patch(mcl_cluster, namespace, {"spec": {"renewTime": f"2026-12-02T00:00:0{second}Z"}})
    set_status(
        mcl_cluster,
        namespace,
        observedGeneration=generation(mcl_cluster, namespace),
        globalHolderIdentity="pod-a",
    )
    old = read_job(mcl_cluster, namespace)
    assert int(old["metadata"]["generation"]) > 1
    k8s.CustomObjectsApi(mcl_cluster.api_client()).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "job"
    )
    lock = make_lock(mcl_cluster, namespace, watch=False)
    lock.watch = StaleWatch(old)  # type: ignore[assignment]
    assert lock.get("job", namespace)[0] is False  # gone: the next call creates
    assert_refused_within(
        lock.call_bound + 0.5,
        lambda: lock.create("job", namespace, None),
        "a copy of the deleted object confirmed the create",
    )


def test_a_watched_copy_from_before_the_signal_neither_confirms_nor_ends_the_call(
    mcl_cluster: Any, namespace: str, lease: MultiClusterLeaseLock
) -> None:
    """The watch's latest copy predates the signal (its event is still in flight) and names
    another holder: the call waits for the controller instead of giving up at once (every
    handoff failed its first call so)."""
    merge_patch(mcl_cluster, namespace, {"spec": {"holderIdentity": ""}})
    before = read_job(mcl_cluster, namespace)
    lock = make_lock(mcl_cluster, namespace, watch=False)
    lock.watch = StaleWatch(before)  # type: ignore[assignment]
    assert lock.get("job", namespace)[0]
    confirm_when_signalled(mcl_cluster, namespace, "pod-a", delay=0.1)
    assert lock.update("job", namespace, None)
