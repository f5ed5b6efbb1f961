"""``mclease elect``: run a command only while holding a global lease.

Like ``etcdctl elect`` or ``consul lock``: campaign for the lease; when elected, start the command
with the term's fencing token in its environment; when leadership ends, stop the command (SIGTERM,
then SIGKILL after a grace period) and exit; when the command exits, release the lease and exit
with its code; on SIGTERM or SIGINT, stop the command, release, and exit 128 + signal.

Safety: the command is stopped before the lease is released, and the elector ends a term
``renew_deadline`` after its last renewal was sent, so with ``renew_deadline + kill_grace <
lease_duration`` no other elector's command can start while this one's still runs. The command
runs under a supervisor process (``_supervisor``) that this process sends the term's deadline
to: it stops the command at that deadline even while this process is paused (SIGSTOP, a VM or GC
pause) and cannot act. Both are started with ``PR_SET_PDEATHSIG``, so a ``kill -9`` of this
process kills them too (Linux only; grandchildren of a shell command are not covered: ``exec`` the
real program).

Waiting to be elected: for ever by default. With ``timeout`` (``--timeout``), ``run()`` gives up
and returns 1 when no term started within that time, as ``consul lock -timeout`` does; the
timeout bounds the wait only, never the command once it runs. With ``single_attempt``
(``--try``) it makes one attempt and returns 1 unless that attempt elected it, like ``flock -n``.
One attempt cannot take over a lease whose holder died: expiry is measured by watching the record
stay unchanged for a lease duration, so use a timeout longer than that to wait for a takeover.

The command is resolved before campaigning (:func:`check_runnable`, on the ``PATH`` the command
gets): not found is exit 127, found but not executable 126, as in a shell.

Exit codes of :meth:`ElectedCommand.run`: the command's own when it exits by itself; 1 not
elected (timeout or single attempt) or the election loop ended by itself; 3 leadership lost while
the command ran; 128 + N on signal N.

If the election loop ends on its own (the store refused the configuration, or the loop crashed),
the command is stopped and :meth:`ElectedCommand.run` raises :class:`ConfigurationError` or
returns 1.

Not here: argument parsing (``_cli``), the election itself (``_elector``), the supervisor's side
of the pipe (``_supervisor``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import FrameType

from ._decisions import safety_margin
from ._elector import ElectorCallbacks, LeaderElector, LeadershipTerm
from ._errors import ConfigurationError
from ._limits import printable
from ._process import preexec_dying_with_parent

log = logging.getLogger("mclease.elect")

EXIT_LEADERSHIP_LOST = 3
EXIT_ELECTOR_FAILED = 1
EXIT_NOT_ELECTED = 1
"""As ``consul lock`` and ``flock`` exit when they give up waiting."""
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
SUPERVISOR_MARGIN = 2.0
"""Seconds beyond the kill grace the supervisor gets to stop the command before it is killed."""


@dataclasses.dataclass(frozen=True)
class _Event:
    kind: str  # "started", "stopped", "signal", "ended" (the election loop returned)
    term: LeadershipTerm | None = None
    reason: str = ""
    signum: int = 0


class CommandNotRunnable(Exception):
    """The command cannot be started; ``exit_code`` is the shell's code for why (126, 127)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def check_runnable(program: str, environ: Mapping[str, str]) -> None:
    """Raise :class:`CommandNotRunnable` unless ``program`` can be executed by a process with
    ``environ``: found on its ``PATH`` (or at the path given) and executable."""
    search = os.pathsep.join(os.get_exec_path(dict(environ)))
    if shutil.which(program, path=search) is not None:
        return
    if os.sep in program:
        candidates = [program]
    else:
        candidates = [os.path.join(folder, program) for folder in search.split(os.pathsep)]
    present = next((path for path in candidates if os.path.exists(path)), None)
    if present is None:
        where = "no such file" if os.sep in program else "command not found on PATH"
        raise CommandNotRunnable(f"{printable(program)}: {where}", EXIT_NOT_FOUND)
    why = "is a directory" if os.path.isdir(present) else "permission denied"
    raise CommandNotRunnable(f"{printable(present)}: not executable ({why})", EXIT_NOT_EXECUTABLE)


