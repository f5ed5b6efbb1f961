"""Child processes of a test, a demo or a benchmark: started, watched, and always stopped.

For: everything this repository runs as a separate program while it watches it (control-plane
binaries, ``mclease controller``, ``mclease elect``, recording candidates). One class,
:class:`ManagedProcess`, so that each of them is started and stopped the same way:

- in its own session (process group) with ``PR_SET_PDEATHSIG``, so it dies with the process
  that started it, and so that a signal reaches everything it started in turn;
- its output (stdout and stderr) appended to a log file, whose tail failure messages quote;
- stopped with SIGTERM, then SIGKILL after a grace period, and reaped; what is left in its
  session is killed too. :attr:`ManagedProcess.started` lists every process this interpreter
  started, for a last check that none outlives the run.

Waiting for a child to become ready is :func:`mclease_core.testing.wait_until` (the one poll
loop) through :meth:`ManagedProcess.wait_until`, which fails at once with the log's tail when the
child exits while being waited for.

Not for: the test servers (``redis-server`` and co., :mod:`mclease_dev.servers`, run by
:class:`mclease_core.testing.ServerProcess`, which also pauses and restarts them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar, TypeVar

from mclease_core.testing import preexec_dying_with_parent, wait_until

from . import REPO_ROOT

__all__ = [
    "ElectProcess",
    "ManagedProcess",
    "ProcessExitedError",
    "http_get",
    "mclease_command",
    "pid_exists",
    "probe",
]

_T = TypeVar("_T")


class ProcessExitedError(RuntimeError):
    """A child exited while it was waited for; the message has the tail of its log."""


def mclease_command(*args: str) -> list[str]:
    """The ``mclease`` command line of this interpreter (``python -m mclease_core._cli ...``)."""
    return [sys.executable, "-m", "mclease_core._cli", *args]


class ManagedProcess:
    """A child process with its own session and log file (see the module notes).

    ``env`` is the whole environment to run with (default: this process's, without
    ``KUBECONFIG``, so that no child talks to a cluster it was not pointed at). ``on_line``, if
    given, is called with each line of output (from a reader thread) as well as logging it.
    ``pass_fds`` are file descriptors the child inherits (pipes to talk to it).
    """

    STOP_TIMEOUT = 10.0
    started: ClassVar[list[ManagedProcess]] = []
    """Every process any :class:`ManagedProcess` of this interpreter started."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path = REPO_ROOT,
        on_line: Callable[[str], None] | None = None,
        pass_fds: Sequence[int] = (),
    ):
        self.name = name
        self.argv = [os.fspath(part) for part in argv]
        self.log_path = log_path
        self.env: dict[str, str] | None = None if env is None else dict(env)
        self.cwd = cwd
        self.on_line = on_line
        self.pass_fds = tuple(pass_fds)
        self.popen: subprocess.Popen[bytes] | None = None
        self.killed_at: float | None = None
        """Monotonic time of the SIGKILL sent by :meth:`kill`."""
        self._reader: threading.Thread | None = None

    # ----- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        env = self.env
        if env is None:
            env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.on_line else log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=env,
                pass_fds=self.pass_fds,
                preexec_fn=preexec_dying_with_parent(own_session=True),
            )
        ManagedProcess.started.append(self)
        if self.on_line is not None:
            self._reader = threading.Thread(
                target=self._follow, name=f"output-{self.name}", daemon=True
            )
            self._reader.start()

    def _follow(self) -> None:
        assert self.popen is not None
        assert self.popen.stdout is not None
        assert self.on_line is not None
        with self.popen.stdout, self.log_path.open("ab", buffering=0) as log:
            for raw in self.popen.stdout:
                log.write(raw)
                self.on_line(raw.decode(errors="replace").rstrip("\n"))

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was not started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code once it exited; ``None`` while it runs or before it started."""
        return None if self.popen is None else self.popen.poll()

    def signal(self, signum: int) -> float:
        """Send ``signum`` to the child's session; return the monotonic time it was sent."""
        sent = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)
        return sent

    def kill(self) -> float:
        """SIGKILL (a crash: no handler runs), reaped; returns the monotonic time it was sent."""
        self.killed_at = self.signal(signal.SIGKILL)
        assert self.popen is not None
        self.popen.wait(self.STOP_TIMEOUT)
        return self.killed_at

    def terminate(self, timeout: float | None = None) -> int | None:
        """SIGTERM, wait up to ``timeout`` (default :attr:`STOP_TIMEOUT`), then SIGKILL; reap
        and kill what is left of its session. Returns the exit code (``None``: never started).
        """
        popen = self.popen
        if popen is None:
            return None
        if popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                popen.wait(self.STOP_TIMEOUT if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                popen.wait(self.STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):  # anything left in its session
            os.killpg(popen.pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(self.STOP_TIMEOUT)
        return popen.returncode

    # ----- watching ------------------------------------------------------------------------

    def wait_until(
        self, check: Callable[[], _T], *, timeout: float, message: str, interval: float = 0.05
    ) -> _T:
        """:func:`~mclease_core.testing.wait_until` ``check``; :class:`ProcessExitedError` (with
        the log's tail) as soon as the process is found exited."""

        def ready() -> _T:
            if not self.alive():
                raise self.exited_error(f"exited while waiting for {message}")
            return check()

        return wait_until(ready, timeout=timeout, interval=interval, message=message)

    def exited_error(self, what: str) -> ProcessExitedError:
        return ProcessExitedError(
            f"{self.name} {what} (exit code {self.returncode}); log {self.log_path}, "
            f"last lines:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def __repr__(self) -> str:
        pid = self.popen.pid if self.popen else None
        return f"<{type(self).__name__} {self.name} pid={pid}>"


class ElectProcess(ManagedProcess):
    """``mclease elect``: campaigns for ``lease`` on ``storage_url`` as ``identity`` and runs
    ``command`` while it leads. ``timing`` is (lease duration, renew deadline, retry period)."""

    def __init__(
        self,
        identity: str,
        storage_url: str,
        lease: str,
        command: Sequence[str],
        log_path: Path,
        *,
        timing: tuple[float, float, float],
        on_line: Callable[[str], None] | None = None,
    ):
        duration, renew_deadline, retry_period = timing
        argv = mclease_command(
            "elect",
            *("--storage", storage_url),
            *("--name", lease),
            *("--identity", identity),
            *("--lease-duration", str(duration)),
            *("--renew-deadline", str(renew_deadline)),
            *("--retry-period", str(retry_period)),
            "--",
            *command,
        )
        super().__init__(identity, argv, log_path, on_line=on_line)


def http_get(
    port: int, path: str, *, host: str = "127.0.0.1", timeout: float = 2.0
) -> tuple[int, str]:
    """``GET http://host:port/path``: ``(status, body)``; ``(0, "")`` when nothing answers."""
    shown = f"[{host}]" if ":" in host else host
    try:
        with urllib.request.urlopen(f"http://{shown}:{port}{path}", timeout=timeout) as answer:
            return int(answer.status), answer.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def probe(port: int, path: str) -> bool:
    """A kubelet-style HTTP probe of ``127.0.0.1:port``: true on 200, false otherwise."""
    return http_get(port, path, timeout=1.0)[0] == 200


def pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (signal 0); an exited child not yet reaped still does.

    For checking by pid, never by name, that a run left nothing behind.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
