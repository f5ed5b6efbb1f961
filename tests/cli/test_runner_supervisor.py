"""The supervisor of ``mclease elect`` as a real process, and ``ElectedCommand`` when its election
loop ends by itself (issue 8, items 2 and 13).

The supervisor tests drive ``python -m mclease_core._supervisor`` through its control pipe, the
way ``ElectedCommand`` does; the commands write their pid to a file and then sleep, so a test can
tell whether a command started and whether it still runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mclease_core import ConfigurationError, LeaderElector, LeaseData, LeaseObject, LeaseTiming
from mclease_core._runner import ElectedCommand, supervisor_command
from mclease_core.backends.memory import MemoryStorage
from mclease_core.testing import wait_until
from mclease_dev.processes import ManagedProcess

pytestmark = pytest.mark.slow

SLACK = 0.3  # process start-up and scheduling on a loaded 2-core machine
SLEEPER = """
import os, signal, sys, time
if sys.argv[2] == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[1], "w") as out:
    out.write(str(os.getpid()))
time.sleep(60)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    return wait_until(condition, timeout=timeout, interval=0.01, message=what)


class Supervisor(ManagedProcess):
    """``python -m mclease_core._supervisor`` over a sleeping command, and its two pipes."""

    def __init__(
        self, tmp_path: Path, deadline: float | None, *, mode: str = "", grace: float = 0.5
    ):
        self.pidfile = tmp_path / f"pid-{uuid.uuid4().hex}"
        control_read, self.control = os.pipe()
        self.status_read, status_write = os.pipe()
        if deadline is not None:
            self.send(f"deadline {deadline!r}")
        argv = supervisor_command(
            [sys.executable, "-c", SLEEPER, str(self.pidfile), mode or "-"],
            control_fd=control_read,
            status_fd=status_write,
            kill_grace=grace,
        )
        log = tmp_path / f"{self.pidfile.name}.log"
        super().__init__("supervisor", argv, log, pass_fds=(control_read, status_write))
        self.start()
        os.close(control_read)
        os.close(status_write)

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self.popen is not None
        return self.popen

    def send(self, line: str) -> None:
        os.write(self.control, (line + "\n").encode())

    def command_pid(self) -> int:
        return int(wait_for(lambda: self.pidfile.exists() and self.pidfile.read_text(), 10, "pid"))

    def finish(self, timeout: float = 10) -> tuple[int, str, float]:
        """Wait for the supervisor; return its exit code, its status line, and when it exited."""
        code = self.process.wait(timeout)
        ended = time.monotonic()
        with os.fdopen(self.status_read, "rb") as status:
            return code, status.read().decode().strip(), ended

    def close(self) -> None:
        if self.alive():
            self.kill()
        self.terminate()  # reaps; kills what is left of its session
        if self.control >= 0:
            os.close(self.control)
            self.control = -1


@pytest.fixture
def supervisors(tmp_path: Path) -> Iterator[list[Supervisor]]:
    started: list[Supervisor] = []
    yield started
    for supervisor in started:
        supervisor.close()


def start(
    supervisors: list[Supervisor],
    tmp_path: Path,
    deadline: float | None,
    *,
    mode: str = "",
    grace: float = 0.5,
) -> Supervisor:
    supervisor = Supervisor(tmp_path, deadline, mode=mode, grace=grace)
    supervisors.append(supervisor)
    return supervisor


def test_the_command_is_stopped_at_the_deadline_it_was_sent(
    supervisors: list[Supervisor], tmp_path: Path
) -> None:
    deadline = time.monotonic() + 1.0
    supervisor = start(supervisors, tmp_path, deadline)
    pid = supervisor.command_pid()
    code, status, ended = supervisor.finish()
    assert (code, status) == (128 + signal.SIGTERM, f"deadline {128 + signal.SIGTERM}")
    assert deadline <= ended <= deadline + SLACK, f"stopped {ended - deadline:+.3f}s off"
    assert not alive(pid)


