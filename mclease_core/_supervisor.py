"""The supervisor of ``mclease elect``: runs the command, and stops it at the term's deadline.

Design note
===========

Why: the elector stops its command from a watchdog thread when the term ends. A paused elector
(SIGSTOP, a VM or GC pause) runs no thread at all, so nothing stops the command, while another
elector takes the lease over ``lease_duration`` after the last renewal: the overlap is the pause
minus the lease duration, unbounded. ``PR_SET_PDEATHSIG`` covers the elector's death, not a stop.

What: a small process between the elector and the command (``python -m mclease_core._supervisor``,
stdlib only besides ``_process``). The elector starts it when a term starts, and writes lines to
its control pipe:

* ``deadline T``: the term ends at ``T`` on CLOCK_MONOTONIC (one clock for all the processes of a
  Linux machine) unless renewed; sent whenever the elector's ``term_deadline()`` changes.
* ``stop``: end the command now (the term ended, or the elector is exiting).

The supervisor starts the command only if the latest deadline received is still in the future,
and stops it (SIGTERM, SIGKILL ``kill_grace`` later) as soon as the first of these happens:
``time.monotonic()`` reaches the latest deadline received; ``stop``; the pipe's end of file (the
elector died); an unreadable line; SIGTERM or SIGINT. It never extends a deadline itself: without
a new line the command is stopped at the old one. It exits with the command's code (128 + N on
signal N) and first writes why to its status pipe: ``exited CODE`` (the command exited by itself),
``deadline|stop|eof|signal CODE`` (it was stopped), or ``late CODE`` (it was never started).

Bound: the elector's deadline is ``send + renew_deadline`` of its last successful renewal, and the
deadline the supervisor holds is that one or an earlier one (a line sent late or lost only makes
it earlier). No other elector can take the lease over before ``send + lease_duration`` (it
measures expiry from when it first *saw* the write, which is later). The command has been sent
SIGTERM by ``send + renew_deadline`` and SIGKILL by ``send + renew_deadline + kill_grace``, which
the elector validated to be below ``send + lease_duration``; this holds whether the elector is
running, paused, or dead. Tested by ``test_sigstop_of_the_leader_stops_its_command_before_the_
takeover`` in ``tests/cli/test_elect_processes.py`` (real processes, SIGSTOP of the elector only).

Not covered: a pause of the supervisor too (say the whole process group, or the machine): the
command is paused with it, and on resume the supervisor stops it at once, but the command may be
scheduled first; fencing tokens are the defence there. Grandchildren of the command are not
stopped by ``PR_SET_PDEATHSIG``: ``exec`` the real program in shell commands.

Death: the supervisor is started with ``PR_SET_PDEATHSIG`` (so ``kill -9`` of the elector kills
it) and starts the command the same way (so the command dies with the supervisor).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from ._process import preexec_dying_with_parent

USAGE = (
    "usage: python -m mclease_core._supervisor --control-fd N --status-fd N --kill-grace SECONDS "
    "-- COMMAND [ARGS...]"
)
EXIT_USAGE = 2
EXIT_LATE = 3
"""The supervisor's exit code when it never started the command (``late`` on the status pipe)."""
POLL = 0.05
"""How often the command's exit is checked where ``os.pidfd_open`` is missing."""


class _Control:
    """The elector's side of the conversation: complete lines from the control pipe."""

    def __init__(self, fd: int):
        self.fd = fd
        self.deadline: float | None = None
        self.end: str | None = None  # "stop" or "eof"
        self._buffer = b""

    def read(self) -> None:
        """Read what is available (call only when ``fd`` is readable) and apply its lines."""
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.end = self.end or "eof"
            return
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._apply(line.decode("ascii", "replace").split())

    def read_available(self) -> None:
        """Apply every line already in the pipe, without waiting."""
        while self.end is None and select.select([self.fd], [], [], 0)[0]:
            self.read()

    def _apply(self, words: list[str]) -> None:
        if self.end is not None:
            return
        if len(words) == 2 and words[0] == "deadline":
            try:
                self.deadline = float(words[1])
                return
            except ValueError:
                pass
        self.end = "stop"  # "stop", or a line we cannot read: stopping is the safe side

    def expired(self) -> bool:
        return self.deadline is None or time.monotonic() >= self.deadline


