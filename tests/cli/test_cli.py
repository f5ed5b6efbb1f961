"""The ``mclease`` command line: listings, errors and exit codes."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from mclease_core._cli import exit_controller, main
from mclease_core.backends.memory import MemoryStorage


def test_backends_lists_the_builtins_with_their_distribution(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["SCHEME", "DISTRIBUTION", "VERSION", "URL"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["memory"][1] == "mclease-core"
    assert rows["sqlite"][1] == "mclease-core"


def test_backends_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends", "--json"]) == 0
    schemes = {row["scheme"] for row in json.loads(capsys.readouterr().out)}
    assert {"memory", "sqlite"} <= schemes


def test_crd_prints_the_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    out = capsys.readouterr().out
    assert "kind: CustomResourceDefinition" in out
    assert "multiclusterleases.multicluster.core.cnrm.cloud.google.com" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--storage", "nosuch://x"], "installed schemes: "),
        (["--storage", "not-a-url"], "not a storage URL"),
        (["--storage", "sqlite:///x.db?bogus=1"], "unknown sqlite URL option"),
        (
            ["--storage", "memory://", "--lease-duration", "5", "--renew-deadline", "6"],
            "lease_duration",
        ),
        (
            ["--storage", "memory://", "--renew-deadline", "2", "--retry-period", "2"],
            "renew_deadline",
        ),
        (["--storage", "memory://", "--kill-grace", "10"], "kill grace"),
        # issue 8 items 18 and 21: one range for every duration, never an OverflowError
        (["--storage", "sqlite:///x.db?timeout=1e308"], "between 0.05 and 3600"),
        (["--storage", "sqlite:///x.db?timeout=inf"], "between 0.05 and 3600"),
        (["--storage", "memory://", "--lease-duration", "inf"], "between 0.05 and 3600"),
        (["--storage", "memory://", "--lease-duration", "1e308"], "between 0.05 and 3600"),
        (["--storage", "memory://", "--lease-duration", "nan"], "between 0.05 and 3600"),
        (["--storage", "memory://", "--retry-period", "1e-9"], "between 0.05 and 3600"),
        (
            ["--storage", "memory://", "--lease-duration", str(50 * 365 * 86400)],
            "between 0.05 and 3600",
        ),
    ],
)
def test_configuration_errors_exit_2_with_a_clear_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["elect", "--name", "job", *args, "--", "true"]) == 2
    assert message in capsys.readouterr().err


def test_elect_without_a_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["elect", "--storage", "memory://", "--name", "job"]) == 2
    assert "needs a command" in capsys.readouterr().err


@pytest.mark.slow
def test_elect_returns_the_commands_exit_code_and_releases(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'l.db'}"
    marker = tmp_path / "ran"
    code = main(
        [
            "elect",
            "--storage",
            url,
            "--name",
            "job",
            "--identity",
            "me",
            "--lease-duration",
            "3",
            "--renew-deadline",
            "2",
            "--retry-period",
            "0.5",
            "--",
            "sh",
            "-c",
            f'echo "$MCLEASE_FENCING_TOKEN $MCLEASE_IDENTITY" > {marker}; exit 7',
        ]
    )
    assert code == 7
    assert marker.read_text().split() == ["1", "me"]
    from mclease_core import open_storage

    assert open_storage(url).read("job").data.is_released


@pytest.mark.parametrize("content", [None, "{{{ not yaml", "kind: Config\nclusters: 7\n"])
def test_a_bad_kubeconfig_is_a_clear_error_not_a_traceback(
    tmp_path: Path, content: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8 item 21: a garbage or directory --kubeconfig gave a traceback."""
    path = tmp_path / "kubeconfig"
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    code = main(
        [
            "controller",
            "--cluster-name",
            "east",
            "--storage",
            "memory://",
            "--kubeconfig",
            str(path),
            "--metrics-bind-address",
            "0",
            "--health-probe-bind-address",
            "0",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot load {path}" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


class _ClosedOnce(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1
        super().close()


def test_a_controller_whose_threads_all_ended_closes_its_store_and_returns() -> None:
    storage, ended = _ClosedOnce(), []
    assert exit_controller(1, storage, others=[], end=ended.append) == 1
    assert (storage.closed, ended) == (1, [])


def test_a_controller_with_threads_still_running_ends_the_process_with_its_code() -> None:
    """Found by the chaos runner: threads the controller abandons by design (a watch in a
    blocking read, a call past its deadline) ran on into interpreter shutdown, and on etcd grpc
    aborted the process: exit -6 instead of 1 after a lost replica lease."""
    storage, ended = _ClosedOnce(), []
    release = threading.Event()
    stuck = threading.Thread(target=release.wait, daemon=True)
    stuck.start()
    try:
        exit_controller(1, storage, others=[stuck], end=ended.append)
    finally:
        release.set()
    assert (storage.closed, ended) == (0, [1])
