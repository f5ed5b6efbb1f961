"""The command line's flags, in process: names, durations, addresses, environment variables,
logging options and the JSON log format. Nothing here starts a server or campaigns."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import sys
from pathlib import Path

import pytest

from mclease_core import _cli
from mclease_core._cli import main, parse
from mclease_core._logging import json_formatter, log_level
from mclease_core._options import UsageError, parse_duration

ELECT = ["elect", "--storage", "memory://", "--name", "job"]
CONTROLLER = ["controller", "--storage", "memory://", "--cluster-name", "east"]
ELECT_DURATIONS = [
    "--lease-duration",
    "--renew-deadline",
    "--retry-period",
    "--kill-grace",
    "--timeout",
]
CONTROLLER_DURATIONS = [
    "--retry-period",
    "--leader-elect-lease-duration",
    "--leader-elect-renew-deadline",
    "--leader-elect-retry-period",
]


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("mclease: error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def parsed(argv: list[str], **environ: str) -> argparse.Namespace:
    return parse(argv, environ)


# ----- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15.0),
        ("1m", 60.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("1.5m", 90.0),
        ("2h0m0.5s", 7200.5),
        ("250us", 0.00025),
        ("2", 2.0),
        ("2.5", 2.5),
        (" 3s ", 3.0),
    ],
)
def test_durations_are_go_style_or_plain_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "abc", "1m30", "5 s", "1d", "1s2", "--1s", "1,5s"])
def test_a_malformed_duration_names_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="15s, 1m30s or 500ms"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("command", "flag"),
    [("elect", flag) for flag in ELECT_DURATIONS]
    + [("controller", flag) for flag in CONTROLLER_DURATIONS],
)
def test_every_duration_flag_takes_go_durations(command: str, flag: str) -> None:
    base = ELECT if command == "elect" else CONTROLLER
    args = parsed([*base, f"{flag}=1m30s"])
    assert getattr(args, flag[2:].replace("-", "_")) == 90.0
    args = parsed([*base, flag, "500ms"])
    assert getattr(args, flag[2:].replace("-", "_")) == 0.5


@pytest.mark.parametrize("value", ["0", "0s", "-5", "-5s", "nan", "inf", "-inf", "1e308", "soon"])
@pytest.mark.parametrize(
    ("command", "flag"),
    [("elect", flag) for flag in ELECT_DURATIONS if flag != "--kill-grace"]
    + [("controller", flag) for flag in CONTROLLER_DURATIONS],
)
def test_zero_negative_and_non_finite_durations_are_one_line_errors(
    command: str, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = (
        [*ELECT, f"{flag}={value}", "--", "true"]
        if command == "elect"
        else [
            *CONTROLLER,
            f"{flag}={value}",
        ]
    )
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert f"argument {flag}:" in line
    assert repr(value) in line


def test_a_zero_kill_grace_is_allowed_but_not_a_negative_one() -> None:
    assert parsed([*ELECT, "--kill-grace", "0"]).kill_grace == 0.0
    with pytest.raises(UsageError, match="--kill-grace: must be between 0 and 3600"):
        parsed([*ELECT, "--kill-grace=-1s"])


def test_lease_timings_keep_their_range_and_timeout_its_own() -> None:
    with pytest.raises(UsageError, match=r"between 0\.05 and 3600 seconds, got '2h'"):
        parsed([*ELECT, "--lease-duration", "2h"])
    assert parsed([*ELECT, "--timeout", "2h"]).timeout == 7200.0


# ----- controller flags ------------------------------------------------------------------------


def test_controller_flags_are_named_as_in_controller_runtime() -> None:
    args = parsed(
        [
            *CONTROLLER,
            "--metrics-bind-address",
            "127.0.0.1:9090",
            "--health-probe-bind-address",
            "[::1]:9091",
            "--leader-elect",
            "--leader-elect-namespace",
            "kube-system",
        ]
    )
    assert args.metrics_bind_address == ("127.0.0.1", 9090)
    assert args.health_probe_bind_address == ("::1", 9091)
    assert args.leader_elect is True
    assert args.leader_elect_namespace == "kube-system"


def test_the_old_address_flags_still_work_but_are_not_shown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parsed([*CONTROLLER, "--metrics-address", ":1", "--health-address", "0"])
    assert args.metrics_bind_address == ("0.0.0.0", 1)
    assert args.health_probe_bind_address is None
    with pytest.raises(SystemExit):
        parsed(["controller", "--help"])
    shown = capsys.readouterr().out
    assert "--metrics-bind-address" in shown
    assert "--metrics-address" not in shown
    assert "--health-address" not in shown


def test_address_defaults_listen_on_all_ipv4_interfaces() -> None:
    args = parsed(CONTROLLER)
    assert args.metrics_bind_address == ("0.0.0.0", 8080)
    assert args.health_probe_bind_address == ("0.0.0.0", 8081)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        (":8080", ("0.0.0.0", 8080)),
        ("127.0.0.1:9", ("127.0.0.1", 9)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::]:0", ("::", 0)),
        ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
        ("0", None),
        ("", None),
    ],
)
def test_bind_addresses(text: str, address: tuple[str, int] | None) -> None:
    assert parsed([*CONTROLLER, "--metrics-bind-address", text]).metrics_bind_address == address


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("::1:8080", "put an IPv6 host in brackets, as in [::1]:8080"),
        ("::8080", "put an IPv6 host in brackets"),
        (":65536", "expected a number from 0 to 65535"),
        (":99999999999999999999", "expected a number from 0 to 65535"),
        ("127.0.0.1:http", "expected a number from 0 to 65535"),
        ("127.0.0.1:", "expected a number from 0 to 65535"),
        (":-1", "expected a number from 0 to 65535"),
        ("8080", "expected [HOST]:PORT, or 0 to turn off"),
        ("[::1]", "expected [IPV6]:PORT, as in [::1]:8080"),
        ("[::1]:x", "expected a number from 0 to 65535"),
    ],
)
@pytest.mark.parametrize("flag", ["--metrics-bind-address", "--health-probe-bind-address"])
def test_bad_bind_addresses_are_one_line_errors(
    flag: str, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*CONTROLLER, f"{flag}={text}"]) == 2
    line = one_error_line(capsys)
    assert f"argument {flag}:" in line
    assert message in line


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "four", ""])
def test_workers_must_be_a_positive_whole_number(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*CONTROLLER, f"--workers={value}"]) == 2
    assert "argument --workers: must be a whole number of at least 1" in one_error_line(capsys)


@pytest.mark.parametrize("value", ["Default", "a_b", "-x", "x" * 64])
def test_namespaces_must_be_dns_labels(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*CONTROLLER, f"--leader-elect-namespace={value}"]) == 2
    assert "invalid namespace" in one_error_line(capsys)


# ----- the replica Lease's namespace -----------------------------------------------------------


@pytest.fixture
def no_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Outside a pod: no $POD_NAMESPACE, no service account file (its path returned)."""
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.delenv("MCLEASE_LEADER_ELECT_NAMESPACE", raising=False)
    path = tmp_path / "serviceaccount" / "namespace"
    monkeypatch.setattr(_cli, "SERVICE_ACCOUNT_NAMESPACE", path)
    return path


