"""The controller's metric bookkeeping: controller-runtime's names and labels, the work queue's
counts, and per-lease series that go away with their lease. No API server, no sleeping: the work
clock is a FakeClock and delays are either zero or far in the future."""

from __future__ import annotations

import platform
import uuid
from typing import Any

import pytest
from kubernetes import client as k8s
from prometheus_client import generate_latest

from mclease_core import FakeClock, __version__
from mclease_core.backends import MemoryStorage
from mclease_core.controller import Controller, ControllerConfig, Metrics
from mclease_core.controller._metrics import CONTROLLER, RESULTS, MeteredWorkQueue

QUEUE = {"name": CONTROLLER, "controller": CONTROLLER}
PER_CONTROLLER = {"controller": CONTROLLER}
FAR = 3600.0


def value(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


class TestProcessSeries:
    def test_process_python_and_gc_collectors_are_in_the_controllers_registry(self) -> None:
        metrics = Metrics()
        assert (value(metrics, "process_resident_memory_bytes") or 0) > 0
        assert value(metrics, "process_start_time_seconds") is not None
        python = {
            "implementation": platform.python_implementation(),
            "major": str(platform.python_version_tuple()[0]),
            "minor": str(platform.python_version_tuple()[1]),
            "patchlevel": str(platform.python_version_tuple()[2]),
            "version": platform.python_version(),
        }
        assert value(metrics, "python_info", python) == 1
        assert value(metrics, "python_gc_collections_total", {"generation": "0"}) is not None

    def test_build_info_names_the_version_and_python(self) -> None:
        labels = {"version": __version__, "python": platform.python_version()}
        assert value(Metrics(), "mclease_build_info", labels) == 1

    def test_two_controllers_in_one_process_do_not_collide(self) -> None:
        Metrics()
        Metrics()  # a shared registry would refuse the second set of names


class TestReconcileCounts:
    def test_every_result_is_exported_from_the_start(self) -> None:
        metrics = Metrics()
        for result in RESULTS:
            labels = {**PER_CONTROLLER, "result": result}
            assert value(metrics, "controller_runtime_reconcile_total", labels) == 0
        assert value(metrics, "controller_runtime_reconcile_errors_total", PER_CONTROLLER) == 0

    def test_results_errors_retries_and_time(self) -> None:
        metrics = Metrics()
        for result, seconds in [
            ("requeue_after", 0.25),
            ("requeue_after", 0.25),
            ("error", 0.5),
            ("requeue", 0.125),
            ("success", 0.125),
        ]:
            metrics.record_reconcile(result, seconds)

        def total(result: str) -> float | None:
            labels = {**PER_CONTROLLER, "result": result}
            return value(metrics, "controller_runtime_reconcile_total", labels)

        assert [total(result) for result in RESULTS] == [1, 1, 1, 2]
        assert value(metrics, "controller_runtime_reconcile_errors_total", PER_CONTROLLER) == 1
        assert value(metrics, "workqueue_retries_total", QUEUE) == 2  # the error and the requeue
        time_labels = PER_CONTROLLER
        assert value(metrics, "controller_runtime_reconcile_time_seconds_count", time_labels) == 5
        assert value(metrics, "controller_runtime_reconcile_time_seconds_sum", time_labels) == 1.25

    def test_an_unknown_result_is_refused(self) -> None:
        with pytest.raises(ValueError, match="one of"):
            Metrics().record_reconcile("ok", 0.1)


class TestWorkQueue:
    def queue(self) -> tuple[Metrics, MeteredWorkQueue, FakeClock]:
        metrics, clock = Metrics(), FakeClock()
        return metrics, MeteredWorkQueue(metrics, clock.monotonic), clock

    def test_an_add_counts_once_per_wait(self) -> None:
        metrics, queue, _ = self.queue()
        queue.add("ns/a")
        queue.add("ns/a")  # already waiting
        queue.add("ns/b", FAR)
        queue.add("ns/b")  # moves its due time earlier: still one wait
        assert value(metrics, "workqueue_adds_total", QUEUE) == 2
        assert queue.get(timeout=0) is not None
        assert queue.get(timeout=0) is not None
        queue.add("ns/a")  # while it is worked on: waits for done()
        queue.add("ns/a")
        assert value(metrics, "workqueue_adds_total", QUEUE) == 3
        queue.done("ns/a")  # re-queued from the add above, not a new add
        assert value(metrics, "workqueue_adds_total", QUEUE) == 3
        requeued = queue.get(timeout=0)
        assert requeued is not None
        assert requeued[0] == "ns/a"
        assert queue.get(timeout=0) is None

    def test_depth_counts_only_due_keys_not_handed_out(self) -> None:
        metrics, queue, _ = self.queue()
        assert value(metrics, "workqueue_depth", QUEUE) == 0
        queue.add("ns/a")
        queue.add("ns/b")
        queue.add("ns/later", FAR)  # a periodic re-queue: not in the ready queue yet
        assert value(metrics, "workqueue_depth", QUEUE) == 2
        assert queue.get(timeout=0) is not None
        assert value(metrics, "workqueue_depth", QUEUE) == 1

    def test_work_in_progress_and_its_duration(self) -> None:
        metrics, queue, clock = self.queue()
        queue.add("ns/a")
        queue.add("ns/b")
        first = queue.get(timeout=0)
        clock.advance(3)
        second = queue.get(timeout=0)
        clock.advance(2)
        assert first is not None
        assert second is not None
        assert value(metrics, "workqueue_unfinished_work_seconds", QUEUE) == 7
        assert value(metrics, "workqueue_longest_running_processor_seconds", QUEUE) == 5
        assert value(metrics, "workqueue_queue_duration_seconds_count", QUEUE) == 2
        queue.done(first[0])
        assert value(metrics, "workqueue_work_duration_seconds_count", QUEUE) == 1
        assert value(metrics, "workqueue_work_duration_seconds_sum", QUEUE) == 5
        assert value(metrics, "workqueue_unfinished_work_seconds", QUEUE) == 2
        queue.done(second[0])
        assert value(metrics, "workqueue_unfinished_work_seconds", QUEUE) == 0
        assert value(metrics, "workqueue_longest_running_processor_seconds", QUEUE) == 0
        assert value(metrics, "workqueue_work_duration_seconds_sum", QUEUE) == 7


class TestReplicaElection:
    def test_the_gauge_follows_the_term_at_each_scrape(self) -> None:
        metrics = Metrics()
        leading = [False]
        metrics.watch_replica("mclease-controller-east", lambda: leading[0])
        labels = {"name": "mclease-controller-east"}
        assert value(metrics, "leader_election_master_status", labels) == 0
        leading[0] = True
        assert value(metrics, "leader_election_master_status", labels) == 1

    def test_no_series_without_replica_election(self) -> None:
        text = generate_latest(Metrics().registry).decode()
        assert "# TYPE leader_election_master_status gauge" in text
        assert "leader_election_master_status{" not in text


class TestPerLeaseSeries:
    def test_forgetting_a_lease_removes_only_its_series(self) -> None:
        metrics = Metrics()
        for name in ("gone", "kept"):
            metrics.is_leader.labels("ns", name).set(1)
            metrics.transitions.labels("ns", name).set(4)
        metrics.forget_lease("ns", "gone")
        metrics.forget_lease("ns", "never-seen")
        for series in ("mclease_lease_leader_here", "mclease_lease_transitions"):
            assert value(metrics, series, {"namespace": "ns", "name": "gone"}) is None
            assert value(metrics, series, {"namespace": "ns", "name": "kept"}) is not None


class TestControllerForgetsLeases:
    """The manager's bookkeeping only: nothing here reaches an API server (none is running)."""

    def controller(self) -> Controller:
        config = ControllerConfig(cluster="east", metrics_address=None, health_address=None)
        api = k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:9"))
        return Controller(api, MemoryStorage(uuid.uuid4().hex), config)

    def lease(self, namespace: str, name: str) -> dict[str, Any]:
        return {"metadata": {"namespace": namespace, "name": name, "generation": 1}}

    def series(self, controller: Controller, namespace: str, name: str) -> float | None:
        labels = {"namespace": namespace, "name": name}
        return value(controller.metrics, "mclease_lease_leader_here", labels)

    def seen(self, controller: Controller, namespace: str, name: str) -> None:
        controller._offer(self.lease(namespace, name), "ADDED")
        controller.metrics.is_leader.labels(namespace, name).set(1)

    def test_a_deleted_lease_loses_its_series(self) -> None:
        controller = self.controller()
        self.seen(controller, "ns", "job")
        controller._offer(self.lease("ns", "job"), "DELETED")
        assert self.series(controller, "ns", "job") is None

    def test_a_lease_missing_from_a_fresh_list_is_forgotten(self) -> None:
        """Its DELETED event was missed (no watch ran when it went): the relist is the news."""
        controller = self.controller()
        for namespace, name in [("a", "gone"), ("a", "kept"), ("ab", "other")]:
            self.seen(controller, namespace, name)
        self.relist(controller, "a", [self.lease("a", "kept")])
        assert self.series(controller, "a", "gone") is None
        assert self.series(controller, "a", "kept") == 1
        assert self.series(controller, "ab", "other") == 1, "another namespace's list"
        self.relist(controller, None, [self.lease("a", "kept")])
        assert self.series(controller, "ab", "other") is None

    def relist(
        self, controller: Controller, namespace: str | None, items: list[dict[str, Any]]
    ) -> None:
        """A list that returns ``items``, and no watch after it (the controller is stopping)."""
        listing = {"items": items, "metadata": {"resourceVersion": "7"}}
        controller._list = lambda namespace: listing  # type: ignore[method-assign]
        controller.stop()
        controller._list_and_watch(namespace)