def supervise(command: Sequence[str], control_fd: int, status_fd: int, kill_grace: float) -> int:
    """Run ``command`` under the control of ``control_fd``; return its exit code."""
    wakeup_read, wakeup_write = os.pipe()
    os.set_blocking(wakeup_write, False)
    os.set_blocking(wakeup_read, False)
    signal.set_wakeup_fd(wakeup_write)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _ignore)  # a handler, not SIG_IGN: exec gives the command defaults
    control = _Control(control_fd)
    control.read_available()
    if control.end is not None or control.expired():
        return _report(status_fd, "late", EXIT_LATE)
    child = subprocess.Popen(list(command), preexec_fn=preexec_dying_with_parent())
    reason = _watch(child, control, wakeup_read)
    if reason == "exited":
        return _report(status_fd, reason, _exit_code(child))
    _stop(child, kill_grace)
    return _report(status_fd, reason, _exit_code(child))


def _watch(child: subprocess.Popen[bytes], control: _Control, wakeup_fd: int) -> str:
    """Wait until the command exits ("exited") or must be stopped (the reason)."""
    pidfd = _pidfd(child.pid)
    try:
        while True:
            if child.poll() is not None:
                return "exited"
            if control.end is not None:
                return control.end
            if control.expired():
                return "deadline"
            assert control.deadline is not None
            timeout = control.deadline - time.monotonic()
            waiting = [control.fd, wakeup_fd]
            if pidfd is None:
                timeout = min(timeout, POLL)
            else:
                waiting.append(pidfd)
            readable = select.select(waiting, [], [], max(0.0, timeout))[0]
            if wakeup_fd in readable and _drain(wakeup_fd):
                if child.poll() is not None:
                    return "exited"
                return "signal"
            if control.fd in readable:
                control.read()
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _stop(child: subprocess.Popen[bytes], kill_grace: float) -> None:
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(kill_grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux 5.3+), else ``None``."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _drain(fd: int) -> bool:
    """Empty the signal wake-up pipe; True if a signal arrived."""
    got = False
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 512):
            got = True
    return got


def _exit_code(child: subprocess.Popen[bytes]) -> int:
    code = child.wait()
    return 128 - code if code < 0 else code


def _report(status_fd: int, reason: str, code: int) -> int:
    with contextlib.suppress(OSError):  # the elector may be gone; the exit code still tells
        os.write(status_fd, f"{reason} {code}\n".encode("ascii"))
    return code


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Signals only wake the loop up, through the wake-up pipe."""


def _parse(argv: Sequence[str]) -> tuple[int, int, float, list[str]]:
    args = list(argv)
    if "--" not in args:
        raise ValueError("missing -- before the command")
    split = args.index("--")
    options, command = args[:split], args[split + 1 :]
    if len(options) % 2 or not command:
        raise ValueError("expected --control-fd N --status-fd N --kill-grace SECONDS -- COMMAND")
    values = dict(zip(options[::2], options[1::2], strict=True))
    if sorted(values) != ["--control-fd", "--kill-grace", "--status-fd"]:
        raise ValueError(f"unexpected options {sorted(values)}")
    grace = float(values["--kill-grace"])
    if not grace >= 0:
        raise ValueError(f"kill grace must be >= 0, got {grace}")
    return int(values["--control-fd"]), int(values["--status-fd"]), grace, command


def main(argv: Sequence[str] | None = None) -> int:
    try:
        control_fd, status_fd, kill_grace, command = _parse(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        print(f"mclease supervisor: {exc}\n{USAGE}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return supervise(command, control_fd, status_fd, kill_grace)
    except OSError as exc:  # the command could not be started, say
        print(f"mclease supervisor: cannot run {command[0]!r}: {exc}", file=sys.stderr)
        return _report(status_fd, "exited", 127 if isinstance(exc, FileNotFoundError) else 126)


if __name__ == "__main__":
    sys.exit(main())