def test_new_deadlines_extend_the_run_and_none_is_made_up(
    supervisors: list[Supervisor], tmp_path: Path
) -> None:
    supervisor = start(supervisors, tmp_path, time.monotonic() + 0.8)
    supervisor.command_pid()
    last = 0.0
    for _ in range(6):  # renewals every 0.2 s, for longer than the first deadline
        time.sleep(0.2)
        last = time.monotonic() + 0.8
        supervisor.send(f"deadline {last!r}")
        assert supervisor.process.poll() is None
    code, status, ended = supervisor.finish()  # no more renewals: it stops at the last one
    assert status == f"deadline {code}"
    assert last <= ended <= last + SLACK, f"stopped {ended - last:+.3f}s off the last deadline"


def test_stop_sends_sigterm_then_sigkill_after_the_grace(
    supervisors: list[Supervisor], tmp_path: Path
) -> None:
    supervisor = start(supervisors, tmp_path, time.monotonic() + 30, mode="ignore-term", grace=0.5)
    pid = supervisor.command_pid()
    asked = time.monotonic()
    supervisor.send("stop")
    code, status, ended = supervisor.finish()
    assert (code, status) == (128 + signal.SIGKILL, f"stop {128 + signal.SIGKILL}")
    assert 0.5 <= ended - asked <= 0.5 + SLACK
    assert not alive(pid)


@pytest.mark.parametrize(("how", "reason"), [("eof", "eof"), ("garbage", "stop")])
def test_a_dead_elector_or_an_unreadable_line_stops_the_command(
    supervisors: list[Supervisor], tmp_path: Path, how: str, reason: str
) -> None:
    supervisor = start(supervisors, tmp_path, time.monotonic() + 30)
    pid = supervisor.command_pid()
    asked = time.monotonic()
    if how == "eof":
        os.close(supervisor.control)
        supervisor.control = -1
    else:
        supervisor.send("deadline soon")
    code, status, ended = supervisor.finish()
    assert (code, status) == (128 + signal.SIGTERM, f"{reason} {128 + signal.SIGTERM}")
    assert ended - asked <= SLACK
    assert not alive(pid)


def test_a_deadline_already_past_never_starts_the_command(
    supervisors: list[Supervisor], tmp_path: Path
) -> None:
    supervisor = start(supervisors, tmp_path, time.monotonic() - 0.001)
    code, status, _ = supervisor.finish()
    assert (code, status) == (3, "late 3")
    assert not supervisor.pidfile.exists()


def test_the_commands_exit_code_passes_through(tmp_path: Path) -> None:
    control_read, control = os.pipe()
    status_read, status_write = os.pipe()
    os.write(control, f"deadline {time.monotonic() + 30!r}\n".encode())
    code = subprocess.call(
        supervisor_command(
            ["sh", "-c", "exit 7"], control_fd=control_read, status_fd=status_write, kill_grace=1
        ),
        pass_fds=(control_read, status_write),
    )
    os.close(status_write)
    with os.fdopen(status_read, "rb") as status:
        assert (code, status.read()) == (7, b"exited 7\n")
    for fd in (control_read, control):
        os.close(fd)


def test_kill_9_of_the_supervisor_kills_the_command(
    supervisors: list[Supervisor], tmp_path: Path
) -> None:
    supervisor = start(supervisors, tmp_path, time.monotonic() + 30)
    pid = supervisor.command_pid()
    supervisor.process.kill()
    supervisor.process.wait()
    wait_for(lambda: not alive(pid), 2, "the command to die with its supervisor")


# ----- ElectedCommand when its election loop ends by itself (issue 8, item 13) -----------------


class Boom(BaseException):
    """Not an Exception: escapes the elector's containment, so its loop thread dies."""


