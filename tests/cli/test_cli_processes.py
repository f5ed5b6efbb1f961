"""``mclease`` as a process: exit codes, environment variables, stderr lines, ``elect --try`` and
``--timeout``, the controller's listeners and its fail-fast checks.

The controller tests give it a kubeconfig pointing at a closed port on 127.0.0.1: it starts, serves
its endpoints and retries its watch, which is all these tests need of it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mclease_core import LeaseData, LeaseNotFoundError, open_storage
from mclease_core._cli import SERVICE_ACCOUNT_NAMESPACE
from mclease_core.testing import free_port, port_accepts
from mclease_dev.processes import ManagedProcess, http_get, mclease_command

pytestmark = pytest.mark.slow

TIMINGS = ["--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "500ms"]
QUIET_CONTROLLER = [
    "--cluster-name=east",
    "--metrics-bind-address=0",
    "--health-probe-bind-address=0",
]
RFC3339_UTC_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without any MCLEASE_* setting or pod hint, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MCLEASE_")
        and key not in ("POD_NAMESPACE", "KUBERNETES_SERVICE_HOST", "KUBECONFIG")
    }
    env.update(extra)
    return env


def mclease(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mclease_core._cli", *argv],
        env=environment() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def the_one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mclease: error: "), result.stderr
    return lines[0]


def hold(url: str, holder: str) -> None:
    """Store a live record for ``job`` held by ``holder`` (in another cluster) for a minute."""
    now = dt.datetime.now(dt.UTC)
    with open_storage(url) as storage:
        storage.create("job", LeaseData(holder, 60.0, now, now, holder_cluster="west"))


def has_record(url: str) -> bool:
    with open_storage(url) as storage:
        try:
            storage.read("job")
        except LeaseNotFoundError:
            return False
    return True


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'leases.db'}"


# ----- elect: the command -----------------------------------------------------------------------


def test_a_missing_command_exits_127_before_campaigning(url: str) -> None:
    result = mclease("elect", "--storage", url, "--name", "job", "--", "no-such-command-here")
    assert result.returncode == 127, result.stderr
    assert "'no-such-command-here': command not found on PATH" in the_one_error_line(result)
    assert not has_record(url), "it campaigned before checking the command"


@pytest.mark.parametrize("kind", ["not executable", "a directory"])
def test_a_command_that_is_not_executable_exits_126_before_campaigning(
    url: str, tmp_path: Path, kind: str
) -> None:
    target = tmp_path / "target"
    if kind == "a directory":
        target.mkdir()
    else:
        target.write_text("#!/bin/sh\nexit 0\n")
        target.chmod(0o644)
    result = mclease("elect", "--storage", url, "--name", "job", "--", str(target))
    assert result.returncode == 126, result.stderr
    assert f"'{target}': not executable" in the_one_error_line(result)
    assert not has_record(url), "it campaigned before checking the command"


def test_the_command_is_found_on_the_path_it_will_get(url: str, tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "my-job"
    script.write_text("#!/bin/sh\nexit 5\n")
    script.chmod(0o755)
    env = environment(PATH=f"{folder}{os.pathsep}{os.environ['PATH']}")
    result = mclease("elect", "--storage", url, "--name", "job", *TIMINGS, "--", "my-job", env=env)
    assert result.returncode == 5, result.stderr


# ----- elect: --try and --timeout ---------------------------------------------------------------


def test_try_on_a_held_lease_exits_1_at_once_without_running_the_command(
    url: str, tmp_path: Path
) -> None:
    hold(url, "other")
    marker = tmp_path / "ran"
    started = time.monotonic()
    result = mclease(
        "elect", "--storage", url, "--name=job", *TIMINGS, "--try", "--", "touch", str(marker)
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert "not elected at the first attempt (held by 'west/other')" in result.stderr
    assert not marker.exists()
    assert elapsed < 3 + 5, f"took {elapsed:.1f}s: it waited for the lease"  # 3 s: a lease
    with open_storage(url) as storage:
        assert storage.read("job").data.holder_identity == "other"


def test_try_on_a_free_lease_runs_the_command(url: str) -> None:
    result = mclease(
        "elect", "--storage", url, "--name=job", *TIMINGS, "--try", "--", "sh", "-c", "exit 4"
    )
    assert result.returncode == 4, result.stderr


def test_timeout_gives_up_with_exit_1_when_not_elected_in_time(url: str, tmp_path: Path) -> None:
    hold(url, "other")
    marker = tmp_path / "ran"
    started = time.monotonic()
    result = mclease(
        "elect",
        "--storage",
        url,
        "--name=job",
        *TIMINGS,
        "--timeout=1500ms",
        "--",
        "touch",
        str(marker),
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert "not elected within 1.5s (held by 'west/other')" in result.stderr
    assert not marker.exists()
    assert 1.5 <= elapsed < 1.5 + 5, f"took {elapsed:.1f}s"


def test_timeout_bounds_the_wait_not_the_command(url: str) -> None:
    command = ["sh", "-c", "sleep 1.5; exit 6"]
    result = mclease(
        "elect", "--storage", url, "--name=job", *TIMINGS, "--timeout=300ms", "--", *command
    )
    assert result.returncode == 6, result.stderr


# ----- elect: environment, logging --------------------------------------------------------------


def test_elect_takes_every_flag_from_the_environment(url: str, tmp_path: Path) -> None:
    """Every flag but --identity (per process by design: an inherited MCLEASE_IDENTITY made a
    nested elect the outer holder, two leaders); the command sees its own identity and none of
    the settings."""
    marker = tmp_path / "identity"
    env = environment(
        MCLEASE_STORAGE=url,
        MCLEASE_NAME="job",
        MCLEASE_IDENTITY="from-env",
        MCLEASE_LEASE_DURATION="3s",
        MCLEASE_RENEW_DEADLINE="2s",
        MCLEASE_RETRY_PERIOD="500ms",
        MCLEASE_KILL_GRACE="200ms",
        MCLEASE_TRY="true",
        MCLEASE_LOG_LEVEL="warning",
    )
    command = ["sh", "-c", f'echo "$MCLEASE_IDENTITY $MCLEASE_STORAGE" > {marker}; exit 4']
    result = mclease("elect", "--", *command, env=env)
    assert result.returncode == 4, result.stderr
    identity, *settings = marker.read_text().split()
    assert identity != "from-env"
    assert identity.rsplit("-", 1)[-1].isdigit(), identity  # HOSTNAME-PID
    assert settings == [], "the command got MCLEASE_STORAGE"
    assert result.stderr == "", "MCLEASE_LOG_LEVEL=warning: no info lines"


def test_a_flag_beats_its_environment_variable(url: str) -> None:
    env = environment(MCLEASE_STORAGE="nosuch://", MCLEASE_LOG_LEVEL="warning")
    result = mclease("elect", "--storage", url, "--name", "job", *TIMINGS, "--", "true", env=env)
    assert result.returncode == 0, result.stderr


def test_a_bad_environment_variable_is_one_line_naming_it(url: str) -> None:
    env = environment(MCLEASE_LEASE_DURATION="forever")
    result = mclease("elect", "--storage", url, "--name", "job", "--", "true", env=env)
    assert result.returncode == 2
    line = the_one_error_line(result)
    assert line.startswith("mclease: error: environment variable MCLEASE_LEASE_DURATION: ")
    assert "'forever'" in line


@pytest.mark.parametrize("where", ["before", "after"])
def test_log_level_before_or_after_the_command(url: str, where: str) -> None:
    level = ["--log-level", "error"]
    argv = ["elect", "--storage", url, "--name", "job", *TIMINGS, "--", "true"]
    argv = [*level, *argv] if where == "before" else [*argv[:1], *level, *argv[1:]]
    result = mclease(*argv)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_v_turns_on_debug_logs(url: str) -> None:
    result = mclease("elect", "-v", "--storage", url, "--name", "job", *TIMINGS, "--", "true")
    assert result.returncode == 0, result.stderr
    assert " DEBUG " in result.stderr


def test_json_logs_are_one_object_per_line(url: str) -> None:
    result = mclease(
        "elect", "--log-format=json", "--storage", url, "--name=job", *TIMINGS, "--", "true"
    )
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert entries, "no log lines"
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry)
        assert RFC3339_UTC_MS.fullmatch(entry["time"]), entry["time"]
    assert any(
        entry["logger"] == "mclease.elect" and entry["message"].startswith("leading 'job'")
        for entry in entries
    )


# ----- controller -------------------------------------------------------------------------------


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig whose API server is a closed port on 127.0.0.1."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{free_port()}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    return path


class Controller(ManagedProcess):
    def __init__(self, argv: list[str], env: dict[str, str], workdir: Path):
        command = mclease_command("controller", *argv)
        super().__init__("controller", command, workdir / "controller.log", env=env)
        self.start()

    def get(self, host: str, port: int, path: str) -> int:
        self.wait_until(
            lambda: port_accepts(port, host=host),
            timeout=20,
            message=f"a listener on {host} port {port}",
        )
        return http_get(port, path, host=host, timeout=5)[0]

    def stop(self) -> int:
        code = self.terminate(15)
        assert code is not None
        return code


@pytest.fixture
def controllers(tmp_path: Path) -> Iterator[list[Controller]]:
    started: list[Controller] = []
    yield started
    for controller in started:
        controller.stop()


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_controller_takes_its_flags_from_the_environment_and_logs_json(
    kubeconfig: Path, tmp_path: Path, controllers: list[Controller]
) -> None:
    port = free_port()
    env = environment(
        MCLEASE_CLUSTER_NAME="east",
        MCLEASE_STORAGE=f"sqlite://{tmp_path / 'global.db'}",
        MCLEASE_KUBECONFIG=str(kubeconfig),
        MCLEASE_METRICS_BIND_ADDRESS=f"127.0.0.1:{port}",
        MCLEASE_HEALTH_PROBE_BIND_ADDRESS="0",
        MCLEASE_LOG_FORMAT="json",
    )
    controller = Controller([], env, tmp_path)
    controllers.append(controller)
    assert controller.get("127.0.0.1", port, "/metrics") == 200
    assert controller.stop() == 0
    lines = controller.log_path.read_text().splitlines()
    assert lines, "the controller logged nothing (its watch fails: it must say so)"
    for line in lines:
        entry = json.loads(line)
        assert RFC3339_UTC_MS.fullmatch(entry["time"]), line


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
@pytest.mark.parametrize(
    ("flag", "path"),
    [
        pytest.param("--metrics-bind-address", "/metrics", id="metrics"),
        pytest.param("--health-probe-bind-address", "/healthz", id="health-probes"),
    ],
)
def test_the_server_listens_on_a_bracketed_ipv6_address(
    kubeconfig: Path, tmp_path: Path, controllers: list[Controller], flag: str, path: str
) -> None:
    port = free_port()
    argv = [*QUIET_CONTROLLER, "--storage=memory://", f"--kubeconfig={kubeconfig}"]
    argv.append(f"{flag}=[::1]:{port}")
    controller = Controller(argv, environment(), tmp_path)
    controllers.append(controller)
    assert controller.get("::1", port, path) == 200


BAD_CONTROLLER_INPUT = [
    (["--workers", "0"], "argument --workers: must be a whole number of at least 1"),
    (["--metrics-bind-address", ":65536"], "expected a number from 0 to 65535"),
    (["--health-probe-bind-address", "127.0.0.1:x"], "expected a number from 0 to 65535"),
    (["--metrics-bind-address", "::1:8080"], "as in [::1]:8080"),
    (["--retry-period", "0"], "argument --retry-period: must be between 0.05 and 3600"),
    (["--leader-elect-retry-period=-2s"], "must be between 0.05 and 3600"),
    (["--leader-elect"], "pass --leader-elect-namespace"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_CONTROLLER_INPUT)
def test_bad_controller_input_is_one_line_and_exit_2(
    kubeconfig: Path, argv: list[str], message: str
) -> None:
    if argv == ["--leader-elect"] and SERVICE_ACCOUNT_NAMESPACE.exists():
        pytest.skip("this machine is a pod: it has a service account namespace")
    result = mclease(
        "controller",
        *QUIET_CONTROLLER,
        "--storage=memory://",
        f"--kubeconfig={kubeconfig}",
        *argv,
    )
    assert result.returncode == 2, result.stderr
    assert message in the_one_error_line(result)


def test_a_port_in_use_is_one_line_and_exit_2(kubeconfig: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [*QUIET_CONTROLLER, "--storage=memory://", f"--kubeconfig={kubeconfig}"]
        result = mclease("controller", *argv, f"--health-probe-bind-address=127.0.0.1:{port}")
    assert result.returncode == 2, result.stderr
    line = the_one_error_line(result)
    assert f"cannot listen on --health-probe-bind-address 127.0.0.1:{port}" in line


def without_google_credentials(tmp_path: Path) -> dict[str, str]:
    closed = f"127.0.0.1:{free_port()}"
    env = environment(HOME=str(tmp_path), GCE_METADATA_HOST=closed, GCE_METADATA_IP=closed)
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "CLOUDSDK_CONFIG"):
        env.pop(name, None)
    return env


def test_controller_on_gcs_without_credentials_fails_fast_with_one_line(
    kubeconfig: Path, tmp_path: Path
) -> None:
    """The gcs plugin opens lazily; the controller reads once at start, so a store refusing its
    credentials is exit 2 now, not a reconcile error whenever the first lease shows up."""
    pytest.importorskip("mclease_gcs")
    started = time.monotonic()
    argv = [
        *QUIET_CONTROLLER,
        "--storage=gs://mclease-no-such-bucket/x",
        f"--kubeconfig={kubeconfig}",
    ]
    result = mclease("controller", *argv, env=without_google_credentials(tmp_path), timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    assert "no Google credentials" in the_one_error_line(result)
    assert elapsed < 15, f"took {elapsed:.1f}s"  # google-auth alone spends ~3 s on its probes


def test_elect_on_gcs_without_credentials_is_one_line_and_never_runs_the_command(
    tmp_path: Path,
) -> None:
    pytest.importorskip("mclease_gcs")
    marker = tmp_path / "ran"
    argv = ["--storage=gs://mclease-no-such-bucket/x", "--name=job", *TIMINGS, "--retry-period=1s"]
    command = ["touch", str(marker)]
    result = mclease(
        "elect", *argv, "--", *command, env=without_google_credentials(tmp_path), timeout=30
    )
    assert result.returncode == 2, result.stderr
    assert "no Google credentials" in the_one_error_line(result)
    assert not marker.exists()
