"""What an operator sees of a controller on a real API server: ``/metrics`` in controller-runtime's
terms, per-lease series that go with their lease, and Events that ``kubectl describe`` shows.

The running controller is in-process (its metrics served on a loopback port) with a real
candidate; the Event types are checked one reconcile at a time with a fake clock and the
in-memory store wrapped to inject outages.
"""

from __future__ import annotations

import platform
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from kubernetes import client as k8s
from prometheus_client.parser import text_string_to_metric_families

from mclease_core import ElectorCallbacks, FakeClock, LeaseTiming, __version__
from mclease_core.backends import MemoryStorage
from mclease_core.conformance import sample_lease_data
from mclease_core.controller import Controller, ReconcileAction, Reconciler
from mclease_core.kube import CandidateElector, MultiClusterLeaseLock
from mclease_core.testing import free_port, wait_until
from mclease_dev.leases import GROUP, KIND, PLURAL, VERSION, Leases, lease_body
from tests.support import FaultyStorage

pytestmark = [pytest.mark.kube, pytest.mark.slow]

# What the ``controller_running`` fixture (tests/kube/conftest.py) gives.
RunningController = Callable[..., AbstractContextManager[Controller]]

TIMING = {"lease_duration": 6, "renew_deadline": 2, "retry_period": 1}
WORKERS = 2
QUEUE = {"name": "multiclusterlease", "controller": "multiclusterlease"}
PER_CONTROLLER = {"controller": "multiclusterlease"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    return wait_until(condition, timeout=timeout, message=what)


class Scraper:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def samples(self) -> Samples:
        with urllib.request.urlopen(self.url, timeout=5) as response:
            text = response.read().decode()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """The sample, or ``None`` (also while the endpoint does not answer yet)."""
        try:
            samples = self.samples()
        except OSError:
            return None
        return samples.get((name, frozenset((labels or {}).items())))


@pytest.fixture
def running(
    mcl_cluster: Any, namespace: str, controller_running: RunningController
) -> Iterator[tuple[Controller, Scraper]]:
    port = free_port()
    with controller_running(
        mcl_cluster.api_client(),
        [namespace],
        join_timeout=15,
        workers=WORKERS,
        metrics_address=("127.0.0.1", port),
        leader_elect=True,
        leader_elect_namespace=namespace,
        leader_elect_timing=LeaseTiming(3, 2, 0.5),
    ) as controller:
        yield controller, Scraper(port)


def test_metrics_events_and_series_of_a_deleted_lease(
    mcl_cluster: Any, namespace: str, running: tuple[Controller, Scraper]
) -> None:
    _, scrape = running
    replica = {"name": "mclease-controller-east"}
    wait_for(lambda: scrape.value("leader_election_master_status", replica) == 1, 20, "active")
    started = threading.Event()
    lock = MultiClusterLeaseLock(
        "job",
        namespace,
        "pod-a",
        api_client=mcl_cluster.api_client(),
        lease_duration=TIMING["lease_duration"],
        renew_deadline=TIMING["renew_deadline"],
        retry_period=TIMING["retry_period"],
    )
    candidate = CandidateElector(
        lock, callbacks=ElectorCallbacks(on_started_leading=lambda term: started.set())
    ).start()
    lease = {"namespace": namespace, "name": "job"}
    try:
        assert started.wait(20), "pod-a was never confirmed"
        wait_for(lambda: scrape.value("mclease_lease_leader_here", lease) == 1, 10, "leader here")
        finished = "workqueue_work_duration_seconds_count"
        wait_for(lambda: (scrape.value(finished, QUEUE) or 0) >= 2, 10, "two reconciles done")
        check_series(scrape.samples(), lease)
    finally:
        candidate.stop(timeout=10)

    leases = Leases(mcl_cluster.api_client(), namespace)
    events = events_of(mcl_cluster, namespace, leases.get("job")["metadata"]["uid"])
    assert ("LeaderChanged", "Normal") in {(event.reason, event.type) for event in events}
    assert all(event.involved_object.resource_version for event in events)
    described = mcl_cluster.kubectl("describe", "multiclusterlease", "job", "-n", namespace)
    assert "LeaderChanged" in described.stdout.split("Events:")[-1]

    leases.api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "job")

    def gone() -> bool:
        samples = scrape.samples()
        labels = frozenset(lease.items())
        return all((name, labels) not in samples for name in PER_LEASE)

    wait_for(gone, 20, "the deleted lease's series to go")


PER_LEASE = ("mclease_lease_leader_here", "mclease_lease_transitions")


def events_of(cluster: Any, namespace: str, uid: str) -> list[Any]:
    """The Events ``kubectl describe`` shows for the object: it selects them by uid."""
    selector = f"involvedObject.uid={uid},involvedObject.kind={KIND}"
    core = k8s.CoreV1Api(cluster.api_client())
    return list(core.list_namespaced_event(namespace, field_selector=selector).items)


