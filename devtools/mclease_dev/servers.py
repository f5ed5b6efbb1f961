"""This repository's test servers: ``redis-server``, ``etcd`` and ``fake-gcs-server`` on loopback.

Configured for tests (loopback, free ports, no persistence beyond the run) and started with
:class:`mclease_core.testing.ServerProcess`. ``hack/test-servers.sh`` installs them.

In pytest fixtures a missing binary must fail the test with the install hint, never error or
skip: :func:`started_or_fail` wraps a starter so (``start_redis = started_or_fail(redis_server)``)
and :func:`found_or_fail` a binary look-up; pytest is imported only when one fails.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import json
import os
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, ParamSpec, TypeVar

from mclease_core.testing import (
    LOOPBACK,
    MissingServerBinaryError,
    ServerProcess,
    find_server_binary,
    free_port,
    server_or_fail,
)

from . import REPO_ROOT

__all__ = [
    "FAKE_GCS_BUCKET",
    "etcd_cluster",
    "etcd_leader",
    "etcd_server",
    "fake_gcs_server",
    "fake_gcs_server_binary",
    "found_or_fail",
    "redis_server",
    "started_or_fail",
]

FAKE_GCS_BUCKET = "mclease-test"
"""The bucket :func:`fake_gcs_server` creates."""
INSTALL_HINT = "run hack/test-servers.sh"

_P = ParamSpec("_P")
_T = TypeVar("_T")
ServerStarter = Callable[_P, contextlib.AbstractContextManager[ServerProcess]]


def started_or_fail(starter: ServerStarter[_P]) -> ServerStarter[_P]:
    """``starter`` (:func:`redis_server`, say) whose servers fail the pytest test with the
    install hint when the binary is missing (:func:`mclease_core.testing.server_or_fail`)."""

    @functools.wraps(starter)
    def start(
        *args: _P.args, **kwargs: _P.kwargs
    ) -> contextlib.AbstractContextManager[ServerProcess]:
        return server_or_fail(starter(*args, **kwargs))

    return start


def found_or_fail(find: Callable[[], _T]) -> _T:
    """What ``find`` (a binary look-up) returns; a missing binary fails the pytest test."""
    try:
        return find()
    except MissingServerBinaryError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    import pytest  # only fixtures call this; the module itself needs no pytest

    pytest.fail(message, pytrace=False)


@contextlib.contextmanager
def redis_server(*extra: str) -> Iterator[ServerProcess]:
    """A ``redis-server`` on loopback and a free port, persisting nothing; ``extra`` arguments
    are appended to its command line."""
    binary = find_server_binary("redis-server", hint=f"{INSTALL_HINT} (apt redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mclease-redis-") as data:
        command = [
            binary,
            "--bind",
            LOOPBACK,
            "--port",
            str(port),
            "--dir",
            data,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            *extra,
        ]
        with ServerProcess(command, port=port, name="redis-server") as server:
            yield server


@contextlib.contextmanager
def etcd_server(
    *extra: str, scheme: str = "http", ready: Callable[[int], bool] | None = None
) -> Iterator[ServerProcess]:
    """A single-member ``etcd`` on loopback and free ports, its data in a temporary folder kept
    across :meth:`ServerProcess.stop` and :meth:`ServerProcess.start`.

    It is ready when ``ready(port)`` is true; by default when ``GET /health`` says so (which needs
    ``scheme="http"``: pass a probe of your own for TLS).
    """
    binary = find_server_binary("etcd", hint=f"{INSTALL_HINT} (apt etcd-server)")
    port, peer = free_port(), free_port()
    probe = ready or _etcd_healthy
    with tempfile.TemporaryDirectory(prefix="mclease-etcd-") as data:
        command = [
            binary,
            "--name",
            "test",
            "--data-dir",
            data,
            "--listen-client-urls",
            f"{scheme}://{LOOPBACK}:{port}",
            "--advertise-client-urls",
            f"{scheme}://{LOOPBACK}:{port}",
            "--listen-peer-urls",
            f"http://{LOOPBACK}:{peer}",
            "--initial-advertise-peer-urls",
            f"http://{LOOPBACK}:{peer}",
            "--initial-cluster",
            f"test=http://{LOOPBACK}:{peer}",
            "--logger",
            "zap",
            "--log-level",
            "error",
            *extra,
        ]
        with ServerProcess(command, port=port, name="etcd", ready=lambda: probe(port)) as server:
            yield server


@contextlib.contextmanager
def etcd_cluster(members: int = 3) -> Iterator[list[ServerProcess]]:
    """``members`` etcd members forming one cluster on loopback, each with its data kept across
    :meth:`ServerProcess.kill` and :meth:`ServerProcess.start` (a member killed and restarted
    rejoins). Members start side by side: none is ready before a quorum is up."""
    binary = find_server_binary("etcd", hint=f"{INSTALL_HINT} (apt etcd-server)")
    ports = [(free_port(), free_port()) for _ in range(members)]
    initial = ",".join(f"m{i}=http://{LOOPBACK}:{peer}" for i, (_, peer) in enumerate(ports))
    with contextlib.ExitStack() as stack:
        servers = []
        for i, (port, peer) in enumerate(ports):
            data = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"mclease-etcd-m{i}-"))
            command = [
                binary,
                *("--name", f"m{i}", "--data-dir", data),
                *("--listen-client-urls", f"http://{LOOPBACK}:{port}"),
                *("--advertise-client-urls", f"http://{LOOPBACK}:{port}"),
                *("--listen-peer-urls", f"http://{LOOPBACK}:{peer}"),
                *("--initial-advertise-peer-urls", f"http://{LOOPBACK}:{peer}"),
                *("--initial-cluster", initial, "--initial-cluster-state", "new"),
                *("--initial-cluster-token", f"mclease-{ports[0][0]}"),
                *("--logger", "zap", "--log-level", "error"),
            ]
            servers.append(
                ServerProcess(
                    command,
                    port=port,
                    name=f"etcd-m{i}",
                    ready=functools.partial(_etcd_healthy, port),
                )
            )
        for server in servers:
            stack.callback(server.close)
        with concurrent.futures.ThreadPoolExecutor(members) as pool:
            for started in [pool.submit(server.start) for server in servers]:
                started.result()
        yield servers


def etcd_leader(members: list[ServerProcess]) -> ServerProcess | None:
    """The member that is the raft leader now (by its own ``/v3/maintenance/status``)."""
    for member in members:
        if not member.running:
            continue
        try:
            request = urllib.request.Request(
                f"http://{member.address}/v3/maintenance/status", data=b"{}", method="POST"
            )
            with urllib.request.urlopen(request, timeout=2) as answer:  # noqa: S310 - http:// on loopback
                status = json.load(answer)
        except (OSError, ValueError):
            continue
        if status.get("leader") and status.get("leader") == status["header"].get("member_id"):
            return member
    return None


def _etcd_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/health", timeout=1) as answer:
            return bool(json.load(answer).get("health") == "true")
    except (OSError, ValueError):
        return False


def fake_gcs_server_binary() -> str:
    """The fake-gcs-server to test with: ``$MCLEASE_FAKE_GCS_SERVER``, else the one
    ``hack/fake-gcs-server.sh`` built into this checkout's cache, else ``PATH``."""
    candidates: list[str | Path] = []
    if os.environ.get("MCLEASE_FAKE_GCS_SERVER"):
        candidates.append(os.environ["MCLEASE_FAKE_GCS_SERVER"])
    script = REPO_ROOT / "hack" / "fake-gcs-server.sh"
    if script.is_file():
        found = subprocess.run(
            ["bash", str(script), "--path"], capture_output=True, text=True, check=False
        )
        candidates.append(found.stdout.strip())
    return find_server_binary(
        "fake-gcs-server",
        candidates=[c for c in candidates if c],
        hint=f"{INSTALL_HINT} (it builds fake-gcs-server from the Go module proxy), "
        "or set MCLEASE_FAKE_GCS_SERVER",
    )


@contextlib.contextmanager
def fake_gcs_server(binary: str | None = None) -> Iterator[ServerProcess]:
    """A ``fake-gcs-server`` (memory backend, plain HTTP) on loopback and a free port, with the
    empty bucket :data:`FAKE_GCS_BUCKET` (recreated empty by every start)."""
    binary = binary or fake_gcs_server_binary()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mclease-gcs-") as data:
        (Path(data) / FAKE_GCS_BUCKET).mkdir()
        command = [
            binary,
            "-backend",
            "memory",
            "-scheme",
            "http",
            "-host",
            LOOPBACK,
            "-port",
            str(port),
            "-public-host",
            f"{LOOPBACK}:{port}",
            "-external-url",
            f"http://{LOOPBACK}:{port}",
            "-data",
            data,
            "-log-level",
            "error",
        ]
        with ServerProcess(command, port=port, name="fake-gcs-server") as server:
            yield server