class FailingStorage(MemoryStorage):
    """A memory store whose operations raise ``fail`` once it is set."""

    fail: BaseException | None = None

    def read(self, key: str) -> LeaseObject:
        self._maybe_fail()
        return super().read(key)

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        self._maybe_fail()
        return super().create(key, data)

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        self._maybe_fail()
        return super().update(key, data, version=version)

    def _maybe_fail(self) -> None:
        if self.fail is not None:
            raise self.fail


TIMING = LeaseTiming(lease_duration=2.0, renew_deadline=1.0, retry_period=0.2)


def elected(storage: FailingStorage, tmp_path: Path) -> tuple[ElectedCommand, Path]:
    elector = LeaderElector(storage, "job", "me", timing=TIMING)
    pidfile = tmp_path / "command.pid"
    command = [sys.executable, "-c", SLEEPER, str(pidfile), "-"]
    return ElectedCommand(elector, command, kill_grace=0.5), pidfile


def run_bounded(runner: ElectedCommand, seconds: float = 20) -> int:
    """``runner.run()``, but a hang turns into SIGTERM (exit 143) instead of a stuck test."""
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        return runner.run()
    finally:
        timer.cancel()


def fail_once_leading(storage: FailingStorage, pidfile: Path, error: BaseException) -> None:
    def flip() -> None:
        deadline = time.monotonic() + 10
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # a few renewals
        storage.fail = error

    threading.Thread(target=flip, daemon=True).start()


def test_a_configuration_error_before_leading_ends_run_promptly(tmp_path: Path) -> None:
    storage = FailingStorage(name=uuid.uuid4().hex)
    storage.fail = ConfigurationError("no credentials for the store\n(details on a second line)")
    runner, pidfile = elected(storage, tmp_path)
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as caught:
        run_bounded(runner)
    assert time.monotonic() - started < 3
    assert str(caught.value) == "no credentials for the store (details on a second line)"
    assert not pidfile.exists()


def test_a_configuration_error_while_leading_stops_the_command(tmp_path: Path) -> None:
    storage = FailingStorage(name=uuid.uuid4().hex)
    runner, pidfile = elected(storage, tmp_path)
    fail_once_leading(storage, pidfile, ConfigurationError("credentials revoked"))
    with pytest.raises(ConfigurationError, match="credentials revoked"):
        run_bounded(runner)
    assert storage.fail is not None
    assert not alive(int(pidfile.read_text()))


def test_an_election_loop_that_dies_stops_the_command_and_exits_1(tmp_path: Path) -> None:
    storage = FailingStorage(name=uuid.uuid4().hex)
    runner, pidfile = elected(storage, tmp_path)
    fail_once_leading(storage, pidfile, Boom("the loop's thread dies"))
    assert run_bounded(runner) == 1
    assert not alive(int(pidfile.read_text()))


def test_elect_on_gcs_without_credentials_exits_2_with_one_line(tmp_path: Path) -> None:
    """The real thing across processes: ``gs://`` with no credentials and no network."""
    pytest.importorskip("mclease_gcs")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "CLOUDSDK_CONFIG")
    }
    env.update(HOME=str(tmp_path), GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9")
    marker = tmp_path / "ran"
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mclease_core._cli",
            "--log-level",
            "warning",
            "elect",
            "--storage",
            "gs://mclease-no-such-bucket/x",
            "--name",
            "job",
            "--lease-duration",
            "3",
            "--renew-deadline",
            "2",
            "--retry-period",
            "1",
            "--",
            "touch",
            str(marker),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    elapsed = time.monotonic() - started
    errors = [line for line in result.stderr.splitlines() if line.startswith("mclease: error:")]
    assert result.returncode == 2, result.stderr
    assert len(errors) == 1, result.stderr
    assert "credentials" in errors[0], result.stderr
    assert elapsed < 10, f"took {elapsed:.1f}s"  # google-auth alone spends ~3 s on its probes
    assert not marker.exists()
