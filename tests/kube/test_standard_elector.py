"""The standard Python elector (``kubernetes.leaderelection``) with our lock, under a wall clock
stepped back (issue 8 item 7).

That elector measures its renew deadline with ``time.time()``, a library we do not own: a step
back of X seconds keeps it leading X seconds longer, unconfirmed. What the lock does about it, and
what this test measures: its own term ends on the monotonic clock (``lock.fencing_token`` turns
``None`` on time), and it refuses every call of that term until the elector has stopped, so the
stale term is never confirmed again. The controller is played by hand (tests/kube/test_lock.py).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kubernetes.leaderelection import leaderelection

from mclease_core.kube import MultiClusterLeaseLock
from tests.kube.test_lock import TIMING, HandController, lease  # noqa: F401 - the fixture

pytestmark = [pytest.mark.kube, pytest.mark.slow]

STEP_BACK = 4.0


class SteppedWallClock:
    """Stands in for the ``time`` module inside ``kubernetes.leaderelection``."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() - self.offset

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class RecordingLock(MultiClusterLeaseLock):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.updates: list[tuple[float, float, bool]] = []

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        started = time.monotonic()
        ok = super().update(name, namespace, updated_record)
        self.updates.append((started, time.monotonic(), ok))
        return ok


def test_a_wall_clock_step_back_keeps_the_standard_elector_leading_but_never_confirmed(
    mcl_cluster: Any,
    namespace: str,
    lease: MultiClusterLeaseLock,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wall = SteppedWallClock()
    monkeypatch.setattr(leaderelection, "time", wall)
    lock = RecordingLock("job", namespace, "pod-a", api_client=mcl_cluster.api_client(), **TIMING)
    started, stopped = threading.Event(), threading.Event()
    stopped_at: list[float] = []

    def on_stopped() -> None:
        stopped_at.append(time.monotonic())
        stopped.set()

    config = lock.election_config(started.set, on_stopped)
    controller = HandController(mcl_cluster, namespace)
    elector = threading.Thread(target=leaderelection.LeaderElection(config).run, daemon=True)
    elector.start()
    try:
        assert started.wait(15), "never led"
        time.sleep(2.5)  # a few confirmed renewals
        controller.enabled.clear()  # the controller goes away: no more confirmations
        last_ok = max(start for start, _, ok in lock.updates if ok)
        term_end = last_ok + 2 * lock.call_bound + 1 + 2  # the lock's term: + 2C + P + R
        while not any(start > last_ok and not ok for start, _, ok in lock.updates):
            time.sleep(0.01)  # the elector is inside its renew loop now
        wall.offset = STEP_BACK  # ... and the wall clock steps back
        while time.monotonic() < term_end - 0.05:
            assert lock.fencing_token is not None or stopped.is_set()
            time.sleep(0.05)
        time.sleep(0.1)
        assert lock.fencing_token is None, "the token outlived the lock's monotonic term"
        controller.enabled.set()  # confirmations would be back: the dead term must not get any
        assert stopped.wait(STEP_BACK + 10), "the elector never stopped"
    finally:
        controller.stop()
    acted = stopped_at[0] - last_ok
    late = [start for start, _, ok in lock.updates if ok and term_end < start < stopped_at[0]]
    assert not late, "a renewal of the dead term was confirmed"
    bound = 2 * 1 + 2 + 2 * lock.call_bound  # 2P + R + 2C, without clock steps
    print(
        f"\nstandard elector, wall clock stepped back {STEP_BACK:g}s: acted {acted:.2f}s after "
        f"its last confirmed call started (its bound without steps: {bound:.2f}s); the lock's "
        f"term ended after {term_end - last_ok:.2f}s"
    )
    assert acted > bound, "the step back did not stretch the elector's term (test premise)"
