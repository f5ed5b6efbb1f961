"""Helpers for testing backends against real servers: ports, server processes, outage scenarios.

A backend author starts the store's server for the tests with these::

    from mclease_core.testing import ServerProcess, free_port, find_server_binary

    port = free_port()
    binary = find_server_binary("redis-server", hint="apt-get install redis-server")
    with ServerProcess([binary, "--port", str(port), "--bind", "127.0.0.1"], port=port) as server:
        ...  # server.stop() / server.start() / server.pause() to test outages

:class:`ServerProcess` starts a command, waits until its TCP port accepts connections, and on exit
terminates it (then kills it) and waits for it, so no server outlives the test run; servers stay
in the run's process group, so killing the group takes them along too. When start-up fails it
raises :class:`ServerStartError` with the tail of the server's log.

The scenario functions (:func:`check_outage_and_recovery`, :func:`check_frozen_server`,
:func:`check_elector_takeover`) are the backend-independent parts of the plugins' integration
tests; they assert with plain ``assert`` and need no pytest.

Not here: the storage conformance suite (:mod:`mclease_core.conformance`); the starters of this
repository's own test servers (``mclease_dev.servers``, in ``devtools/``, not shipped). Servers
bind to loopback only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar

from ._decisions import LeaseTiming
from ._elector import LeaderElector
from ._errors import OutcomeUnknownError, StorageError, StorageUnavailableError
from ._process import preexec_dying_with_parent
from ._storage import LeaseData, Storage

__all__ = [
    "LOOPBACK",
    "MissingServerBinaryError",
    "ServerProcess",
    "ServerStartError",
    "check_elector_takeover",
    "check_frozen_server",
    "check_outage_and_recovery",
    "find_server_binary",
    "free_port",
    "port_accepts",
    "preexec_dying_with_parent",
    "server_or_fail",
    "wait_until",
]

LOOPBACK = "127.0.0.1"
_T = TypeVar("_T")


class ServerStartError(RuntimeError):
    """A server process exited or did not accept connections in time; the message has its log."""


class MissingServerBinaryError(FileNotFoundError):
    """A server binary the tests need is not installed; the message says how to install it."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_server_binary(name: str, *, hint: str, candidates: Sequence[str | Path] = ()) -> str:
    """The path of executable ``name``: the first of ``candidates`` that exists, else ``PATH``.

    Raises :class:`MissingServerBinaryError` whose message names ``hint`` (how to install it).
    """
    for candidate in candidates:
        path = Path(candidate)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found is None:
        raise MissingServerBinaryError(f"{name} is not installed; {hint}")
    return found


