"""The demo: two `mclease elect` processes compete for one lease on the embedded SQLite store.

alpha and beta each want to run a worker. Only the leader's worker runs. The demo then kills the
leader with SIGKILL (no release, no goodbye) and shows the other take over once the lease expires,
as a timeline. Everything it starts is stopped at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

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


class Candidate:
    def __init__(self, name: str, url: str):
        self.name = name
        self.led_at: float | None = None
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mclease_core._cli",
                "elect",
                "--storage",
                url,
                "--name",
                "demo-job",
                "--identity",
                name,
                "--lease-duration",
                str(LEASE_DURATION),
                "--renew-deadline",
                str(RENEW_DEADLINE),
                "--retry-period",
                str(RETRY_PERIOD),
                "--",
                sys.executable,
                "-c",
                WORKER,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        for stream in (self.process.stdout, self.process.stderr):
            threading.Thread(target=self._follow, args=(stream,), daemon=True).start()

    def _follow(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            line = line.rstrip()
            if "worker started" in line:
                self.led_at = time.monotonic()
                say(self.name, f"LEADER: {line}")
            elif "leader of" in line and "is now" in line:
                say(self.name, "sees leader: " + line.split("is now ", 1)[1])
            elif "worker still working" in line:
                pass
            elif "stopped leading" in line or "released" in line or "received signal" in line:
                say(self.name, line.split(": ", 1)[-1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_for_leader(candidates: list[Candidate], timeout: float) -> Candidate | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for candidate in candidates:
            if candidate.led_at is not None and candidate.process.poll() is None:
                return candidate
        time.sleep(0.02)
    return None


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="mclease-demo-") as workdir:
        url = f"sqlite://{Path(workdir) / 'leases.db'}"
        print(f"mclease demo: two candidates, one lease, store {url}")
        print(
            f"  lease duration {LEASE_DURATION:g}s, renew deadline {RENEW_DEADLINE:g}s, "
            f"retry period {RETRY_PERIOD:g}s\n"
        )
        candidates = [Candidate("alpha", url), Candidate("beta", url)]
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
            os.kill(leader.process.pid, signal.SIGKILL)
            leader.process.wait()
            bound = LEASE_DURATION + 2 * RETRY_PERIOD
            new_leader = wait_for_leader([follower], bound + 5)
            if new_leader is None:
                print(f"{follower.name} did not take over within {bound + 5:g}s", file=sys.stderr)
                return 1
            gap = (new_leader.led_at or 0) - killed_at
            time.sleep(1.5)
            say("demo", f"SIGTERM {new_leader.name}: it stops its worker and releases the lease")
            new_leader.stop()
            verdict = "within" if gap <= bound else "OVER"
            print(
                f"\ntakeover after {gap:.2f}s, {verdict} the bound of lease duration + 2 x retry "
                f"period = {bound:g}s; never two workers at once."
            )
            return 0 if gap <= bound else 1
        finally:
            for candidate in candidates:
                candidate.stop()
            print("all processes stopped.")


if __name__ == "__main__":
    sys.exit(main())
