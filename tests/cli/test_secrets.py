"""No password in any output: ``mclease`` run as a user runs it, and the secret guard.

Each case runs the installed ``mclease`` command in a process of its own, with a canary password
in the URL, in ``MCLEASE_STORAGE_PASSWORD`` or in a ``password_file``, against a closed port, a
password-protected redis-server and an etcd with authentication (all on 127.0.0.1), with text and
JSON logs at debug level. It captures everything the process writes and asserts that no canary
appears (all of them start with ``mclease-canary``, so a piece of one is caught too), that an error
is one line (``mclease: error: ...`` for exit 2, the final log line for exit 1) and never a
traceback, and that the exit code is the documented one.

The guard's own test runs pytest on a generated file whose tests leak a canary in each way the
guard watches, once with the guard and once without, so it shows that the guard is what fails
them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pyetcd  # type: ignore[import-untyped]
import pytest
from pyetcd import etcdrpc

from mclease_core.testing import ServerProcess, free_port, server_or_fail
from mclease_dev.canaries import CANARY_PASSWORDS
from mclease_dev.servers import etcd_server, redis_server

pytestmark = pytest.mark.slow

PW, WRONG, AWKWARD = CANARY_PASSWORDS
CANARY_STEM = "mclease-canary"
REPO = Path(__file__).resolve().parents[2]
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d\S* [A-Z]+ |\{)")
"""A log line: text format (``2026-01-01 12:00:00,000 WARNING ...``) or one JSON object."""


def _mclease() -> list[str]:
    script = Path(sys.executable).with_name("mclease")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mclease_core._cli"]


@dataclasses.dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def last_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


def run_mclease(*args: str, env: dict[str, str] | None = None) -> Run:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MCLEASE_")}
    environ.update(env or {})
    done = subprocess.run(
        [*_mclease(), *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def check_no_secret(run: Run) -> None:
    """No canary (nor a piece of one) in the output, and no traceback; every stderr line before
    the last is a log line."""
    quoted = [urllib.parse.quote(canary, safe="") for canary in CANARY_PASSWORDS]
    assert CANARY_STEM not in run.output, f"a password in the output:\n{_masked(run.output)}"
    assert not any(form in run.output for form in quoted)
    assert "Traceback" not in run.output, _masked(run.output)
    for line in run.stderr.strip().splitlines()[:-1]:
        assert LOG_LINE.match(line), f"not a log line: {_masked(line)}"


def _masked(text: str) -> str:
    """``text`` for an assertion message: the guard would otherwise flag the message itself."""
    for canary in CANARY_PASSWORDS:
        text = text.replace(canary, "<CANARY>")
    return text.replace(CANARY_STEM, "<CANARY-PIECE>")


def _elect(storage: str, *extra: str) -> list[str]:
    return [
        "elect",
        "--storage",
        storage,
        "--name",
        "job",
        "--identity",
        "me",
        *extra,
        "--",
        sys.executable,
        "-c",
        "pass",
    ]


# ----- servers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def protected_redis() -> Iterator[ServerProcess]:
    with server_or_fail(redis_server("--requirepass", PW)) as server:
        yield server


@pytest.fixture(scope="module")
def auth_etcd() -> Iterator[ServerProcess]:
    with server_or_fail(etcd_server()) as server:
        raw = pyetcd.client(server.host, server.port, timeout=5)
        raw.authstub.UserAdd(etcdrpc.AuthUserAddRequest(name="root", password=PW), 5)
        raw.authstub.UserGrantRole(etcdrpc.AuthUserGrantRoleRequest(user="root", role="root"), 5)
        raw.authstub.AuthEnable(etcdrpc.AuthEnableRequest(), 5)
        raw.close()
        yield server


def _redis_with_password(
    address: str, password: str, source: str, tmp_path: Path, **params: str
) -> tuple[str, dict[str, str]]:
    """A Redis URL (with query ``params``) and an environment that give ``password`` by
    ``source``: "url" (the user info), "env" ($MCLEASE_STORAGE_PASSWORD) or "file" (a
    ``password_file`` written in ``tmp_path``)."""
    user_info, env = "", {}
    if source == "url":
        user_info = f":{password}@"
    elif source == "env":
        env = {"MCLEASE_STORAGE_PASSWORD": password}
    else:
        path = tmp_path / "password"
        path.write_text(password + "\n")
        params["password_file"] = str(path)
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"redis://{user_info}{address}/0" + (f"?{query}" if query else ""), env


# ----- failing runs: exit 2 with one line, no password -------------------------------------------


def test_a_malformed_url_with_the_password() -> None:
    run = run_mclease(*_elect(f"redis://:{PW}@127.0.0.1:{free_port()}/notadb"))
    check_no_secret(run)
    assert run.code == 2
    assert run.last_line.startswith("mclease: error: invalid redis URL 'redis://:***@127.0.0.1:")
    assert "database number" in run.last_line


@pytest.mark.parametrize(
    "args",
    [
        ("backends", "--storage", f"redis://:{PW}@127.0.0.1:1/0"),  # a flag the command lacks
        ("--storage", f"redis://:{PW}@127.0.0.1:1/0", "backends"),  # taken for the command
        ("elect", "--storage", "memory://", "--name", "n", "--timeout", f"redis://:{PW}@h/0"),
        ("elect", "--storage", f"gs://mclease:{PW}@my-bucket/leases", "--name", "n", "--try"),
    ],
    ids=["unrecognized", "invalid-choice", "bad-duration", "gs-user-info"],
)
def test_usage_errors_that_quote_what_was_typed(args: tuple[str, ...]) -> None:
    """argparse quotes a misplaced argument as typed; the CLI redacts every URL it prints."""
    run = run_mclease(*args, "--", "true") if "elect" in args else run_mclease(*args)
    check_no_secret(run)
    assert run.code == 2
    assert "***" in run.last_line


def test_a_password_that_needed_percent_encoding() -> None:
    run = run_mclease(*_elect(f"redis://:{AWKWARD}@127.0.0.1:{free_port()}/0"))
    check_no_secret(run)
    assert run.code == 2
    assert "percent-encode" in run.last_line


def test_no_scheme() -> None:
    run = run_mclease(*_elect(f":{PW}@127.0.0.1:{free_port()}/0"))
    check_no_secret(run)
    assert run.code == 2
    assert "is not a storage URL" in run.last_line


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("colour=blue", "unknown redis URL option(s) ['colour']"),
        (f"password={PW}", "unknown redis URL option(s) ['password']"),
    ],
)
def test_an_unknown_option(query: str, message: str) -> None:
    run = run_mclease("--log-level", "debug", *_elect(f"redis://:{PW}@127.0.0.1:1/0?{query}"))
    check_no_secret(run)
    assert run.code == 2
    assert message in run.last_line


def test_the_url_from_the_environment() -> None:
    run = run_mclease(
        "elect",
        "--name",
        "job",
        "--",
        "true",
        env={"MCLEASE_STORAGE": f"redis://:{PW}@127.0.0.1:1/notadb"},
    )
    check_no_secret(run)
    assert run.code == 2
    assert "redis://:***@127.0.0.1:1/notadb" in run.last_line


def test_two_sources_of_the_password() -> None:
    run = run_mclease(*_elect(f"redis://:{PW}@127.0.0.1:1/0"), env={"MCLEASE_STORAGE_PASSWORD": PW})
    check_no_secret(run)
    assert run.code == 2
    assert "given twice, in the URL's user info and in $MCLEASE_STORAGE_PASSWORD" in run.last_line


@pytest.mark.parametrize("source", ["url", "env", "file"])
@pytest.mark.parametrize(
    "logs", [("--log-level", "debug"), ("--log-level", "debug", "--log-format", "json")]
)
def test_a_wrong_password_against_a_protected_redis(
    protected_redis: ServerProcess, tmp_path: Path, source: str, logs: tuple[str, ...]
) -> None:
    storage, env = _redis_with_password(protected_redis.address, WRONG, source, tmp_path)
    run = run_mclease(*logs, *_elect(storage), env=env)
    check_no_secret(run)
    assert run.code == 2, _masked(run.output)
    assert run.last_line.startswith("mclease: error: Redis at 127.0.0.1 refused the credentials")


def test_no_password_for_a_protected_redis(protected_redis: ServerProcess) -> None:
    run = run_mclease(*_elect(f"redis://{protected_redis.address}/0"))
    check_no_secret(run)
    assert run.code == 2
    assert "requires a password" in run.last_line


def test_a_wrong_password_against_etcd_with_authentication(auth_etcd: ServerProcess) -> None:
    run = run_mclease(
        "--log-level", "debug", *_elect(f"etcd://root:{WRONG}@{auth_etcd.address}/cli")
    )
    check_no_secret(run)
    assert run.code == 2
    assert "etcd at 127.0.0.1" in run.last_line
    assert "refused the credentials" in run.last_line


# ----- runs that cannot reach the store: exit 1, no password -------------------------------------


@pytest.mark.parametrize("wait", [("--try",), ("--timeout", "1s", "--log-level", "debug")])
def test_a_closed_port_with_the_password_in_the_url(wait: tuple[str, ...]) -> None:
    run = run_mclease(*_elect(f"redis://:{PW}@127.0.0.1:{free_port()}/0", *wait))
    check_no_secret(run)
    assert run.code == 1
    assert "not elected" in run.last_line
    assert "cannot reach Redis at 127.0.0.1" in run.output


# ----- runs that work: the password used, never shown --------------------------------------------


@pytest.mark.parametrize("source", ["url", "env", "file"])
def test_a_right_password_at_debug_level(
    protected_redis: ServerProcess, tmp_path: Path, source: str
) -> None:
    storage, env = _redis_with_password(
        protected_redis.address, PW, source, tmp_path, prefix=source
    )
    run = run_mclease("--log-level", "debug", "--log-format", "json", *_elect(storage), env=env)
    check_no_secret(run)
    assert run.code == 0, _masked(run.output)
    messages = [json.loads(line)["message"] for line in run.stderr.splitlines()]
    assert any("started leading" in message for message in messages)


def test_etcd_with_the_password_from_a_file(auth_etcd: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "password").write_text(PW + "\n")
    storage = f"etcd://root@{auth_etcd.address}/cli?password_file={tmp_path / 'password'}"
    run = run_mclease("--log-level", "debug", *_elect(storage))
    check_no_secret(run)
    assert run.code == 0, _masked(run.output)


# ----- the guard ---------------------------------------------------------------------------------

LEAKING_TESTS = """
import logging
import urllib.parse

