"""A benchmark candidate: ``kubernetes.leaderelection`` unchanged, with ``MultiClusterLeaseLock``.

For: ``bench/controller.py``'s crash-failover and graceful-handoff runs. It campaigns forever (a
new ``LeaderElection`` after each lost term) and appends event lines to ``--events``, on
``time.monotonic()`` (``CLOCK_MONOTONIC`` is shared by all processes of the machine)::

    call <start> <end> <ok> <get|create|update>   each lock call (create/update ok = confirmed)
    started <t>                                   onstarted_leading ran: the work starts
    stopped <t>                                   onstopped_leading ran: the work stopped
    releasing <t>                                 after SIGTERM, the work stopped; release() next
    released <t> <ok>                             release() returned (empty holder written or not)

SIGTERM is the graceful stop: stop the work, then ``MultiClusterLeaseLock.release()``, exit 0.
A benchmark's own small double rather than ``tests/e2e/candidate.py``, so that a change to the
test suite's double does not change what the benchmark measures.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from kubernetes import config as kube_config
from kubernetes.leaderelection import leaderelection

from mclease_core.kube import MultiClusterLeaseLock


class Terminated(Exception):
    """Raised in the main thread by the SIGTERM handler."""


class Events:
    def __init__(self, path: Path):
        self._file = path.open("a", buffering=1)
        self._lock = threading.Lock()

    def write(self, *fields: object) -> None:
        with self._lock:
            self._file.write(" ".join(str(f) for f in fields) + "\n")
            self._file.flush()


class RecordingLock(MultiClusterLeaseLock):
    events: Events

    def _record(self, kind: str, started: float, ok: bool) -> None:
        self.events.write("call", f"{started:.6f}", f"{time.monotonic():.6f}", int(ok), kind)

    def get(self, name: str, namespace: str) -> tuple[bool, Any]:
        started = time.monotonic()
        found, record = super().get(name, namespace)
        self._record("get", started, found)
        return found, record

    def create(self, name: str, namespace: str, election_record: Any) -> bool:
        started = time.monotonic()
        ok = super().create(name, namespace, election_record)
        self._record("create", started, ok)
        return ok

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        started = time.monotonic()
        ok = super().update(name, namespace, updated_record)
        self._record("update", started, ok)
        return ok


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--identity", required=True)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--lease-duration", type=int, default=6)
    parser.add_argument("--renew-deadline", type=int, default=3)
    parser.add_argument("--retry-period", type=int, default=1)
    args = parser.parse_args()

    events = Events(args.events)
    lock = RecordingLock(
        args.name,
        args.namespace,
        args.identity,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
        api_client=kube_config.new_client_from_config(config_file=args.kubeconfig),
    )
    lock.events = events
    work = threading.Event()  # set: the work must stop

    def lead() -> None:
        work.clear()
        events.write("started", f"{time.monotonic():.6f}")
        work.wait()

    def stop_leading() -> None:
        work.set()
        events.write("stopped", f"{time.monotonic():.6f}")

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        while True:
            config = lock.election_config(lead, stop_leading)
            leaderelection.LeaderElection(config).run()
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        work.set()
        events.write("releasing", f"{time.monotonic():.6f}")
        released = lock.release()
        events.write("released", f"{time.monotonic():.6f}", int(released))
    return 0


if __name__ == "__main__":
    sys.exit(main())
