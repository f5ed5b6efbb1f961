"""The elector's own loop and watchdog, on real threads and short real timings.

These check what stepping with a fake clock cannot: that the watchdog ends a term on time while
the loop is stuck in a storage call, and that stop() returns promptly and releases.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mclease_core import ElectorCallbacks, LeaderElector, LeaseData, LeaseObject, LeaseTiming
from mclease_core.backends import SQLiteStorage
from tests.support import FaultyStorage

TIMING = LeaseTiming(lease_duration=1.0, renew_deadline=0.6, retry_period=0.2)


def wait_until(condition, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


class HangingStorage(FaultyStorage):
    """Updates block until released, like a store that accepts a connection and never answers."""

    def __init__(self, inner: SQLiteStorage):
        super().__init__(inner)
        self.hang = threading.Event()
        self.unblock = threading.Event()

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        if self.hang.is_set():
            self.unblock.wait(30)
        return super().update(key, data, version=version)


def test_the_watchdog_ends_the_term_while_a_renewal_hangs(tmp_path: Path) -> None:
    store = HangingStorage(SQLiteStorage(tmp_path / "l.db"))
    stopped_at: list[float] = []
    elector = LeaderElector(
        store,
        "lease",
        "a",
        timing=TIMING,
        release_on_stop=False,
        callbacks=ElectorCallbacks(
            on_stopped_leading=lambda term, why: stopped_at.append(time.monotonic())
        ),
    )
    elector.start()
    try:
        assert wait_until(elector.is_leader)
        term = elector.term
        assert term is not None
        store.hang.set()
        hung_at = time.monotonic()
        assert wait_until(lambda: bool(stopped_at), timeout=3.0)
        # the term ends renew_deadline after the last renewal was sent, at most ~one retry period
        # before the hang began; generous slack for a loaded machine, far below the lease duration
        assert stopped_at[0] - hung_at < TIMING.renew_deadline + 0.25
        assert not elector.is_leader()
    finally:
        store.unblock.set()
        elector.stop(timeout=5)


def test_two_looping_electors_hand_over_on_stop(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    started = {"a": threading.Event(), "b": threading.Event()}
    electors = {
        name: LeaderElector(
            SQLiteStorage(path),
            "lease",
            name,
            timing=TIMING,
            callbacks=ElectorCallbacks(on_started_leading=lambda term, n=name: started[n].set()),
        )
        for name in ("a", "b")
    }
    electors["a"].start()
    assert started["a"].wait(5)
    electors["b"].start()
    try:
        assert not started["b"].wait(1.5)  # a renews: b never gets in
        asked = time.monotonic()
        electors["a"].stop(timeout=5)
        stop_took = time.monotonic() - asked
        assert not electors["a"].is_leader()
        assert stop_took < 1.0, f"stop() took {stop_took:.2f}s"
        assert started["b"].wait(
            TIMING.retry_period * 1.2 + 0.5
        )  # released: no lease-duration wait
    finally:
        for elector in electors.values():
            elector.stop(timeout=5)


def test_a_healthy_loop_reports_healthy(tmp_path: Path) -> None:
    elector = LeaderElector(SQLiteStorage(tmp_path / "l.db"), "lease", "a", timing=TIMING)
    elector.start()
    try:
        assert wait_until(elector.is_leader)
        assert elector.healthy()
    finally:
        elector.stop(timeout=5)


@pytest.mark.parametrize("release_on_stop", [True, False])
def test_stop_releases_only_when_asked(tmp_path: Path, release_on_stop: bool) -> None:
    storage = SQLiteStorage(tmp_path / "l.db")
    elector = LeaderElector(storage, "lease", "a", timing=TIMING, release_on_stop=release_on_stop)
    elector.start()
    assert wait_until(elector.is_leader)
    elector.stop(timeout=5)
    assert storage.read("lease").data.is_released is release_on_stop


def test_a_stop_from_another_thread_releases_only_after_the_work_stopped() -> None:
    """Found in review: stop() ends the term on the caller's thread while the loop's thread, woken
    by the same stop, released at once: the record said "free" while on_stopped_leading was
    still stopping the work, and another elector could start."""
    from mclease_core.backends import MemoryStorage

    store = MemoryStorage("stop-race-" + str(time.monotonic_ns()))
    started = threading.Event()
    released_while_stopping: list[bool] = []

    def on_stopped(term: object, why: str) -> None:
        time.sleep(0.5)  # the work takes a while to stop
        released_while_stopping.append(store.read("job").data.is_released)

    elector = LeaderElector(
        store,
        "job",
        "a",
        timing=TIMING,
        callbacks=ElectorCallbacks(lambda term: started.set(), on_stopped),
    ).start()
    assert started.wait(5)
    elector.stop(timeout=5)
    assert released_while_stopping == [False]
    assert store.read("job").data.is_released, "released once the work had stopped"


def test_stop_from_the_stopped_callback_does_not_deadlock() -> None:
    from mclease_core.backends import MemoryStorage

    store = MemoryStorage("stop-in-callback-" + str(time.monotonic_ns()))
    started = threading.Event()
    holder: list[LeaderElector] = []
    elector = LeaderElector(
        store,
        "job",
        "a",
        timing=TIMING,
        callbacks=ElectorCallbacks(lambda term: started.set(), lambda term, why: holder[0].stop()),
    )
    holder.append(elector)
    elector.start()
    assert started.wait(5)
    began = time.monotonic()
    elector.stop(timeout=5)
    assert time.monotonic() - began < 2
