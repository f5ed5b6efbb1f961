"""Plumbing of ``bench/controller.py``: child processes, a lease watcher, metrics, /proc samples.

For: starting ``mclease controller`` and benchmark candidates as children that die with the
benchmark (own session, ``PR_SET_PDEATHSIG``), scraping the controller's Prometheus endpoint,
recording every MultiClusterLease change of a namespace with the moment it arrived, and reading
a process's CPU time and memory from ``/proc``. Measures nothing by itself.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch

from mclease_core.kube._resource import GROUP, PLURAL, VERSION
from mclease_core.testing import free_port, preexec_dying_with_parent

ROOT = Path(__file__).resolve().parent.parent
CANDIDATE = Path(__file__).with_name("_candidate.py")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class Child:
    """A child process in its own session, its output in ``log_path``."""

    started: ClassVar[list[Child]] = []
    """Every child any benchmark started (to check that none outlives the run)."""

    def __init__(self, name: str, argv: list[str], log_path: Path):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("KUBECONFIG", None)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env,
                preexec_fn=preexec_dying_with_parent(own_session=True),
            )
        Child.started.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was not started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, signum: int) -> float:
        """Send ``signum`` to the child's session; return the monotonic time it was sent."""
        sent = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)
        return sent

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; reap; kill what is left of its session."""
        popen = self.popen
        if popen is None:
            return None
        if popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        return popen.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class ControllerChild(Child):
    """``python -m mclease_core._cli controller`` for one cluster and one namespace."""

    def __init__(
        self,
        cluster: str,
        kubeconfig: Path,
        storage_url: str,
        namespace: str,
        workdir: Path,
        *,
        retry_period: float,
        workers: int = 4,
    ):
        self.metrics_port = free_port()
        self.health_port = free_port()
        name = f"controller-{cluster}-{namespace}"
        argv = [
            sys.executable, "-m", "mclease_core._cli", "controller",
            "--cluster-name", cluster,
            "--storage", storage_url,
            "--kubeconfig", str(kubeconfig),
            "--namespace", namespace,
            "--retry-period", str(retry_period),
            "--workers", str(workers),
            "--metrics-bind-address", f"127.0.0.1:{self.metrics_port}",
            "--health-probe-bind-address", f"127.0.0.1:{self.health_port}",
        ]  # fmt: skip
        super().__init__(name, argv, workdir / f"{name}.log")

    def _get(self, port: int, path: str) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
                return str(answer.read().decode())
        except (OSError, urllib.error.URLError):
            return None

    def wait_ready(self, timeout: float = 30.0) -> ControllerChild:
        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited; its log:\n{self.log_tail()}")
            return self._get(self.health_port, "/readyz") is not None

        wait_for(ready, timeout, f"{self.name} to be ready", interval=0.05)
        return self

    def metrics(self) -> dict[str, float]:
        """The Prometheus text as ``{'name{labels}': value}``."""
        text = self._get(self.metrics_port, "/metrics")
        if text is None:
            raise RuntimeError(f"{self.name}: metrics endpoint did not answer")
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values


def storage_ops(metrics: dict[str, float]) -> dict[str, float]:
    """Global store operations by kind, and reconciles, from a scrape."""
    ops = {
        op: metrics.get(f'mclease_storage_operation_seconds_count{{operation="{op}"}}', 0.0)
        for op in ("read", "create", "update", "delete")
    }
    ctl = '{controller="multiclusterlease"}'
    queue = '{controller="multiclusterlease",name="multiclusterlease"}'
    ops["reconciles"] = metrics.get(f"controller_runtime_reconcile_time_seconds_count{ctl}", 0.0)
    ops["reconcile_seconds"] = metrics.get(
        f"controller_runtime_reconcile_time_seconds_sum{ctl}", 0.0
    )
    ops["lag_seconds"] = metrics.get(f"workqueue_queue_duration_seconds_sum{queue}", 0.0)
    ops["lags"] = metrics.get(f"workqueue_queue_duration_seconds_count{queue}", 0.0)
    ops["errors"] = metrics.get(f"controller_runtime_reconcile_errors_total{ctl}", 0.0)
    return ops


def difference(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before.get(key, 0.0) for key in after}


class CandidateChild(Child):
    """``bench/_candidate.py`` and what it recorded."""

    def __init__(
        self,
        cluster: str,
        kubeconfig: Path,
        namespace: str,
        name: str,
        identity: str,
        workdir: Path,
        timing: tuple[int, int, int],
    ):
        self.cluster = cluster
        self.identity = identity
        self.events_path = workdir / f"candidate-{cluster}-{identity}-{namespace}.events"
        argv = [
            sys.executable, str(CANDIDATE),
            "--kubeconfig", str(kubeconfig),
            "--namespace", namespace,
            "--name", name,
            "--identity", identity,
            "--events", str(self.events_path),
            "--lease-duration", str(timing[0]),
            "--renew-deadline", str(timing[1]),
            "--retry-period", str(timing[2]),
        ]  # fmt: skip
        label = f"candidate-{cluster}-{identity}-{namespace}"
        super().__init__(label, argv, workdir / f"{label}.log")

    def lines(self) -> list[list[str]]:
        try:
            return [line.split() for line in self.events_path.read_text().splitlines() if line]
        except FileNotFoundError:
            return []

    def first(self, kind: str, after: float = 0.0) -> float | None:
        return next(
            (float(f[1]) for f in self.lines() if f[0] == kind and float(f[1]) > after), None
        )

    def calls(self) -> list[tuple[float, float, bool, str]]:
        return [
            (float(f[1]), float(f[2]), f[3] == "1", f[4])
            for f in self.lines()
            if f[0] == "call" and len(f) == 5
        ]

    def leading(self) -> bool:
        """Started more recently than stopped."""
        started = [float(f[1]) for f in self.lines() if f[0] == "started"]
        stopped = [float(f[1]) for f in self.lines() if f[0] == "stopped"]
        return bool(started) and (not stopped or max(started) > max(stopped))


class LeaseWatch:
    """Records every MultiClusterLease of a namespace as it arrives: ``(monotonic time, obj)``.

    ``on_event(obj, arrived)`` (optional) runs in the watch thread for each object.
    """

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        on_event: Callable[[dict[str, Any], float], None] | None = None,
    ):
        self.api = k8s.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.on_event = on_event
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{namespace}", daemon=True)
        self.errors = 0

    def start(self) -> LeaseWatch:
        self._thread.start()
        if not self._ready.wait(15):
            raise TimeoutError(f"the watch of {self.namespace} did not start")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _record(self, obj: dict[str, Any]) -> None:
        arrived = time.monotonic()
        if self.on_event is not None:
            self.on_event(obj, arrived)
        else:
            self.seen.append((arrived, obj))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                listing = self.api.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, _request_timeout=30
                )
                for obj in listing.get("items", []):
                    self._record(obj)
                version = listing["metadata"]["resourceVersion"]
                self._ready.set()
                stream = k8s_watch.Watch()
                while not self._stop.is_set():
                    for event in stream.stream(
                        self.api.list_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        self.namespace,
                        PLURAL,
                        resource_version=version,
                        timeout_seconds=2,
                        allow_watch_bookmarks=True,
                    ):
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            raise RuntimeError(f"watch error: {obj}")
                        version = obj["metadata"]["resourceVersion"]
                        if event["type"] in ("ADDED", "MODIFIED"):
                            self._record(obj)
                        if self._stop.is_set():
                            stream.stop()
                            break
            except Exception:
                self.errors += 1
                self._stop.wait(0.2)


def status_of(obj: dict[str, Any]) -> tuple[int, str, int]:
    """``(generation, globalHolderIdentity, status.observedGeneration)`` of an object."""
    status = obj.get("status") or {}
    return (
        int(obj["metadata"].get("generation") or 0),
        str(status.get("globalHolderIdentity") or ""),
        int(status.get("observedGeneration") or 0),
    )


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of ``pid`` in clock ticks (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def memory_mib(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of ``pid`` in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


class CpuWindow:
    """CPU used by some processes between :meth:`__init__` and :meth:`percent` (% of one core)."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.started = time.monotonic()
        self.ticks = {pid: cpu_ticks(pid) for pid in pids}
        self.own = os.times()

    def percent(self) -> tuple[dict[int, float], float]:
        """Per pid, and this process (the load driver)."""
        elapsed = time.monotonic() - self.started
        each = {
            pid: 100 * (cpu_ticks(pid) - ticks) / CLOCK_TICKS / elapsed
            for pid, ticks in self.ticks.items()
        }
        now = os.times()
        own = (now.user + now.system) - (self.own.user + self.own.system)
        return each, 100 * own / elapsed