class ElectedCommand:
    """Runs ``command`` while ``elector`` leads; :meth:`run` returns the exit code to use."""

    def __init__(
        self,
        elector: LeaderElector,
        command: Sequence[str],
        *,
        kill_grace: float,
        timeout: float | None = None,
        single_attempt: bool = False,
    ):
        timing = elector.timing
        margin = safety_margin(timing.lease_duration)
        if kill_grace < 0 or timing.renew_deadline + kill_grace + margin > timing.lease_duration:
            raise ValueError(
                f"kill grace {kill_grace:g}s is too long: renew_deadline "
                f"({timing.renew_deadline:g}s) + kill grace + a margin of {margin:g}s must not "
                f"exceed lease_duration ({timing.lease_duration:g}s), or the next leader could "
                "start while this command still runs"
            )
        self.elector = elector
        self.command = list(command)
        self.kill_grace = kill_grace
        self.timeout = timeout
        self.single_attempt = single_attempt
        self._elected = False
        self._events: queue.Queue[_Event] = queue.Queue()
        self._child: _Supervised | None = None
        self._child_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run_elector, name=f"mclease-elector-{elector.name}", daemon=True
        )
        elector.callbacks = ElectorCallbacks(
            on_started_leading=lambda term: self._events.put(_Event("started", term=term)),
            on_stopped_leading=self._on_stopped_leading,
            on_new_leader=self._on_new_leader,
        )

    def run(self) -> int:
        """Campaign, run the command while leading, and return the exit code: the command's own
        when it exits by itself, 3 when leadership was lost, 128 + N on signal N, 1 when the
        election loop ended by itself. Raises :class:`ConfigurationError` when the store refused
        the configuration (the CLI exits 2)."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            if self.single_attempt and not self._first_attempt_elected():
                return self._not_elected("at the first attempt")
            self._thread.start()
            return self._loop()
        finally:
            self._stop_child()
            timeout = self.elector.storage.capabilities.operation_timeout + 5
            self.elector.stop(timeout=timeout)
            if self._thread.is_alive():
                self._thread.join(timeout)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _first_attempt_elected(self) -> bool:
        """One attempt, in this thread; its started callback is queued for :meth:`_loop`. Raises
        :class:`ConfigurationError` when the store refused the configuration."""
        leading = self.elector.try_acquire_or_renew()
        error = self.elector.fatal_error
        if error is not None:
            raise ConfigurationError(" ".join(str(error).split())) from error
        return leading

    def _not_elected(self, when: str) -> int:
        record = self.elector.observed_record
        held = ""
        if record is not None and not record.data.is_released:
            cluster, identity = record.data.holder
            held = f" (held by {printable(f'{cluster}/{identity}' if cluster else identity)})"
        elif self.elector.last_error is not None:
            held = f" (the store: {self.elector.last_error})"
        log.error("lease %r: not elected %s%s; giving up", self.elector.name, when, held)
        return EXIT_NOT_ELECTED

    def _run_elector(self) -> None:
        try:
            self.elector.run()
        except BaseException:
            log.exception("lease %r: the election loop failed", self.elector.name)
        finally:
            self._events.put(_Event("ended"))

    def _loop(self) -> int:
        give_up_at = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            self._forward_deadline()
            try:
                event = self._events.get(timeout=0.05)
            except queue.Empty:
                code = self._child_exit_code()
                if code is not None:
                    return code
                if give_up_at is not None and not self._elected and time.monotonic() > give_up_at:
                    return self._not_elected(f"within {self.timeout:g}s")
                continue
            if event.kind == "started" and event.term is not None:
                self._elected = True
                self._start_child(event.term)
            elif event.kind == "stopped" and self._child is not None:
                if self._elector_ended():
                    return self._elector_failed()
                self._stop_child()
                if self._child is not None and self._child.status()[0] == "late":
                    self._child = None  # the term ended before the command started
                    continue
                log.error("leadership lost (%s); stopped the command", event.reason)
                return EXIT_LEADERSHIP_LOST
            elif event.kind == "ended" or (event.kind == "stopped" and self._elector_ended()):
                return self._elector_failed()
            elif event.kind == "signal":
                log.info("received signal %d; stopping", event.signum)
                return 128 + event.signum

    def _elector_ended(self) -> bool:
        """True once the election loop has ended by itself (we stop it only after _loop). Ask
        only after a term started: ``running()`` is False until the loop began."""
        return self.elector.fatal_error is not None or not self.elector.running()

    def _elector_failed(self) -> int:
        self._stop_child()
        error = self.elector.fatal_error
        if error is not None:
            raise ConfigurationError(" ".join(str(error).split())) from error
        log.error("lease %r: the election loop ended unexpectedly; stopped", self.elector.name)
        return EXIT_ELECTOR_FAILED

    def _start_child(self, term: LeadershipTerm) -> None:
        """Start the supervisor for ``term``, if it is still the current term."""
        if self._child is not None and self._child.process.poll() is None:
            return  # cannot happen: a term ends (and its supervisor with it) before the next
        current = self.elector.term
        deadline = self.elector.term_deadline()
        if current != term or deadline is None or self.elector.term != term:
            return  # the term already ended before we got here
        env = dict(
            child_environment(os.environ),
            MCLEASE_LEASE_NAME=term.lease_name,
            MCLEASE_IDENTITY=term.identity,
            MCLEASE_FENCING_TOKEN=str(term.fencing_token),
        )
        child = _Supervised.start(self.command, env, deadline, self.kill_grace)
        with self._child_lock:
            self._child = child
        log.info(
            "leading %r as %r (fencing token %d); started %s under supervisor pid %d",
            term.lease_name,
            term.identity,
            term.fencing_token,
            self.command[0],
            child.process.pid,
        )

    def _forward_deadline(self) -> None:
        with self._child_lock:
            child = self._child
        if child is not None and child.process.poll() is None:
            deadline = self.elector.term_deadline()
            if deadline is None:
                child.send_stop()
            else:
                child.send_deadline(deadline)

    def _on_stopped_leading(self, term: LeadershipTerm, reason: str) -> None:
        # Runs on the elector's watchdog thread: tell the supervisor at once, without waiting for
        # the main loop (the supervisor would stop the command at the deadline anyway).
        with self._child_lock:
            child = self._child
        if child is not None:
            child.send_stop()
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
        """The code to exit with once the supervisor has exited, else ``None``."""
        with self._child_lock:
            child = self._child
        if child is None or child.process.poll() is None:
            return None
        reason, code = child.status()
        if reason == "exited":
            log.info("command exited with code %d; releasing the lease", code)
            return code
        if reason == "late":
            with self._child_lock:
                self._child = None
            term = self.elector.term
            if term is not None:  # started too late for the deadline it was given: again
                self._events.put(_Event("started", term=term))
            return None
        if self._elector_ended():
            return self._elector_failed()
        if reason in ("deadline", "stop"):
            log.error("leadership lost (the term ended); stopped the command")
            return EXIT_LEADERSHIP_LOST
        log.error("the command's supervisor ended (%s); exiting with code %d", reason, code)
        return code

    def _stop_child(self) -> None:
        with self._child_lock:
            child = self._child
        if child is not None:
            child.stop(self.kill_grace)


def supervisor_command(
    command: Sequence[str], *, control_fd: int, status_fd: int, kill_grace: float
) -> list[str]:
    """The command line that runs ``command`` under ``python -m mclease_core._supervisor``, which
    reads the term's deadline from ``control_fd`` and reports on ``status_fd``."""
    return [
        sys.executable,
        "-P",  # not the working directory first on sys.path: it may shadow stdlib
        "-m",
        "mclease_core._supervisor",
        *("--control-fd", str(control_fd)),
        *("--status-fd", str(status_fd)),
        *("--kill-grace", repr(kill_grace)),
        "--",
        *command,
    ]