def test_pod_namespace_is_the_downward_api_variable_then_the_service_account_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "namespace"
    assert _cli.pod_namespace({}, path) is None
    path.write_text("from-file\n")
    assert _cli.pod_namespace({}, path) == "from-file"
    assert _cli.pod_namespace({"POD_NAMESPACE": "from-env"}, path) == "from-env"
    assert _cli.pod_namespace({"POD_NAMESPACE": ""}, path) == "from-file"
    path.write_text("")
    assert _cli.pod_namespace({}, path) is None


def test_leader_election_outside_a_pod_needs_the_namespace_flag(
    no_pod: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*CONTROLLER, "--leader-elect"]) == 2
    line = one_error_line(capsys)
    assert "pass --leader-elect-namespace" in line
    assert "default" not in line.replace("--leader", "")


def test_the_lease_namespace_defaults_to_the_pods(
    no_pod: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_pod.parent.mkdir()
    no_pod.write_text("mclease-system\n")
    config = _cli.controller_config(parsed([*CONTROLLER, "--leader-elect"]))
    assert config.leader_elect_namespace == "mclease-system"
    monkeypatch.setenv("POD_NAMESPACE", "from-downward-api")
    config = _cli.controller_config(parsed([*CONTROLLER, "--leader-elect"]))
    assert config.leader_elect_namespace == "from-downward-api"
    config = _cli.controller_config(
        parsed([*CONTROLLER, "--leader-elect", "--leader-elect-namespace", "flag"])
    )
    assert config.leader_elect_namespace == "flag"


def test_without_leader_election_no_namespace_is_needed_or_invented(no_pod: Path) -> None:
    config = _cli.controller_config(parsed(CONTROLLER))
    assert config.leader_elect is False
    assert config.leader_elect_namespace != "default"


# ----- environment variables -------------------------------------------------------------------


def test_every_flag_reads_its_environment_variable() -> None:
    args = parsed(
        ["controller"],
        MCLEASE_STORAGE="memory://env",
        MCLEASE_CLUSTER_NAME="west",
        MCLEASE_LEADER_ELECT="true",
        MCLEASE_LEADER_ELECT_NAMESPACE="ns",
        MCLEASE_METRICS_BIND_ADDRESS="[::1]:9000",
        MCLEASE_HEALTH_PROBE_BIND_ADDRESS="0",
        MCLEASE_WORKERS="7",
        MCLEASE_RETRY_PERIOD="1m",
        MCLEASE_NAMESPACE="a, b,,c",
        MCLEASE_LOG_LEVEL="debug",
        MCLEASE_LOG_FORMAT="json",
    )
    assert (args.storage, args.cluster_name, args.leader_elect) == ("memory://env", "west", True)
    assert args.leader_elect_namespace == "ns"
    assert args.metrics_bind_address == ("::1", 9000)
    assert args.health_probe_bind_address is None
    assert (args.workers, args.retry_period) == (7, 60.0)
    assert args.namespaces == ["a", "b", "c"]
    assert (args.log_level, args.log_format) == ("debug", "json")


def test_a_flag_beats_its_variable_which_beats_the_default() -> None:
    environ = {"MCLEASE_WORKERS": "7", "MCLEASE_LEADER_ELECT": "yes", "MCLEASE_NAMESPACE": "a,b"}
    args = parsed(
        [*CONTROLLER, "--workers", "2", "--no-leader-elect", "--namespace", "c"], **environ
    )
    assert (args.workers, args.leader_elect, args.namespaces) == (2, False, ["c"])
    args = parsed(CONTROLLER, **environ)
    assert (args.workers, args.leader_elect, args.namespaces) == (7, True, ["a", "b"])
    args = parsed(CONTROLLER)
    assert (args.workers, args.leader_elect, args.namespaces) == (4, False, [])


def test_a_required_flag_can_come_from_its_variable() -> None:
    args = parsed(["elect", "--", "true"], MCLEASE_STORAGE="memory://", MCLEASE_NAME="job")
    assert (args.storage, args.name) == ("memory://", "job")
    with pytest.raises(UsageError, match=r"^--name is required \(or set MCLEASE_NAME\)$"):
        parsed(["elect", "--", "true"], MCLEASE_STORAGE="memory://")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MCLEASE_WORKERS", "lots", "must be a whole number of at least 1, got 'lots'"),
        ("MCLEASE_LEADER_ELECT", "maybe", "expected true or false, got 'maybe'"),
        ("MCLEASE_RETRY_PERIOD", "-1s", "must be between 0.05 and 3600 seconds, got '-1s'"),
        ("MCLEASE_METRICS_BIND_ADDRESS", "::1:80", "put an IPv6 host in brackets"),
        ("MCLEASE_LOG_LEVEL", "loud", "expected one of debug, info, warning, error"),
        ("MCLEASE_NAMESPACE", "ok,Not_OK", "invalid namespace 'Not_OK'"),
    ],
)
def test_a_bad_variable_is_named_in_a_one_line_error(
    variable: str,
    value: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(CONTROLLER) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"mclease: error: environment variable {variable}: ")
    assert message in line


