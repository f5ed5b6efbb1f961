"""The recording candidate: an application pod, as a process, with the standard Python elector
and ``MultiClusterLeaseLock``. Run it as ``python -m mclease_dev.candidate``.

For: the end-to-end and deployment tests, the multi-cluster demo and the controller benchmarks
(one double, so that what the tests check and what the benchmarks measure is the same program).
It campaigns forever with ``kubernetes.leaderelection.LeaderElection`` unchanged (a new
``LeaderElection`` after each lost term, since the standard elector returns after one). While it
leads, its "work" appends a heartbeat line ``<time.monotonic()> <identity> <term>`` to
``--heartbeats`` (if given) every 20 ms; ``CLOCK_MONOTONIC`` is shared by all processes of the
machine, so the spans of these lines are the leadership intervals, also when the process is
killed with -9.

``--events`` gets one line per lock call and per callback, on the same clock::

    call <start> <end> <ok> <get|create|update>  every lock call and its answer (for create and
                                                update, ok means confirmed)
    started <t> <term>                          onstarted_leading ran: the work starts
    stopped <t> <term>                          onstopped_leading returned (the work has stopped)
    releasing <t>                               after SIGTERM, the work stopped; release() next
    released <t> <ok>                           release() returned (empty holder written or not)

:mod:`mclease_dev.records` reads both files back. SIGTERM is a graceful stop: stop the work (no
heartbeat after this), then ``MultiClusterLeaseLock.release()`` writes an empty
``spec.holderIdentity`` so the controller releases the global lease at once, then exit 0.

It imports nothing of this harness (only the standard library, ``kubernetes`` and
``mclease_core``), so that it also runs as a plain script in an environment installed from the
release wheels alone (``tests/deploy``), from :data:`mclease_dev.multicluster.CANDIDATE_SCRIPT`.

Not for: production use (it is a test double of an application), nor anything the lock or the
elector should do themselves: the lock is subclassed only to record its calls' timing and result.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

from kubernetes import config as kube_config
from kubernetes.leaderelection import leaderelection

from mclease_core.kube import MultiClusterLeaseLock

HEARTBEAT_INTERVAL = 0.02


class Terminated(BaseException):
    """Raised in the main thread by the SIGTERM handler to leave the election loop. Not an
    ``Exception``, like ``KeyboardInterrupt``: raised inside a lock call, it was caught as a
    failed call (the lock and ``kubernetes.leaderelection`` catch ``Exception``), the candidate
    led on and never released (CI: the graceful-handoff e2e test, twice)."""


class Events:
    """Append-only event lines on the monotonic clock, flushed at once."""

    def __init__(self, path: Path):
        self._file: IO[str] = path.open("a", buffering=1)
        self._lock = threading.Lock()

    def write(self, *fields: object) -> None:
        with self._lock:
            self._file.write(" ".join(str(f) for f in fields) + "\n")
            self._file.flush()


class RecordingLock(MultiClusterLeaseLock):
    """The product's lock, unchanged, with each call's timing and answer written down."""

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


class Term:
    """One election round's work: heartbeats (if there is a ``heartbeats`` file) from
    ``onstarted_leading`` until :meth:`stop`.

    A round's ``onstarted_leading`` runs in a thread the elector starts, which may begin only
    after the round already ended; :meth:`stop` makes such a late start a no-op.
    """

    def __init__(self, number: int, identity: str, heartbeats: Path | None, events: Events):
        self.number = number
        self.identity = identity
        self.heartbeats = heartbeats
        self.events = events
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._started = False

    def run(self) -> None:
        """``onstarted_leading``: runs in the elector's thread until :meth:`stop`."""
        with self._guard:
            if self._stop.is_set():
                return
            self._started = True
        self.events.write("started", f"{time.monotonic():.6f}", self.number)
        try:
            if self.heartbeats is None:
                self._stop.wait()
                return
            with self.heartbeats.open("a", buffering=1) as out:
                while not self._stop.is_set():
                    out.write(f"{time.monotonic():.6f} {self.identity} {self.number}\n")
                    out.flush()
                    self._stop.wait(HEARTBEAT_INTERVAL)
        finally:
            self._done.set()

    def stop(self) -> None:
        """Returns only once this round can write no further heartbeat."""
        with self._guard:
            self._stop.set()
            started = self._started
        if started:
            self._done.wait()

    def on_stopped(self) -> None:
        """``onstopped_leading``."""
        self.stop()
        self.events.write("stopped", f"{time.monotonic():.6f}", self.number)


_terminating = threading.Event()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Leave the election loop once; a repeated SIGTERM must not interrupt the release."""
    if not _terminating.is_set():
        _terminating.set()
        raise Terminated


def parse_args(argv: Sequence[str] | None, prog: str | None = None) -> argparse.Namespace:
    """The recording candidate's flags (also those of ``mclease_dev.chaos candidate``)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n", 1)[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--name", required=True, help="the MultiClusterLease name")
    parser.add_argument("--identity", required=True)
    parser.add_argument("--heartbeats", type=Path, help="the heartbeat file (none: no beats)")
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--lease-duration", type=int, default=6)
    parser.add_argument("--renew-deadline", type=int, default=2)
    parser.add_argument("--retry-period", type=int, default=1)
    return parser.parse_args(None if argv is None else list(argv))


def recording_lock(args: argparse.Namespace) -> tuple[RecordingLock, Events]:
    """Logging to stderr, the event file, and the recording lock, as the flags say."""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {args.identity} %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
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
    return lock, events


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lock, events = recording_lock(args)
    signal.signal(signal.SIGTERM, _on_sigterm)
    term: Term | None = None
    try:
        for number in itertools.count(1):
            term = Term(number, args.identity, args.heartbeats, events)
            config = lock.election_config(term.run, term.on_stopped)
            leaderelection.LeaderElection(config).run()
    except Terminated:
        # Stop the work first, then tell the controller: the next leader may start at once.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if term is not None:
            term.stop()
        events.write("releasing", f"{time.monotonic():.6f}")
        released = lock.release()
        events.write("released", f"{time.monotonic():.6f}", int(released))
    return 0


if __name__ == "__main__":
    sys.exit(main())