from mclease_dev.canaries import CANARY_PASSWORDS

PW = CANARY_PASSWORDS[0]


def test_prints_it():
    print("connecting with", PW)


def test_writes_it_to_stderr_in_setup_output(leaky_fixture):
    pass


def test_logs_it_percent_encoded():
    logging.getLogger("x").warning("url %s", urllib.parse.quote(CANARY_PASSWORDS[2], safe=""))


def test_fails_naming_it():
    assert PW == "something else"


def test_keeps_it_to_itself():
    assert PW.startswith("mclease-canary")
"""

LEAKING_CONFTEST = """
import sys

import pytest

from mclease_dev.canaries import CANARY_PASSWORDS


@pytest.fixture
def leaky_fixture():
    print(CANARY_PASSWORDS[1], file=sys.stderr)
"""


def _run_pytest(directory: Path, *plugins: str) -> dict[str, str]:
    """Outcome of each test of ``directory`` ("passed", "failed", "error") by test name."""
    report = directory / "report.xml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            *plugins,
            "-q",
            f"--junitxml={report}",
            str(directory),
        ],
        capture_output=True,
        text=True,
        cwd=directory,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert report.exists(), _masked(done.stdout + done.stderr)
    outcomes = {}
    for case in re.finditer(
        r'<testcase [^>]*name="(\w+)"[^>]*?(/>|>(.*?)</testcase>)', report.read_text(), re.DOTALL
    ):
        body = case.group(3) or ""
        outcomes[case.group(1)] = (
            "failed" if "<failure" in body else "error" if "<error" in body else "passed"
        )
    return outcomes


def test_the_secret_guard_fails_every_test_that_leaks_a_canary(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's addopts
    (tmp_path / "test_leaks.py").write_text(textwrap.dedent(LEAKING_TESTS))
    (tmp_path / "conftest.py").write_text(textwrap.dedent(LEAKING_CONFTEST))

    without = _run_pytest(tmp_path)
    assert without == {
        "test_prints_it": "passed",
        "test_writes_it_to_stderr_in_setup_output": "passed",
        "test_logs_it_percent_encoded": "passed",
        "test_fails_naming_it": "failed",
        "test_keeps_it_to_itself": "passed",
    }
    with_guard = _run_pytest(tmp_path, "-p", "tests._secret_guard")
    assert with_guard == {
        "test_prints_it": "failed",
        "test_writes_it_to_stderr_in_setup_output": "error",  # the setup phase leaked
        "test_logs_it_percent_encoded": "failed",
        "test_fails_naming_it": "failed",
        "test_keeps_it_to_itself": "passed",
    }
    report = (tmp_path / "report.xml").read_text()
    assert (
        "secret guard: a password leaked into the output (canary password #0 in Captured "
        "stdout call)" in report
    )
    assert "canary password #2 in Captured log call" in report
    assert "canary password #0 in the failure text" in report