class _Supervised:
    """A command under ``python -m mclease_core._supervisor``, and the pipes to talk to it."""

    def __init__(self, process: subprocess.Popen[bytes], control: int, status: int):
        self.process = process
        self._control: int | None = control
        self._status: int | None = status
        self._status_text = b""
        self._outcome: tuple[str, int] | None = None
        self._sent: float | str | None = None
        self._lock = threading.Lock()

    @classmethod
    def start(
        cls, command: Sequence[str], env: dict[str, str], deadline: float, kill_grace: float
    ) -> _Supervised:
        control_read, control_write = os.pipe()
        status_read, status_write = os.pipe()
        try:
            os.set_blocking(control_write, False)  # never block on a paused supervisor
            os.set_blocking(status_read, False)
            os.write(control_write, f"deadline {deadline!r}\n".encode("ascii"))
            process = subprocess.Popen(
                supervisor_command(
                    command,
                    control_fd=control_read,
                    status_fd=status_write,
                    kill_grace=kill_grace,
                ),
                env=env,
                pass_fds=(control_read, status_write),
                preexec_fn=preexec_dying_with_parent(),
            )
        except BaseException:
            for fd in (control_write, status_read):
                os.close(fd)
            raise
        finally:
            os.close(control_read)
            os.close(status_write)
        child = cls(process, control_write, status_read)
        child._sent = deadline
        return child

    def send_deadline(self, deadline: float) -> None:
        self._send(deadline, f"deadline {deadline!r}\n")

    def send_stop(self) -> None:
        self._send("stop", "stop\n")

    def _send(self, message: float | str, line: str) -> None:
        """Write one line unless it was the last one written. A line that cannot be written
        (the supervisor exited, or is paused with a full pipe) is dropped: its deadline is then
        an earlier one, the safe side."""
        with self._lock:
            if self._control is None or self._sent == message or self._sent == "stop":
                return
            try:
                os.write(self._control, line.encode("ascii"))  # < PIPE_BUF: all or nothing
            except (BlockingIOError, BrokenPipeError):
                return
            self._sent = message

    def status(self) -> tuple[str, int]:
        """Why the supervisor exited, and the code to use: call once it has exited."""
        code = self.process.wait()
        with self._lock:
            if self._outcome is None:
                self._outcome = self._read_status(code)
            return self._outcome

    def _read_status(self, code: int) -> tuple[str, int]:
        if self._status is not None:
            try:
                while chunk := os.read(self._status, 4096):
                    self._status_text += chunk
            except OSError:  # BlockingIOError: nothing written
                pass
            os.close(self._status)
            self._status = None
        words = self._status_text.decode("ascii", "replace").split()
        if len(words) == 2 and words[1].isdigit():
            return words[0], int(words[1])
        return "killed", 128 - code if code < 0 else code

    def stop(self, kill_grace: float) -> None:
        """Have the supervisor stop the command and wait for it; kill it (and with it the
        command, by ``PR_SET_PDEATHSIG``) if it does not exit in time. Idempotent."""
        if self.process.poll() is None:
            self.send_stop()
            try:
                self.process.wait(kill_grace + SUPERVISOR_MARGIN)
            except subprocess.TimeoutExpired:
                log.warning(
                    "the supervisor did not stop the command within %.1fs; killing both",
                    kill_grace + SUPERVISOR_MARGIN,
                )
                self.process.kill()
                self.process.wait()
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._control is not None:
                os.close(self._control)
                self._control = None


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The command's environment: this one without the ``MCLEASE_*`` settings of ``elect``
    (the store's URL and password are not the command's business, and a nested ``elect`` must
    not inherit ``--try``, ``--timeout`` or the store)."""
    return {name: value for name, value in environ.items() if not name.startswith("MCLEASE_")}