def test_a_bad_variable_of_another_command_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCLEASE_WORKERS", "lots")  # a controller flag
    assert parsed(ELECT).name == "job"


def all_subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = _cli._parser()
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser, **choices.choices}


@pytest.mark.parametrize("command", ["", "backends", "crd", "elect", "controller"])
def test_help_shows_every_flags_variable_and_default(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = all_subcommands()[command]
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--help"])
    assert exited.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    for action in parser._actions:
        flags = [f for f in action.option_strings if f.startswith("--")]
        if not flags or action.help == argparse.SUPPRESS or flags[0] in ("--help", "--version"):
            continue
        help_text = str(action.help)
        assert "default: " in help_text or "required" in help_text, flags[0]
        if flags[0] == "--identity":  # per process by design: see the test below
            assert "no environment variable" in help_text
            continue
        variable = "MCLEASE_" + flags[0][2:].upper().replace("-", "_")
        assert f"env: {variable}" in help_text, flags[0]
        assert "default: " in help_text or "required" in help_text, flags[0]
        assert f"env: {variable}" in shown, flags[0]


def test_elect_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parsed(["elect", "--help"])
    shown = capsys.readouterr().out
    for code in ("1 ", "2 ", "3 ", "126 ", "127 ", "128+N "):
        assert re.search(rf"^  {re.escape(code)}", shown, re.MULTILINE), code


# ----- logging flags ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        (["crd"], "info"),
        (["--log-level", "error", "crd"], "error"),
        (["crd", "--log-level", "error"], "error"),
        (["--log-level", "error", "crd", "--log-level", "warning"], "warning"),
        (["-v", "crd"], "debug"),
        (["crd", "-v"], "debug"),
        (["-vv", "crd"], "debug"),
        (["--log-level", "error", "crd", "-v"], "warning"),
        (["--log-level", "WARNING", "crd"], "warning"),
    ],
)
def test_log_level_before_or_after_the_command_and_v(argv: list[str], level: str) -> None:
    assert log_level(parsed(argv)) == level