def wait_until(
    predicate: Callable[[], _T], *, timeout: float, interval: float = 0.05, message: str = ""
) -> _T:
    """Poll ``predicate`` until it returns a true value and return that value.

    Raises :class:`AssertionError` naming ``message`` when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {message or predicate}")
        time.sleep(interval)


class ServerProcess:
    """A server command run for the duration of a ``with`` block (or between start and stop).

    ``port`` is the TCP port the server listens on (on ``host``); :meth:`start` returns once it
    accepts connections and ``ready`` (if given) returns true: a server may listen before it can
    serve (etcd elects itself leader first). Output goes to a log file (``log_path``, or a
    temporary file removed by :meth:`close`). :meth:`stop` and :meth:`start` can be called again
    to simulate an outage on the same port; :meth:`pause` and :meth:`resume` freeze the process
    (SIGSTOP/SIGCONT) to simulate a server that accepts connections but never answers.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        port: int,
        host: str = LOOPBACK,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        log_path: str | Path | None = None,
        ready: Callable[[], bool] | None = None,
    ):
        self.command = [str(part) for part in command]
        self.port = port
        self.host = host
        self.name = name or Path(self.command[0]).name
        self.env = None if env is None else {**os.environ, **env}
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._own_log = log_path is None
        self.log_path = (
            Path(log_path)
            if log_path
            else Path(tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log")[1])
        )
        self.ready = ready
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # ----- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> ServerProcess:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        """Start the command and wait until the port accepts; :class:`ServerStartError` if not."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            # Same process group as the test run: whatever kills the run's group (a CI timeout,
            # Ctrl-C) also ends its servers, even when no fixture gets to stop them.
        )
        try:
            self._wait_until_accepting()
        except BaseException:
            self.stop()
            raise

    def _wait_until_accepting(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while not (port_accepts(self.port, self.host) and (self.ready is None or self.ready())):
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                raise ServerStartError(self._failure(f"exited with code {code} during start-up"))
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    self._failure(
                        f"did not accept connections on {self.address} (or was not "
                        f"ready) within {self.startup_timeout:g}s"
                    )
                )
            time.sleep(0.05)

    def _failure(self, what: str) -> str:
        return (
            f"{self.name} {what}\ncommand: {' '.join(_shown_command(self.command))}\n"
            f"last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after ``stop_timeout``) and wait for it."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
                process.terminate()
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(self.stop_timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL the process (a crash, not a shutdown) and wait for it."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(self.stop_timeout)
        self.stop()

    def pause(self) -> None:
        """Freeze the process: connections are accepted by the kernel but never answered.

        Returns once every thread of the process is stopped: SIGSTOP is delivered
        asynchronously, and a request sent before the last thread stopped could still be served.
        """
        self._signal(signal.SIGSTOP)
        assert self._process is not None
        tasks = Path(f"/proc/{self._process.pid}/task")
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if all(_task_state(task) in ("T", "t", None) for task in tasks.iterdir()):
                return
            time.sleep(0.005)
        raise RuntimeError(f"{self.name} did not stop within 5s of SIGSTOP")

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        if not self.running:
            raise RuntimeError(f"{self.name} is not running")
        assert self._process is not None
        self._process.send_signal(signum)

    def close(self) -> None:
        """Stop the process and remove the log file if it is a temporary one."""
        self.stop()
        if self._own_log:
            with contextlib.suppress(FileNotFoundError):
                self.log_path.unlink()

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


# ----- the project's test servers ----------------------------------------------------------------


@contextlib.contextmanager
def server_or_fail(
    manager: contextlib.AbstractContextManager[ServerProcess],
) -> Iterator[ServerProcess]:
    """Enter ``manager`` (a starter of a :class:`ServerProcess`) in a pytest fixture: a missing
    server binary fails the test with the install hint instead of erroring or skipping."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(manager)
        except MissingServerBinaryError as exc:
            import pytest  # only pytest fixtures call this; the module itself needs no pytest

            pytest.fail(str(exc), pytrace=False)
        yield server


_SECRET_FLAGS = frozenset({"--requirepass", "--masterauth", "--password", "--root-password"})


def _shown_command(command: Sequence[str]) -> list[str]:
    """``command`` for an error message: the value after a password flag is ``***``."""
    return [
        "***" if index and command[index - 1] in _SECRET_FLAGS else part
        for index, part in enumerate(command)
    ]


# ----- scenarios ---------------------------------------------------------------------------------


def _sample(holder: str) -> LeaseData:
    moment = dt.datetime.now(dt.UTC)
    return LeaseData(holder, 15.0, moment, moment, holder_cluster="test")


def _time_failure(attempt: Callable[[], object], allowed: tuple[type[StorageError], ...]) -> float:
    started = time.monotonic()
    try:
        attempt()
    except allowed as exc:
        error, elapsed = exc, time.monotonic() - started
    else:
        raise AssertionError(f"expected one of {[k.__name__ for k in allowed]}, got success")
    assert error.retryable, f"{error!r} must be retryable"
    return elapsed


def check_outage_and_recovery(
    store: Storage,
    server: ServerProcess,
    *,
    unavailable_within: float,
    recover_within: float = 30.0,
    key: str = "outage",
) -> dict[str, float]:
    """Stop ``server`` under a working ``store``; every operation must fail as unavailable within
    ``unavailable_within`` seconds. Then start it again: the same ``store`` object must work
    again within ``recover_within`` seconds. Returns the measured seconds per operation.

    A stopped server refuses connections, so nothing can have been sent and every operation,
    writes included, must raise :class:`StorageUnavailableError` (not
    :class:`OutcomeUnknownError`). The server may lose its data with the restart: the check only
    needs the store to answer again.
    """
    created = store.create(key, _sample("before-outage"))
    server.stop()
    timings: dict[str, float] = {}
    attempts: dict[str, Callable[[], object]] = {
        "read": lambda: store.read(key),
        "create": lambda: store.create(key + "-new", _sample("during")),
        "update": lambda: store.update(key, _sample("during"), version=created.version),
        "delete": lambda: store.delete(key, version=created.version),
    }
    for name, attempt in attempts.items():
        timings[name] = _time_failure(attempt, (StorageUnavailableError,))
        assert timings[name] < unavailable_within, (
            f"{name} took {timings[name]:.2f}s to report the stopped server "
            f"(allowed {unavailable_within:g}s)"
        )
    server.start()
    wait_until(
        lambda: _answers(store, key),
        timeout=recover_within,
        message=f"the store to answer again after {server.name} restarted",
    )
    return timings


def _task_state(task: Path) -> str | None:
    """The state letter of one thread (``T`` when stopped), or None if it is gone."""
    try:
        return (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def check_frozen_server(
    store: Storage, server: ServerProcess, *, unavailable_within: float, key: str = "frozen"
) -> dict[str, float]:
    """Freeze ``server`` (it accepts connections but never answers): reads must raise
    :class:`StorageUnavailableError` and writes that error or :class:`OutcomeUnknownError`, each
    within ``unavailable_within`` seconds. The server is resumed afterwards, also on failure."""
    created = store.create(key, _sample("before-freeze"))
    timings: dict[str, float] = {}
    writes = (StorageUnavailableError, OutcomeUnknownError)
    server.pause()
    try:
        timings["read"] = _time_failure(lambda: store.read(key), (StorageUnavailableError,))
        timings["update"] = _time_failure(
            lambda: store.update(key, _sample("frozen"), version=created.version), writes
        )
    finally:
        server.resume()
    for name, seconds in timings.items():
        assert seconds < unavailable_within, (
            f"{name} took {seconds:.2f}s against a frozen server (allowed {unavailable_within:g}s)"
        )
    return timings


def _answers(store: Storage, key: str) -> bool:
    try:
        store.read(key)
    except StorageUnavailableError:
        return False
    except StorageError:
        return True  # not found (data lost with the restart) is an answer too
    return True


def check_elector_takeover(
    open_store: Callable[[], Storage],
    *,
    timing: LeaseTiming,
    name: str = "e2e-lease",
    elect_within: float | None = None,
) -> None:
    """Two :class:`LeaderElector` s on two clients of one store: one leads, never both (checked
    every 20 ms for two retry periods); when the leader stops (without releasing, as a crash
    would), the other takes over within the bound the timing gives (lease duration plus two
    retry periods, plus slack for a loaded machine).
    """
    bound = elect_within or timing.lease_duration + 2 * timing.retry_period + 3.0
    stores = [open_store(), open_store()]
    electors = [
        LeaderElector(
            store,
            name,
            f"candidate-{index}",
            cluster=f"cluster-{index}",
            timing=timing,
            release_on_stop=False,
        )
        for index, store in enumerate(stores)
    ]
    try:
        for elector in electors:
            elector.start()
        wait_until(lambda: _single_leader(electors), timeout=bound, message="exactly one leader")
        _assert_never_two_leaders(electors, seconds=2 * timing.retry_period)
        leader = wait_until(
            lambda: _single_leader(electors), timeout=bound, message="exactly one leader"
        )
        assert leader is not None
        follower = electors[1 - electors.index(leader)]
        leader.stop(timeout=bound)
        wait_until(follower.is_leader, timeout=bound, message="the follower to take over")
        assert not leader.is_leader()
        term = follower.term
        assert term is not None
        assert term.identity == follower.identity
    finally:
        for elector in electors:
            elector.stop(timeout=bound)
        for store in stores:
            store.close()


def _single_leader(electors: list[LeaderElector]) -> LeaderElector | None:
    leaders = [elector for elector in electors if elector.is_leader()]
    assert len(leaders) <= 1, "two electors lead at once"
    return leaders[0] if leaders else None


def _assert_never_two_leaders(electors: list[LeaderElector], *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _single_leader(electors)  # asserts that at most one leads
        time.sleep(0.02)
