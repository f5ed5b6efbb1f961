"""``mclease elect``: run a command only while holding a global lease.

Like ``etcdctl elect`` or ``consul lock``: campaign for the lease; when elected, start the command
with the term's fencing token in its environment; when leadership ends, stop the command (SIGTERM,
then SIGKILL after a grace period) and exit; when the command exits, release the lease and exit
with its code; on SIGTERM or SIGINT, stop the command, release, and exit 128 + signal.

Safety: the command is stopped before the lease is released, and the elector ends a term
``renew_deadline`` after its last renewal was sent, so with ``renew_deadline + kill_grace <
lease_duration`` no other elector's command can start while this one's still runs. The command
is started with ``PR_SET_PDEATHSIG`` so a ``kill -9`` of this process kills it too (Linux only;
grandchildren of a shell command are not covered: ``exec`` the real program).

Not here: argument parsing (``_cli``) and the election itself (``_elector``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Sequence
from types import FrameType

from ._elector import ElectorCallbacks, LeaderElector, LeadershipTerm
from ._process import preexec_dying_with_parent

log = logging.getLogger("mclease.elect")

EXIT_LEADERSHIP_LOST = 3


@dataclasses.dataclass(frozen=True)
class _Event:
    kind: str  # "started", "stopped", "signal"
    term: LeadershipTerm | None = None
    reason: str = ""
    signum: int = 0


class ElectedCommand:
    """Runs ``command`` while ``elector`` leads; :meth:`run` returns the exit code to use."""

    def __init__(self, elector: LeaderElector, command: Sequence[str], *, kill_grace: float):
        timing = elector.timing
        if kill_grace < 0 or timing.renew_deadline + kill_grace >= timing.lease_duration:
            raise ValueError(
                f"kill grace {kill_grace:g}s is too long: renew_deadline "
                f"({timing.renew_deadline:g}s) + kill grace must stay below lease_duration "
                f"({timing.lease_duration:g}s), or the next leader could start while this command "
                "still runs"
            )
        self.elector = elector
        self.command = list(command)
        self.kill_grace = kill_grace
        self._events: queue.Queue[_Event] = queue.Queue()
        self._child: subprocess.Popen[bytes] | None = None
        self._child_lock = threading.Lock()
        elector.callbacks = ElectorCallbacks(
            on_started_leading=lambda term: self._events.put(_Event("started", term=term)),
            on_stopped_leading=self._on_stopped_leading,
            on_new_leader=self._on_new_leader,
        )

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        self.elector.start()
        try:
            return self._loop()
        finally:
            self._stop_child()
            self.elector.stop(timeout=self.elector.storage.capabilities.operation_timeout + 5)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _loop(self) -> int:
        while True:
            try:
                event = self._events.get(timeout=0.05)
            except queue.Empty:
                code = self._child_exit_code()
                if code is not None:
                    log.info("command exited with code %d; releasing the lease", code)
                    return code
                continue
            if event.kind == "started" and event.term is not None:
                if not self.elector.is_leader():
                    continue  # the term already ended before we got here
                self._start_child(event.term)
            elif event.kind == "stopped" and self._child is not None:
                log.error("leadership lost (%s); stopped the command", event.reason)
                return EXIT_LEADERSHIP_LOST
            elif event.kind == "signal":
                log.info("received signal %d; stopping", event.signum)
                return 128 + event.signum

    def _start_child(self, term: LeadershipTerm) -> None:
        env = dict(
            os.environ,
            MCLEASE_LEASE_NAME=term.lease_name,
            MCLEASE_IDENTITY=term.identity,
            MCLEASE_FENCING_TOKEN=str(term.fencing_token),
        )
        with self._child_lock:
            self._child = subprocess.Popen(
                self.command,
                env=env,
                preexec_fn=preexec_dying_with_parent(),
            )
        log.info(
            "leading %r as %r (fencing token %d); started %s as pid %d",
            term.lease_name,
            term.identity,
            term.fencing_token,
            self.command[0],
            self._child.pid,
        )

    def _on_stopped_leading(self, term: LeadershipTerm, reason: str) -> None:
        # Runs on the elector's watchdog thread: signal the command at once, without waiting for
        # the main loop, so the command stops within the renew deadline.
        with self._child_lock:
            child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
        self._events.put(_Event("stopped", term=term, reason=reason))

    def _on_new_leader(self, identity: str, cluster: str) -> None:
        log.info(
            "leader of %r is now %s",
            self.elector.name,
            f"{cluster}/{identity}" if cluster else identity,
        )

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._events.put(_Event("signal", signum=signum))

    def _child_exit_code(self) -> int | None:
        with self._child_lock:
            child = self._child
        return None if child is None else child.poll()

    def _stop_child(self) -> None:
        with self._child_lock:
            child = self._child
        if child is None or child.poll() is not None:
            return
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(self.kill_grace)
        except subprocess.TimeoutExpired:
            log.warning("command did not exit within %.1fs of SIGTERM; killing it", self.kill_grace)
            child.kill()
            child.wait()

