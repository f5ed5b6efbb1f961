"""``mclease elect`` as real processes on one SQLite file: never two commands at once.

Each command appends a heartbeat (the machine's monotonic clock, shared by all processes on Linux)
to its own file every 20 ms, so a leadership interval is the span of its heartbeats, even when
the process is killed with -9 or paused with SIGSTOP.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mclease_core import open_storage
from mclease_core.testing import wait_until
from mclease_dev.processes import ElectProcess

pytestmark = pytest.mark.slow

D, R, P = 3.0, 2.0, 0.5
KILL_GRACE = (D - R) / 3  # the CLI's default
SLACK = 0.25  # scheduling: a 50 ms loop, a 20 ms heartbeat, process start-up on a loaded machine
HEARTBEAT = """
import os, sys, time
with open(sys.argv[1], "a", buffering=1) as out:
    while True:
        out.write(f"{time.monotonic()} {os.environ['MCLEASE_FENCING_TOKEN']}\\n")
        time.sleep(0.02)
"""


class Candidate(ElectProcess):
    def __init__(self, name: str, workdir: Path, url: str):
        self.url = url
        self.beats = workdir / f"{name}.beats"
        script = workdir / "heartbeat.py"
        script.write_text(HEARTBEAT)
        command = [sys.executable, str(script), str(self.beats)]
        super().__init__(name, url, "job", command, workdir / f"{name}.log", timing=(D, R, P))
        self.start()

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self.popen is not None
        return self.popen

    def heartbeats(self) -> list[tuple[float, int]]:
        if not self.beats.exists():
            return []
        rows = [
            line.split() for line in self.beats.read_text().splitlines() if line.count(" ") == 1
        ]
        return [(float(t), int(token)) for t, token in rows]

    def stop(self) -> None:
        if self.alive():
            self.kill()
        self.terminate()


@pytest.fixture
def candidates(tmp_path: Path) -> Iterator[tuple[Candidate, Candidate]]:
    url = f"sqlite://{tmp_path / 'leases.db'}"
    first, second = Candidate("alpha", tmp_path, url), Candidate("beta", tmp_path, url)
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    return wait_until(condition, timeout=timeout, interval=0.02, message=what)


def leader_and_follower(pair: tuple[Candidate, Candidate]) -> tuple[Candidate, Candidate]:
    leader = wait_for(lambda: next((c for c in pair if c.heartbeats()), None), 15, "a first leader")
    follower = pair[1] if leader is pair[0] else pair[0]
    return leader, follower


def assert_no_overlap(before: Candidate, after: Candidate) -> None:
    last_before = before.heartbeats()[-1]
    first_after = after.heartbeats()[0]
    assert last_before[0] < first_after[0], (
        f"{before.name} still ran at {last_before[0]:.3f}, "
        f"after {after.name} started at {first_after[0]:.3f}"
    )
    assert first_after[1] > last_before[1], "the new term must have a larger fencing token"


def test_kill_9_of_the_leader_hands_over_within_the_bound_without_overlap(
    candidates: tuple[Candidate, Candidate],
) -> None:
    leader, follower = leader_and_follower(candidates)
    time.sleep(1.0)  # let both run side by side for a while: the follower must stay idle
    assert follower.heartbeats() == []
    killed_at = time.monotonic()
    os.kill(leader.process.pid, signal.SIGKILL)
    wait_for(follower.heartbeats, D + 2 * P + 5, "the follower to take over")
    assert_no_overlap(leader, follower)
    assert leader.heartbeats()[-1][0] < killed_at + 0.2, "the killed leader's command kept running"
    takeover = follower.heartbeats()[0][0] - killed_at
    assert takeover <= D + 2 * P, f"takeover took {takeover:.2f}s, bound is {D + 2 * P}s"


def test_sigterm_of_the_leader_releases_and_hands_over_fast(
    candidates: tuple[Candidate, Candidate],
) -> None:
    leader, follower = leader_and_follower(candidates)
    time.sleep(0.5)
    stopped_at = time.monotonic()
    leader.process.send_signal(signal.SIGTERM)
    assert leader.process.wait(10) == 128 + signal.SIGTERM
    wait_for(follower.heartbeats, D + 2 * P + 5, "the follower to take over")
    assert_no_overlap(leader, follower)
    handover = follower.heartbeats()[0][0] - stopped_at
    # a release makes the lease free at once: the follower needs one (jittered) retry period,
    # far less than the lease duration it would otherwise wait
    assert handover < D, f"handover took {handover:.2f}s; the release did not free the lease"


def wait_for_renewal(url: str, holder: Candidate) -> float:
    """Wait until ``holder`` has just renewed the lease; return the monotonic time it was seen.

    Pausing the holder right after a renewal was committed means it is not inside a write (a
    process stopped in a SQLite transaction would hold the file's lock and block the others)."""
    with open_storage(url) as storage:
        first = storage.read("job").version

        def renewed_at() -> float | None:
            record = storage.read("job")
            renewed = record.version != first and record.data.holder_identity == holder.name
            return time.monotonic() if renewed else None

        seen: float | None = wait_until(
            renewed_at, timeout=5 * P, interval=0.005, message=f"{holder.name} to renew"
        )
        assert seen is not None
        return seen


def test_sigstop_of_the_leader_stops_its_command_before_the_takeover(
    candidates: tuple[Candidate, Candidate],
) -> None:
    """Issue 8, item 2: a paused elector (SIGSTOP, a VM or GC pause) cannot stop its command,
    so its supervisor does, at the term deadline it was last sent."""
    leader, follower = leader_and_follower(candidates)
    time.sleep(0.5)
    renewed_at = wait_for_renewal(leader.url, leader)
    os.kill(leader.process.pid, signal.SIGSTOP)  # the elector only: not its supervisor, command
    try:
        wait_for(follower.heartbeats, D + 3 * P + 5, "the follower to take over")
        time.sleep(1.0)  # stay paused well past the takeover
        paused_for = time.monotonic() - renewed_at
    finally:
        os.kill(leader.process.pid, signal.SIGCONT)
    code = leader.process.wait(10)  # and with it, its command
    assert paused_for > D + 2 * P
    last_before, first_after = leader.heartbeats()[-1][0], follower.heartbeats()[0][0]
    assert last_before < first_after, (
        f"{leader.name}'s command ran {last_before - first_after:.3f}s past {follower.name}'s "
        f"start while its elector was paused (last beat {last_before:.3f}, "
        f"{last_before - renewed_at:.3f}s after its last renewal)"
    )
    assert_no_overlap(leader, follower)
    stop_delay = last_before - renewed_at
    assert stop_delay <= R + KILL_GRACE + SLACK, (
        f"the paused leader's command stopped {stop_delay:.3f}s after its last renewal; the "
        f"bound is renew deadline + kill grace = {R + KILL_GRACE:.3f}s"
    )
    assert code == 3, "a leader that lost its lease exits 3"
    print(f"stop delay {stop_delay:.3f}s after the last renewal; paused {paused_for:.2f}s")