def check_series(samples: Samples, lease: dict[str, str]) -> None:
    """The series an operator's dashboards expect, with values that make sense for a controller
    that has just confirmed one lease."""

    def get(name: str, labels: dict[str, str] | None = None) -> float:
        found = samples.get((name, frozenset((labels or {}).items())))
        assert found is not None, f"{name}{labels or ''} is not exported"
        return found

    build = {"version": __version__, "python": platform.python_version()}
    assert get("mclease_build_info", build) == 1
    assert get("process_cpu_seconds_total") > 0
    assert get("process_resident_memory_bytes") > 0
    assert any(name == "python_info" for name, _ in samples)
    assert get("python_gc_collections_total", {"generation": "0"}) >= 0
    assert get("workqueue_adds_total", QUEUE) >= 1
    assert get("workqueue_depth", QUEUE) >= 0
    assert get("workqueue_queue_duration_seconds_count", QUEUE) >= 1
    assert get("workqueue_work_duration_seconds_count", QUEUE) >= 2
    assert 0 <= get("workqueue_unfinished_work_seconds", QUEUE) < 30
    assert 0 <= get("workqueue_longest_running_processor_seconds", QUEUE) < 30
    assert get("workqueue_retries_total", QUEUE) >= 0
    periodic = {**PER_CONTROLLER, "result": "requeue_after"}
    assert get("controller_runtime_reconcile_total", periodic) >= 1
    assert get("controller_runtime_reconcile_errors_total", PER_CONTROLLER) >= 0
    assert get("controller_runtime_reconcile_time_seconds_count", PER_CONTROLLER) >= 2
    assert get("controller_runtime_max_concurrent_reconciles", PER_CONTROLLER) == WORKERS
    assert 0 <= get("controller_runtime_active_workers", PER_CONTROLLER) <= WORKERS
    assert get("mclease_lease_transitions", lease) >= 0
    assert get("mclease_storage_operation_seconds_count", {"operation": "create"}) >= 1


# ----- Event types, one reconcile at a time -----------------------------------------------------


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, view: Any, kind: str, reason: str, message: str) -> None:
        self.seen.append((reason, kind))

    def of(self, reason: str) -> list[str]:
        return [kind for seen, kind in self.seen if seen == reason]


class Stepper:
    """One lease ("job", D=6 R=2 P=1) and a reconciler driven by hand."""

    def __init__(self, cluster: Any, namespace: str) -> None:
        self.leases = Leases(cluster.api_client(), namespace)
        self.namespace = namespace
        self.clock = FakeClock()
        self.store = FaultyStorage(MemoryStorage(uuid.uuid4().hex), self.clock)
        self.events = Events()
        self.signals = 0
        self.reconciler = Reconciler(
            self.leases.api,
            self.store,
            cluster="east",
            retry_period=1.0,
            clock=self.clock,
            events=self.events,
        )
        self.leases.create(
            lease_body(
                "job",
                holderIdentity="pod-a",
                leaseDurationSeconds=TIMING["lease_duration"],
                renewDeadlineSeconds=TIMING["renew_deadline"],
                retryPeriodSeconds=TIMING["retry_period"],
            )
        )

    @property
    def key(self) -> str:
        return f"{self.namespace}/job"

    def signal(self) -> None:
        self.signals += 1
        self.clock.advance(1.0)
        self.leases.patch("job", {"spec": {"renewTime": f"2026-11-26T12:00:{self.signals:02d}Z"}})

    def reconcile(self) -> ReconcileAction:
        result = self.reconciler.reconcile(self.namespace, "job")
        assert result.plan is not None
        return result.plan.action

    def lead(self) -> None:
        assert self.reconcile() is ReconcileAction.WAIT
        self.signal()
        assert self.reconcile() is ReconcileAction.CONTEND
        assert self.leases.get("job")["status"]["globalHolderIdentity"] == "pod-a"


@pytest.fixture
def stepper(mcl_cluster: Any, namespace: str) -> Stepper:
    return Stepper(mcl_cluster, namespace)


def test_a_store_outage_is_one_warning_and_its_end_one_normal(stepper: Stepper) -> None:
    stepper.lead()
    assert stepper.events.of("LeaderChanged") == ["Normal"]
    stepper.store.down = True
    for _ in range(3):
        stepper.signal()
        assert stepper.reconcile() is ReconcileAction.CONTEND
    assert stepper.events.of("BackendError") == ["Warning"]
    assert stepper.events.of("BackendHealthy") == []
    stepper.store.down = False
    stepper.signal()
    assert stepper.reconcile() is ReconcileAction.CONTEND
    assert stepper.events.of("BackendHealthy") == ["Normal"]
    assert stepper.leases.get("job")["status"]["globalHolderIdentity"] == "pod-a"


def test_a_lease_taken_by_another_cluster_is_a_warning(stepper: Stepper) -> None:
    stepper.lead()
    record = stepper.store.inner.read(stepper.key)
    west = sample_lease_data("pod-x", holder_cluster="west", lease_duration_seconds=6.0)
    stepper.store.inner.update(stepper.key, west, version=record.version)
    stepper.signal()
    assert stepper.reconcile() is ReconcileAction.CONTEND
    assert stepper.leases.get("job")["status"]["globalHolderIdentity"] == "west/pod-x"
    assert stepper.events.of("LeadershipLost") == ["Warning"]
    assert stepper.events.of("LeaderChanged") == ["Normal"], "only the first leader's"


def test_a_release_is_normal_and_no_loss(stepper: Stepper) -> None:
    stepper.lead()
    stepper.clock.advance(TIMING["lease_duration"] + 1)  # pod-a went silent
    assert stepper.reconcile() is ReconcileAction.RELEASE
    assert stepper.events.of("Released") == ["Normal"]
    assert stepper.events.of("LeadershipLost") == []
