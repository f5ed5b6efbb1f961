"""``CandidateElector`` with the real controller (in-process) on a real API server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from kubernetes import client as k8s

from mclease_core import ElectorCallbacks, LeadershipTerm
from mclease_core.controller import Controller
from mclease_core.kube import (
    GROUP,
    PLURAL,
    VERSION,
    CandidateElector,
    Confirmation,
    MultiClusterLeaseLock,
)

pytestmark = [pytest.mark.kube, pytest.mark.slow]

# What the ``controller_running`` fixture (tests/kube/conftest.py) gives.
RunningController = Callable[..., AbstractContextManager[Controller]]

TIMING = {"lease_duration": 6, "renew_deadline": 2, "retry_period": 1}


@pytest.fixture
def controller(
    mcl_cluster: Any, namespace: str, controller_running: RunningController
) -> Iterator[Controller]:
    with controller_running(mcl_cluster.api_client(), [namespace]) as running:
        yield running


class Recorder:
    def __init__(self) -> None:
        self.started: list[LeadershipTerm] = []
        self.stopped: list[str] = []
        self.leaders: list[tuple[str, str]] = []
        self.event = threading.Event()

    def callbacks(self) -> ElectorCallbacks:
        return ElectorCallbacks(
            on_started_leading=lambda term: (self.started.append(term), self.event.set()),
            on_stopped_leading=lambda term, why: self.stopped.append(why),
            on_new_leader=lambda identity, cluster: self.leaders.append((identity, cluster)),
        )


def candidate(cluster: Any, namespace: str, identity: str, recorder: Recorder) -> CandidateElector:
    lock = MultiClusterLeaseLock(
        "job", namespace, identity, api_client=cluster.api_client(), **TIMING
    )
    return CandidateElector(lock, callbacks=recorder.callbacks())


def test_leads_with_a_fencing_token_and_hands_over_on_stop(
    mcl_cluster: Any, namespace: str, controller: Controller
) -> None:
    first, second = Recorder(), Recorder()
    a = candidate(mcl_cluster, namespace, "pod-a", first).start()
    assert first.event.wait(20), "pod-a was never confirmed"
    assert first.started[0].fencing_token >= 1
    assert a.is_leader()
    b = candidate(mcl_cluster, namespace, "pod-b", second).start()
    try:
        assert not second.event.wait(3), "pod-b must not lead while pod-a renews"
        stopped_at = time.monotonic()
        a.stop(timeout=10)
        assert first.stopped == ["elector stopped"]
        assert second.event.wait(10), "pod-b did not take over after pod-a released"
        handover = time.monotonic() - stopped_at
        assert handover < TIMING["lease_duration"], f"handover took {handover:.2f}s: no release?"
        assert second.started[0].fencing_token > first.started[0].fencing_token
        assert ("pod-a", "east") in second.leaders
        # Events are sent after the confirming status (they must not delay it): wait for them.
        core = k8s.CoreV1Api(mcl_cluster.api_client())
        wanted = ("LeaderChanged", "global leader is now 'pod-b'")
        deadline = time.monotonic() + 5
        while True:
            events = core.list_namespaced_event(namespace).items
            reasons = [(event.reason, event.message) for event in events]
            if wanted in reasons or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert ("LeaderChanged", "global leader is now 'pod-a'") in reasons
        assert wanted in reasons
        assert any(reason == "Released" for reason, _ in reasons)
    finally:
        a.stop(timeout=10)
        b.stop(timeout=10)


class TestFencingTokenOfATerm:
    """Issue 8 item 15: the controller re-acquires the global lease mid-term (a controller
    restart, a replica failover) with a new token; the term kept its first one. The lock's
    confirmations are set by hand here: no API server is needed to test the elector's rule."""

    def confirmed_in_turn(self, *tokens: int) -> tuple[CandidateElector, Recorder]:
        """An elector whose lock was confirmed with each of ``tokens`` in turn (each for a new
        generation)."""
        recorder = Recorder()
        lock = MultiClusterLeaseLock("job", "ns", "pod-a", **TIMING)
        elector = CandidateElector(lock, callbacks=recorder.callbacks())
        for generation, token in enumerate(tokens, start=1):
            lock.last_confirmation = Confirmation(generation, token, time.monotonic())
            elector._confirmed()
        return elector, recorder

    def test_a_new_token_mid_term_is_adopted(self) -> None:
        elector, recorder = self.confirmed_in_turn(5, 9)
        assert elector.term is not None
        assert elector.term.fencing_token == 9
        assert [term.fencing_token for term in recorder.started] == [5]
        assert recorder.stopped == []

    def test_a_token_going_down_ends_the_term(self) -> None:
        elector, recorder = self.confirmed_in_turn(9, 5)
        assert elector.term is None
        assert recorder.stopped
        assert "went down" in recorder.stopped[0]


def test_a_stop_from_another_thread_writes_the_release_only_after_the_work_stopped(
    mcl_cluster: Any, namespace: str, controller: Controller
) -> None:
    """Found in review: stop() ran on_stopped_leading on the caller's thread while the loop's
    thread wrote the release that says "the work has stopped", and the controller freed the
    global lease at once."""
    api = k8s.CustomObjectsApi(mcl_cluster.api_client())
    seen_released: list[bool] = []
    started = threading.Event()

    def spec_released() -> bool:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "job")
        return (obj.get("spec") or {}).get("holderIdentity") == ""

    def on_stopped(term: LeadershipTerm, why: str) -> None:
        time.sleep(1.0)  # the work takes a second to stop
        seen_released.append(spec_released())

    lock = MultiClusterLeaseLock(
        "job", namespace, "pod-a", api_client=mcl_cluster.api_client(), **TIMING
    )
    elector = CandidateElector(
        lock, callbacks=ElectorCallbacks(lambda term: started.set(), on_stopped)
    ).start()
    assert started.wait(20)
    elector.stop(timeout=10)
    assert seen_released == [False], "the release was written before the work stopped"
    assert spec_released()