def test_log_format_before_or_after_the_command() -> None:
    assert parsed(["--log-format", "json", "crd"]).log_format == "json"
    assert parsed(["crd", "--log-format", "json"]).log_format == "json"
    assert parsed(["crd"], MCLEASE_LOG_FORMAT="json").log_format == "json"
    assert parsed(["crd", "--log-format", "text"], MCLEASE_LOG_FORMAT="json").log_format == "text"


def log_record(**fields: object) -> logging.LogRecord:
    moment = dt.datetime(2026, 12, 2, 0, 12, 34, 567000, tzinfo=dt.UTC).timestamp()
    record = logging.LogRecord(
        "mclease.test", logging.WARNING, __file__, 1, "%s here", ("x",), None
    )
    record.created, record.msecs = moment, 567.0
    record.__dict__.update(fields)
    return record


def test_json_logs_carry_rfc3339_utc_time_level_logger_message_and_extra() -> None:
    line = json_formatter().format(log_record(lease="job", attempt=3))
    assert json.loads(line) == {
        "time": "2026-12-02T00:12:34.567Z",
        "level": "WARNING",
        "logger": "mclease.test",
        "message": "x here",
        "lease": "job",
        "attempt": 3,
    }


def test_json_logs_carry_the_traceback_in_a_field() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = log_record(exc_info=sys.exc_info())
    entry = json.loads(json_formatter().format(record))
    assert entry["message"] == "x here"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: boom" in entry["exception"]


def test_json_logs_are_produced_by_python_json_logger() -> None:
    from pythonjsonlogger.json import JsonFormatter

    assert isinstance(json_formatter(), JsonFormatter)


def test_json_logs_without_python_json_logger_are_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pythonjsonlogger.json", None)
    assert main(["--log-format", "json", "crd"]) == 2
    assert "pip install python-json-logger" in one_error_line(capsys)


# ----- elect's own checks ----------------------------------------------------------------------


def test_try_and_timeout_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ELECT, "--try", "--timeout", "5s", "--", "true"]) == 2
    assert "not both" in one_error_line(capsys)


@pytest.mark.parametrize("argv", [["--storage"], ["--name", "x", "--bogus"], ["--try=yes"]])
def test_usage_errors_are_one_line_with_a_pointer_to_help(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["elect", *argv]) == 2
    assert re.search(r"\(see mclease( elect)? --help\)$", one_error_line(capsys))


def test_the_identity_never_comes_from_the_environment() -> None:
    """An outer ``elect`` gives its command MCLEASE_IDENTITY; a nested ``elect`` that took it as
    its own identity renewed the outer holder's records: two processes led the same lease."""
    args = parsed([*ELECT, "--", "true"], MCLEASE_IDENTITY="outer-holder")
    assert args.identity != "outer-holder"
    assert args.identity.endswith(f"-{os.getpid()}")


def test_the_command_gets_none_of_the_settings_of_elect() -> None:
    from mclease_core._runner import child_environment

    parent = {
        "PATH": "/bin",
        "MCLEASE_STORAGE": "redis://h/0",
        "MCLEASE_STORAGE_PASSWORD": "x",
        "MCLEASE_TRY": "true",
    }
    assert child_environment(parent) == {"PATH": "/bin"}
