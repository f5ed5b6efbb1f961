"""The demo: two `mclease elect` processes compete for one lease on the embedded SQLite store.

alpha and beta each want to run a worker. Only the leader's worker runs. The demo then kills the
leader with SIGKILL (no release, no goodbye) and shows the other take over once the lease expires,
as a timeline. Everything it starts is stopped at the end.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from mclease_core.testing import wait_until
from mclease_dev.processes import ElectProcess

LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 4.0, 3.0, 1.0
WORKER = (
    "import os, time\n"
    "print(f\"worker started, fencing token {os.environ['MCLEASE_FENCING_TOKEN']}\", flush=True)\n"
    "while True:\n    time.sleep(1.0)\n    print('worker still working', flush=True)\n"
)
START = time.monotonic()
PRINT_LOCK = threading.Lock()


def say(who: str, what: str) -> None:
    with PRINT_LOCK:
        print(f"  t={time.monotonic() - START:6.2f}s  {who:<6} {what}", flush=True)


class Candidate(ElectProcess):
    """One ``mclease elect`` whose output the demo follows, printing what matters."""

    def __init__(self, name: str, url: str, workdir: Path):
        self.led_at: float | None = None
        super().__init__(
            name,
            url,
            "demo-job",
            [sys.executable, "-c", WORKER],
            workdir / f"{name}.log",
            timing=(LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD),
            on_line=self._on_line,
        )
        self.start()

    def _on_line(self, line: str) -> None:
        if "worker started" in line:
            self.led_at = time.monotonic()
            say(self.name, f"LEADER: {line}")
        elif "leader of" in line and "is now" in line:
            say(self.name, "sees leader: " + line.split("is now ", 1)[1])
        elif "stopped leading" in line or "released" in line or "received signal" in line:
            say(self.name, line.split(": ", 1)[-1])


def wait_for_leader(candidates: list[Candidate], timeout: float) -> Candidate | None:
    def leader() -> Candidate | None:
        return next((c for c in candidates if c.led_at is not None and c.alive()), None)

    try:
        return wait_until(leader, timeout=timeout, interval=0.02, message="a leader")
    except AssertionError:
        return None


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="mclease-demo-") as workdir:
        url = f"sqlite://{Path(workdir) / 'leases.db'}"
        print(f"mclease demo: two candidates, one lease, store {url}")
        print(
            f"  lease duration {LEASE_DURATION:g}s, renew deadline {RENEW_DEADLINE:g}s, "
            f"retry period {RETRY_PERIOD:g}s\n"
        )
        candidates = [Candidate("alpha", url, Path(workdir)), Candidate("beta", url, Path(workdir))]
        say("demo", "started alpha and beta")
        try:
            leader = wait_for_leader(candidates, 15)
            if leader is None:
                print("no leader was elected within 15s", file=sys.stderr)
                return 1
            time.sleep(3)
            follower = next(c for c in candidates if c is not leader)
            say("demo", f"kill -9 {leader.name} (the leader; its worker dies with it, no release)")
            killed_at = time.monotonic()
            os.kill(leader.pid, signal.SIGKILL)  # the elector alone, as a crash of it would
            assert leader.popen is not None
            leader.popen.wait()
            bound = LEASE_DURATION + 2 * RETRY_PERIOD
            new_leader = wait_for_leader([follower], bound + 5)
            if new_leader is None:
                print(f"{follower.name} did not take over within {bound + 5:g}s", file=sys.stderr)
                return 1
            gap = (new_leader.led_at or 0) - killed_at
            time.sleep(1.5)
            say("demo", f"SIGTERM {new_leader.name}: it stops its worker and releases the lease")
            os.kill(new_leader.pid, signal.SIGTERM)  # the elector alone: it stops its worker
            assert new_leader.popen is not None
            new_leader.popen.wait(10)
            verdict = "within" if gap <= bound else "OVER"
            print(
                f"\ntakeover after {gap:.2f}s, {verdict} the bound of lease duration + 2 x retry "
                f"period = {bound:g}s; never two workers at once."
            )
            return 0 if gap <= bound else 1
        finally:
            for candidate in candidates:
                candidate.terminate()
            print("all processes stopped.")


if __name__ == "__main__":
    sys.exit(main())
