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
tests; they assert with plain ``assert`` and need no pytest. Each operation they time runs under
:func:`call_within`, so a backend without timeouts fails the check instead of hanging it.

A backend with a password takes it from the URL, ``password_file=`` or
``$MCLEASE_STORAGE_PASSWORD`` (the core's URL credentials). :func:`check_credentials` checks,
against a protected server, that the right password from each works and that a wrong one is a
one-line :class:`ConfigurationError` naming its source and never showing the password;
:func:`credentials_given` builds such a URL for a test of its own. It needs only the server's
URL without its password::

    @pytest.mark.parametrize("source", CREDENTIAL_SOURCES)
    def test_credentials(protected: ServerProcess, tmp_path: Path, source: str) -> None:
        url = f"my://{protected.address}/x"
        check_credentials(MyStorage.from_url, url, "right", "wrong", directory=tmp_path,
                          sources=[source])

:class:`FaultProxy` sits between a client and any TCP server (RESP, HTTP/1.1, gRPC over HTTP/2):
it passes bytes through, and on request loses the answer to the next request: the request
reaches the server, the server's answer is swallowed, then the connection is cut. That is the
lost-answer fault a write must survive as *outcome unknown*, never as a conflict. It works on
bytes, not on a protocol: the "request" is the first chunk a client sends after
:meth:`FaultProxy.lose_next_answer`, and the answer is over once the server has said something
and then been quiet for ``quiet`` seconds.

Not here: the storage conformance suite (:mod:`mclease_core.conformance`); the starters of this
repository's own test servers (``mclease_dev.servers``, in ``devtools/``, not shipped). Servers
bind to loopback only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Generic, TypeVar

from ._closing import Closing
from ._decisions import LeaseTiming
from ._elector import LeaderElector
from ._errors import (
    ConfigurationError,
    OutcomeUnknownError,
    StorageError,
    StorageUnavailableError,
)
from ._process import preexec_dying_with_parent
from ._storage import LeaseData, Storage
from ._urls import PASSWORD_ENV, USERNAME_ENV

__all__ = [
    "CREDENTIAL_SOURCES",
    "LOOPBACK",
    "FaultProxy",
    "MissingServerBinaryError",
    "ServerProcess",
    "ServerStartError",
    "TimedCall",
    "call_all_within",
    "call_within",
    "check_credentials",
    "check_elector_takeover",
    "check_frozen_server",
    "check_outage_and_recovery",
    "credentials_given",
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


@dataclasses.dataclass(frozen=True)
class TimedCall(Generic[_T]):
    """What one call did within its deadline: its value or its exception, and how long it took.
    ``finished`` is false when it was still running at the deadline (it runs on, abandoned)."""

    finished: bool
    seconds: float
    value: _T | None = None
    error: BaseException | None = None

    def describe(self) -> str:
        if not self.finished:
            return f"still running after {self.seconds:.1f}s"
        if self.error is not None:
            return f"{type(self.error).__name__} after {self.seconds:.2f}s: {self.error}"
        return f"success after {self.seconds:.2f}s: {self.value!r}"

    def assert_failed_with(
        self, name: str, *allowed: type[StorageError], hint: str = ""
    ) -> StorageError:
        """Assert that the call finished by raising one of ``allowed``, a retryable error, and
        return it; ``hint`` is added to the message of a call that did not finish."""
        expected = " or ".join(kind.__name__ for kind in allowed)
        unfinished = f"{name} did not finish ({self.describe()}, expected {expected}){hint}"
        assert self.finished, unfinished
        if not isinstance(self.error, allowed):
            raise AssertionError(f"{name}: expected {expected}, got {self.describe()}") from (
                self.error
            )
        assert self.error.retryable, f"{self.error!r} must be retryable"
        return self.error


def call_within(seconds: float, call: Callable[[], _T], *, name: str = "") -> TimedCall[_T]:
    """Run ``call`` in a daemon thread and wait at most ``seconds`` for it.

    The check's own deadline: a backend that never times out makes the caller fail (``finished``
    is false) instead of hanging it. A call still running is left behind in its daemon thread.
    """
    return call_all_within(seconds, {name or "call": call})[name or "call"]


def call_all_within(
    seconds: float, calls: Mapping[str, Callable[[], _T]]
) -> dict[str, TimedCall[_T]]:
    """:func:`call_within` for several calls at once, started together, one deadline for all."""
    results: dict[str, TimedCall[_T]] = {}
    lock = threading.Lock()
    started = time.monotonic()

    def run(name: str, call: Callable[[], _T]) -> None:
        try:
            value = call()
        except BaseException as exc:  # handed to the caller, which decides what is allowed
            outcome: TimedCall[_T] = TimedCall(True, time.monotonic() - started, error=exc)
        else:
            outcome = TimedCall(True, time.monotonic() - started, value=value)
        with lock:
            results[name] = outcome

    threads = [
        threading.Thread(target=run, args=(name, call), name=f"call-within-{name}", daemon=True)
        for name, call in calls.items()
    ]
    for thread in threads:
        thread.start()
    deadline = started + seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        return {
            name: results.get(name, TimedCall(False, time.monotonic() - started)) for name in calls
        }


class ServerProcess(Closing):
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

    def _on_enter(self) -> None:
        self.start()

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


# ----- a TCP proxy that loses answers ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Loss:
    """One armed :meth:`FaultProxy.lose_next_answer`: which request, and what to do then."""

    matching: Callable[[bytes], bool]
    then: Callable[[], object] | None


class _Link:
    """One proxied connection: the client's socket, the server's, and what each side still has
    to be sent. A *victim* link forwards the client's bytes but swallows the server's."""

    def __init__(self, client: socket.socket, server: socket.socket):
        self.client = client
        self.server = server
        self.to_client = bytearray()
        self.to_server = bytearray()
        self.victim = False
        self.victim_since = 0.0
        self.loss: _Loss | None = None
        self.last_answer: float | None = None

    def peer(self, sock: socket.socket) -> socket.socket:
        return self.server if sock is self.client else self.client

    def outbox(self, sock: socket.socket) -> bytearray:
        return self.to_client if sock is self.client else self.to_server


class FaultProxy(Closing):
    """A loopback TCP proxy in front of ``upstream_host:upstream_port`` that can lose answers.

    Clients connect to :attr:`host`:attr:`port` (or :attr:`address`). Bytes pass through both
    ways until :meth:`lose_next_answer`: the next chunk a client sends (that its ``matching``
    accepts) is forwarded, the server's answer on that connection is swallowed, and once the
    server has answered and then been quiet for ``quiet`` seconds (or ``give_up`` seconds
    passed without an answer) the connection is cut. The server did the work; the client never
    hears of it.
    :attr:`answers_lost` counts the connections cut so.

    One thread serves every connection with a selector; :meth:`close` (or leaving the ``with``
    block) stops it and closes every socket.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        host: str = LOOPBACK,
        quiet: float = 0.25,
        give_up: float = 10.0,
    ):
        self.upstream = (upstream_host, upstream_port)
        self.quiet = quiet
        self.give_up = give_up
        self.answers_lost = 0
        self.failures: list[Exception] = []
        """What the ``then`` callbacks of :meth:`lose_next_answer` raised."""
        self._armed: list[_Loss] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((host, 0))
        self._listener.setblocking(False)
        self.host: str = host
        self.port: int = self._listener.getsockname()[1]
        self._wake_read, self._wake_write = socket.socketpair()
        self._stopping = False
        self._links: dict[socket.socket, _Link] = {}
        self._selector = selectors.DefaultSelector()
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def lose_next_answer(
        self,
        matching: Callable[[bytes], bool] | None = None,
        *,
        then: Callable[[], object] | None = None,
    ) -> None:
        """Swallow the answer to the next request a client sends, then cut its connection.

        ``matching`` picks the request: the first chunk a client sends for which it is true
        (for HTTP, say, ``lambda chunk: not chunk.startswith(b"GET ")``); by default any chunk.
        ``then`` runs (on the proxy's thread) after the answer was swallowed and before the
        connection is cut: another client's write that lands before the client can retry.
        """
        with self._lock:
            self._armed.append(_Loss(matching or (lambda chunk: True), then))

    def close(self) -> None:
        """Stop the proxy's thread and close every socket (idempotent)."""
        if not self._stopping:
            self._stopping = True
            with contextlib.suppress(OSError):
                self._wake_write.send(b"x")
        self._thread.join(5)
        if self._thread.is_alive():
            raise RuntimeError("the fault proxy's thread did not stop within 5s")

    # ----- the loop, on the proxy's thread ---------------------------------------------------

    def _serve(self) -> None:
        selector = self._selector
        selector.register(self._listener, selectors.EVENT_READ)
        selector.register(self._wake_read, selectors.EVENT_READ)
        try:
            while not self._stopping:
                for event, mask in selector.select(timeout=0.05):
                    sock = event.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._listener:
                        self._accept()
                    elif sock is not self._wake_read and sock in self._links:
                        self._pump(sock, mask)
                self._cut_answered_victims()
        finally:
            for link in list(self._links.values()):
                self._drop(link)
            for sock in (self._listener, self._wake_read, self._wake_write):
                sock.close()
            selector.close()

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        try:
            server = socket.create_connection(self.upstream, timeout=2.0)
        except OSError:  # the server is down: the client sees its connection closed
            client.close()
            return
        link = _Link(client, server)
        for sock in (client, server):
            sock.setblocking(False)
            self._links[sock] = link
            self._selector.register(sock, selectors.EVENT_READ)

    def _pump(self, sock: socket.socket, mask: int) -> None:
        link = self._links[sock]
        if mask & selectors.EVENT_READ:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                self._drop(link)
                return
            if data:
                self._received(link, sock, data)
        if mask & selectors.EVENT_WRITE:
            outbox = link.outbox(sock)
            try:
                sent = sock.send(outbox)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._drop(link)
                return
            del outbox[:sent]
        self._watch(link)

    def _received(self, link: _Link, sock: socket.socket, data: bytes) -> None:
        if sock is link.client:
            if not link.victim:
                with self._lock:
                    if self._armed and self._armed[0].matching(bytes(data)):
                        link.loss = self._armed.pop(0)
                        link.victim, link.victim_since = True, time.monotonic()
            link.to_server += data
        elif link.victim:
            link.last_answer = time.monotonic()  # the server answered: swallow it
        else:
            link.to_client += data

    def _watch(self, link: _Link) -> None:
        for sock in (link.client, link.server):
            if sock in self._links:
                events = selectors.EVENT_READ
                if link.outbox(sock):
                    events |= selectors.EVENT_WRITE
                self._selector.modify(sock, events)

    def _cut_answered_victims(self) -> None:
        now = time.monotonic()
        victims = {link for link in self._links.values() if link.victim}
        for link in victims:
            answered = link.last_answer is not None and now - link.last_answer >= self.quiet
            if answered or now - link.victim_since >= self.give_up:
                if link.loss is not None and link.loss.then is not None:
                    try:
                        link.loss.then()
                    except Exception as exc:  # the proxy serves on; the test sees it in failures
                        self.failures.append(exc)
                self.answers_lost += 1
                self._drop(link)

    def _drop(self, link: _Link) -> None:
        for sock in (link.client, link.server):
            if self._links.pop(sock, None) is not None:
                self._selector.unregister(sock)
            sock.close()


# ----- credentials -------------------------------------------------------------------------------

CREDENTIAL_SOURCES = ("url", "file", "env")
"""The places a password (and a user name) can come from, as the core's URL credentials read
them: ``url`` the URL's user info, ``file`` the options ``password_file=``/``username_file=``,
``env`` ``$MCLEASE_STORAGE_PASSWORD``/``$MCLEASE_STORAGE_USERNAME``."""

_SOURCE_NAMES = {"url": "the URL's user info", "file": "password_file=", "env": f"${PASSWORD_ENV}"}


@contextlib.contextmanager
def credentials_given(
    url: str, password: str, source: str, *, directory: str | Path, username: str | None = None
) -> Iterator[str]:
    """``url`` with ``password`` (and ``username``, if given) from ``source``, one of
    :data:`CREDENTIAL_SOURCES`, for the ``with`` block.

    ``url``: percent-encoded into the user info (a user name already there is kept when
    ``username`` is None). ``file``: written with a trailing newline, as a mounted Secret often
    has it, into ``directory`` and named by ``password_file=``/``username_file=``. ``env``: the
    environment variables, set for the block. Either way both variables are unset for the block
    and restored after it, so that a value in the caller's environment is no second source.
    """
    saved = {name: os.environ.pop(name, None) for name in (PASSWORD_ENV, USERNAME_ENV)}
    try:
        if source == "url":
            yield _with_user_info(url, password, username)
        elif source == "file":
            options = {"password_file": _secret_file(Path(directory), "password", password)}
            if username is not None:
                options["username_file"] = _secret_file(Path(directory), "username", username)
            joined = "&".join(f"{option}={path}" for option, path in options.items())
            yield f"{url}{'&' if '?' in url else '?'}{joined}"
        elif source == "env":
            os.environ[PASSWORD_ENV] = password
            if username is not None:
                os.environ[USERNAME_ENV] = username
            yield url
        else:
            raise ValueError(f"unknown credential source {source!r}; one of {CREDENTIAL_SOURCES}")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _with_user_info(url: str, password: str, username: str | None) -> str:
    parts = urllib.parse.urlsplit(url)
    user_info, _, host = parts.netloc.rpartition("@")
    user = (
        user_info.partition(":")[0] if username is None else urllib.parse.quote(username, safe="")
    )
    netloc = f"{user}:{urllib.parse.quote(password, safe='')}@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _secret_file(directory: Path, name: str, content: str) -> Path:
    path = directory / f"mclease-{name}"
    path.write_text(content + "\n")
    return path


def check_credentials(
    open_url: Callable[[str], Storage],
    url: str,
    password: str,
    wrong_password: str,
    *,
    directory: str | Path,
    username: str | None = None,
    sources: Iterable[str] = CREDENTIAL_SOURCES,
    says: tuple[str, ...] = ("refused the credentials",),
    within: float = 30.0,
) -> None:
    """A protected server's credentials from each of ``sources``, as :func:`credentials_given`
    puts them into ``url`` (the store's URL without a password; with the user name in it, or
    ``username`` given, which then comes from the same source).

    The right ``password`` lets a store opened with ``open_url`` create, read and delete a
    lease. With ``wrong_password`` the first read raises :class:`ConfigurationError` (not a
    retryable storage error: retrying cannot help) within ``within`` seconds; its message
    contains each of ``says``, names where the password came from (the URL's user info,
    ``password_file=PATH``, ``$MCLEASE_STORAGE_PASSWORD``) and is one line; neither the error
    nor any exception in its chain (causes and contexts) shows the password, plain or
    percent-encoded, in ``str`` or ``repr``.
    """
    for source in sources:
        given = credentials_given(url, password, source, directory=directory, username=username)
        with given as source_url:
            _check_round_trip(open_url, source_url, source)
        given = credentials_given(
            url, wrong_password, source, directory=directory, username=username
        )
        with given as source_url:
            refused = call_within(within, functools.partial(_read_once, open_url, source_url))
        named = _SOURCE_NAMES[source]
        if source == "file":
            named += str(Path(directory) / "mclease-password")
        _check_refusal(refused, wrong_password, source, (*says, named))


def _check_round_trip(open_url: Callable[[str], Storage], url: str, source: str) -> None:
    key = f"credentials-from-{source}"
    try:
        with open_url(url) as store:
            created = store.create(key, _sample(key))
            assert store.read(key) == created, f"{source}: read back another lease"
            store.delete(key, version=created.version)
    except (StorageError, ConfigurationError) as exc:
        raise AssertionError(f"the right password from {source}: {exc!r}") from exc


def _check_refusal(
    result: TimedCall[object], password: str, source: str, says: tuple[str, ...]
) -> None:
    what = f"the wrong password from {source}"
    assert result.finished, f"{what}: the read did not finish within {result.seconds:.0f}s"
    error = result.error
    if not isinstance(error, ConfigurationError):
        raise AssertionError(
            f"{what}: expected ConfigurationError, got {result.describe()}"
        ) from error
    text = str(error)
    for expected in says:
        assert expected in text, f"{what}: {expected!r} not in {text!r}"
    assert "\n" not in text, f"{what}: the error is not one line: {text!r}"
    forms = {password, urllib.parse.quote(password, safe="")}
    for link in _exception_chain(error):
        for shown in (str(link), repr(link)):
            assert not [form for form in forms if form in shown], (
                f"{what}: a {type(link).__name__} in the error's chain shows the password"
            )


def _read_once(open_url: Callable[[str], Storage], url: str) -> object:
    with open_url(url) as store:
        return store.read("refused-credentials")


def _exception_chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        link = pending.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        pending.extend(e for e in (link.__cause__, link.__context__) if e is not None)


# ----- scenarios ---------------------------------------------------------------------------------


def _sample(holder: str) -> LeaseData:
    moment = dt.datetime.now(dt.UTC)
    return LeaseData(holder, 15.0, moment, moment, holder_cluster="test")


def _time_failure(
    name: str,
    attempt: Callable[[], object],
    allowed: tuple[type[StorageError], ...],
    *,
    within: float,
) -> float:
    """Run ``attempt`` under a deadline of ``within`` seconds; it must fail with one of
    ``allowed`` (retryable). Returns the seconds it took."""
    result = call_within(within, attempt, name=name)
    result.assert_failed_with(name, *allowed, hint=f": allowed {within:g}s")
    return result.seconds


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
        timings[name] = _time_failure(
            name, attempt, (StorageUnavailableError,), within=unavailable_within
        )
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
    within ``unavailable_within`` seconds (the check's own deadline: a backend without timeouts
    fails it rather than hanging it). The server is resumed afterwards, also on failure.

    The shipped conformance suite checks more strictly (a write sent on a live connection must be
    :class:`OutcomeUnknownError`); this check suits any client, also one that connects anew.
    """
    created = store.create(key, _sample("before-freeze"))
    timings: dict[str, float] = {}
    writes = (StorageUnavailableError, OutcomeUnknownError)
    server.pause()
    try:
        timings["read"] = _time_failure(
            "read", lambda: store.read(key), (StorageUnavailableError,), within=unavailable_within
        )
        timings["update"] = _time_failure(
            "update",
            lambda: store.update(key, _sample("frozen"), version=created.version),
            writes,
            within=unavailable_within,
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
