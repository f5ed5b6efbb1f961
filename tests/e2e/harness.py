"""The moving parts of the end-to-end tests and the multi-cluster demo, without pytest.

For: preparing real clusters of the test bed (``tests/kube/testbed.py``) for mclease (the CRD, the
controller's RBAC from ``config/rbac/``, a candidate service account per namespace), starting
and stopping election controller and candidate processes, and reading what the candidates
recorded: leadership intervals from their heartbeat files (``tests/e2e/candidate.py``) and the
timing of their lock calls. ``tests/e2e/conftest.py`` wraps this in fixtures;
``demo/multicluster_demo.py`` uses it directly.

Every process is started in its own session with ``PR_SET_PDEATHSIG`` (it dies with the process
that started it) and is stopped with SIGTERM, then SIGKILL; :class:`ProcessGroup` stops all it
started.

Not for: assertions about the product (the tests make those) or starting the API servers (the
test bed does that).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from mclease_core._crd import CRD_NAME, crd_manifest
from mclease_core.kube._resource import GROUP, PLURAL, VERSION, LeaseView
from mclease_core.testing import free_port, preexec_dying_with_parent
from tests.kube.testbed import REPO_ROOT, KubeCluster, apply_manifest, wait_crd_established

CANDIDATE_SCRIPT = Path(__file__).with_name("candidate.py")
RBAC_DIR = REPO_ROOT / "config" / "rbac"
CONTROLLER_NAMESPACE = "mclease-system"
CONTROLLER_ACCOUNT = "mclease-controller"
CANDIDATE_ACCOUNT = "app"
LEASE_NAME = "singleton"

LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 6, 2, 1
"""The candidates' timings D, R, P (integers: the standard elector's Config wants them).

D=6 keeps the crash-failover bound D + 2P at 8 s. The lock refuses R=3 with D=6 and P=1 (it needs
2C + 2P + R + margin <= D with C >= 0.25 s); R=2 leaves the lock's call bound C at 0.7 s, ten
times the confirmation latency measured here, and still gives a leader a second renewal try."""
CONTROLLER_RETRY_PERIOD = 0.5
"""How often a controller reconciles a lease without a change (reads the global record)."""
HEARTBEAT_FRESH = 0.15
"""A candidate whose last heartbeat is younger than this is leading now (beats every 20 ms)."""

_T = TypeVar("_T")


def wait_for(
    predicate: Callable[[], _T | None], *, timeout: float, message: str, interval: float = 0.02
) -> _T:
    """Poll ``predicate`` until it returns a true value; :class:`TimeoutError` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {message}")
        time.sleep(interval)


# ----- clusters ---------------------------------------------------------------------------------


def prepare_cluster(cluster: KubeCluster) -> Path:
    """Install the CRD and the controller's RBAC; return the controller's kubeconfig.

    The controller runs as ``system:serviceaccount:mclease-system:mclease-controller`` with the
    roles of ``config/rbac/`` (rendered by kustomize), as it would in a real cluster.
    """
    apply_manifest(cluster, crd_manifest())
    wait_crd_established(cluster, CRD_NAME)
    cluster.ensure_namespace(CONTROLLER_NAMESPACE)
    apply_manifest(cluster, cluster.kubectl("kustomize", str(RBAC_DIR)).stdout)
    return cluster.kubeconfig_for_service_account(CONTROLLER_NAMESPACE, CONTROLLER_ACCOUNT)


def new_namespace_name(prefix: str = "e2e") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def prepare_namespace(cluster: KubeCluster, namespace: str) -> Path:
    """Create ``namespace`` with a candidate service account bound to ``mclease-candidate``;
    return the candidate's kubeconfig (it may write lease specs, not their status)."""
    cluster.ensure_namespace(namespace)
    rbac = k8s.RbacAuthorizationV1Api(cluster.api_client())
    binding = k8s.V1RoleBinding(
        metadata=k8s.V1ObjectMeta(name="app-mclease-candidate", namespace=namespace),
        role_ref=k8s.V1RoleRef(
            api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="mclease-candidate"
        ),
        subjects=[
            k8s.RbacV1Subject(kind="ServiceAccount", name=CANDIDATE_ACCOUNT, namespace=namespace)
        ],
    )
    with contextlib.suppress(ApiException):
        rbac.create_namespaced_role_binding(namespace, binding)
    return cluster.kubeconfig_for_service_account(namespace, CANDIDATE_ACCOUNT)


@dataclasses.dataclass
class Site:
    """One cluster as one test uses it: its namespace and the two identities' kubeconfigs."""

    cluster: KubeCluster
    namespace: str
    controller_kubeconfig: Path
    candidate_kubeconfig: Path
    _api: k8s.CustomObjectsApi | None = None

    @property
    def name(self) -> str:
        return self.cluster.name

    @property
    def custom(self) -> k8s.CustomObjectsApi:
        if self._api is None:
            self._api = k8s.CustomObjectsApi(self.cluster.api_client())
        return self._api

    def lease(self, name: str = LEASE_NAME) -> dict[str, Any] | None:
        """The MultiClusterLease object as admin reads it, or ``None`` when it does not exist."""
        try:
            obj = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, _request_timeout=5
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        assert isinstance(obj, dict)
        return obj

    def view(self, name: str = LEASE_NAME) -> LeaseView | None:
        obj = self.lease(name)
        return None if obj is None else LeaseView.from_object(obj)


# ----- processes --------------------------------------------------------------------------------


class ManagedProcess:
    """A child process with its own session and log file."""

    STOP_TIMEOUT = 10.0

    def __init__(self, name: str, argv: Sequence[str], log_path: Path):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env: dict[str, str] | None = None
        """The whole environment to run with; default: this one, with the repository on
        PYTHONPATH and no KUBECONFIG."""
        self.cwd: Path = REPO_ROOT
        self.popen: subprocess.Popen[bytes] | None = None
        self.killed_at: float | None = None
        """Monotonic time of the SIGKILL sent by :meth:`kill`."""

    def start(self) -> None:
        env = self.env
        if env is None:
            env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
            env.pop("KUBECONFIG", None)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=env,
                preexec_fn=preexec_dying_with_parent(own_session=True),
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was not started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> float:
        """SIGKILL (a crash: no handler runs); returns the monotonic time it was sent."""
        assert self.popen is not None, f"{self.name} was not started"
        self.killed_at = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(self.STOP_TIMEOUT)
        return self.killed_at

    def terminate(self, timeout: float | None = None) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; returns the exit code."""
        popen = self.popen
        if popen is None:
            return None
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(self.STOP_TIMEOUT if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(self.STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):  # anything left in its session
            os.killpg(popen.pid, signal.SIGKILL)
        return popen.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def __repr__(self) -> str:
        pid = self.popen.pid if self.popen else None
        return f"<{type(self).__name__} {self.name} pid={pid}>"


def probe(port: int, path: str) -> bool:
    """A kubelet-style HTTP probe of ``127.0.0.1:port``: true on 200, false otherwise."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


class ControllerProcess(ManagedProcess):
    """``mclease controller`` for one cluster, watching one namespace."""

    def __init__(
        self,
        site: Site,
        storage_url: str,
        workdir: Path,
        *,
        tag: str = "",
        extra_args: Sequence[str] = (),
    ):
        self.site = site
        self.health_port = free_port()
        name = f"controller-{site.name}{tag}"
        argv = [
            sys.executable, "-m", "mclease_core._cli", "controller",
            "--cluster-name", site.name,
            "--storage", storage_url,
            "--kubeconfig", str(site.controller_kubeconfig),
            "--namespace", site.namespace,
            "--retry-period", str(CONTROLLER_RETRY_PERIOD),
            "--metrics-bind-address", "0",
            "--health-probe-bind-address", f"127.0.0.1:{self.health_port}",
            *extra_args,
        ]  # fmt: skip
        super().__init__(name, argv, workdir / f"{name}.log")

    def ready(self) -> bool:
        return probe(self.health_port, "/readyz")

    def wait_ready(self, timeout: float = 30.0) -> None:
        def check() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited; its log:\n{self.log_tail()}")
            return self.ready()

        wait_for(check, timeout=timeout, message=f"{self.name} to be ready", interval=0.05)


@dataclasses.dataclass(frozen=True)
class Interval:
    """One leadership term of one candidate: the span of its heartbeats."""

    candidate: str
    term: int
    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclasses.dataclass(frozen=True)
class LockCall:
    """One create/update of the candidate's lock: when it started and ended, and its answer."""

    start: float
    end: float
    ok: bool
    kind: str


class CandidateProcess(ManagedProcess):
    """``tests/e2e/candidate.py``: the standard elector with our lock, campaigning forever."""

    def __init__(
        self,
        site: Site,
        identity: str,
        workdir: Path,
        *,
        label: str | None = None,
        lease_name: str = LEASE_NAME,
        program: Sequence[str] = (sys.executable, str(CANDIDATE_SCRIPT)),
    ):
        self.site = site
        self.identity = identity
        self.label = label or f"{site.name}/{identity}"
        safe = self.label.replace("/", "-")
        self.heartbeats = workdir / f"{safe}.beats"
        self.events = workdir / f"{safe}.events"
        argv = [
            *program,
            "--kubeconfig", str(site.candidate_kubeconfig),
            "--namespace", site.namespace,
            "--name", lease_name,
            "--identity", identity,
            "--heartbeats", str(self.heartbeats),
            "--events", str(self.events),
            "--lease-duration", str(LEASE_DURATION),
            "--renew-deadline", str(RENEW_DEADLINE),
            "--retry-period", str(RETRY_PERIOD),
        ]  # fmt: skip
        super().__init__(f"candidate-{safe}", argv, workdir / f"candidate-{safe}.log")

    # -- what it recorded --

    def beats(self) -> list[tuple[float, int]]:
        """Every complete heartbeat line: ``(monotonic time, term)``."""
        try:
            text = self.heartbeats.read_text()
        except FileNotFoundError:
            return []
        rows = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == self.identity:
                rows.append((float(parts[0]), int(parts[2])))
        return rows

    def intervals(self) -> list[Interval]:
        terms: dict[int, list[float]] = {}
        for moment, term in self.beats():
            terms.setdefault(term, []).append(moment)
        return [
            Interval(self.label, term, min(times), max(times))
            for term, times in sorted(terms.items())
        ]

    def last_beat(self) -> float | None:
        beats = self.beats()
        return beats[-1][0] if beats else None

    def leading(self) -> bool:
        """Heartbeats right now (its last one is younger than :data:`HEARTBEAT_FRESH`)."""
        last = self.last_beat()
        return last is not None and time.monotonic() - last < HEARTBEAT_FRESH

    def first_beat_after(self, moment: float) -> float | None:
        return next((t for t, _ in self.beats() if t > moment), None)

    def event_lines(self) -> list[list[str]]:
        try:
            return [line.split() for line in self.events.read_text().splitlines() if line]
        except FileNotFoundError:
            return []

    def calls(self) -> list[LockCall]:
        return [
            LockCall(float(f[1]), float(f[2]), f[3] == "1", f[4])
            for f in self.event_lines()
            if f[0] == "call" and len(f) == 5
        ]

    def confirmations(self) -> list[LockCall]:
        """The create/update calls that returned True: the controller confirmed the signal."""
        return [c for c in self.calls() if c.ok and c.kind in ("create", "update")]


class ProcessGroup:
    """Every controller and candidate one test (or the demo) started; :meth:`stop_all` ends them."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.processes: list[ManagedProcess] = []

    def controller(
        self, site: Site, storage_url: str, *, wait: bool = True, extra_args: Sequence[str] = ()
    ) -> ControllerProcess:
        tag = (
            ""
            if not any(isinstance(p, ControllerProcess) and p.site is site for p in self.processes)
            else f"-{len(self.processes)}"
        )
        process = ControllerProcess(site, storage_url, self.workdir, tag=tag, extra_args=extra_args)
        self.processes.append(process)
        process.start()
        if wait:
            process.wait_ready()
        return process

    def go_candidate(self, site: Site, identity: str, **kwargs: Any) -> CandidateProcess:
        """The Go candidate (client-go's elector, tests/e2e/gocandidate) instead of the Python
        one; same flags, same records."""
        return self.candidate(site, identity, program=(str(go_candidate_binary()),), **kwargs)

    def candidate(self, site: Site, identity: str, **kwargs: Any) -> CandidateProcess:
        process = CandidateProcess(site, identity, self.workdir, **kwargs)
        self.processes.append(process)
        process.start()
        return process

    def stop_all(self, grace: float = 3.0) -> None:
        """SIGTERM every process still running (side by side), SIGKILL what outlives ``grace``.

        A graceful controller stop takes about 6 s (its watch thread is joined with a timeout);
        the tests need no graceful stop at the end, so the grace is short.
        """
        running = [p for p in self.processes if p.alive()]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in running:
            process.terminate(timeout=max(0.0, deadline - time.monotonic()))
        for process in self.processes:  # also reap (and kill the sessions of) exited ones
            process.terminate()

    def logs(self) -> str:
        return "\n\n".join(
            f"--- {p.name} ({p.log_path}) ---\n{p.log_tail()}" for p in self.processes
        )


# ----- judging leadership -----------------------------------------------------------------------


def all_intervals(candidates: Iterable[CandidateProcess]) -> list[Interval]:
    return sorted((i for c in candidates for i in c.intervals()), key=lambda i: (i.start, i.end))


def overlaps(intervals: Sequence[Interval]) -> list[tuple[Interval, Interval]]:
    """Pairs of intervals of different candidates that share a moment (end >= other's start)."""
    ordered = sorted(intervals, key=lambda i: i.start)
    found = []
    for index, first in enumerate(ordered):
        for second in ordered[index + 1 :]:
            if second.start > first.end:
                break
            if second.candidate != first.candidate:
                found.append((first, second))
    return found


def leaders_now(candidates: Iterable[CandidateProcess]) -> list[CandidateProcess]:
    return [c for c in candidates if c.leading()]


def wait_for_leader(
    candidates: Sequence[CandidateProcess], *, timeout: float, after: float = 0.0
) -> tuple[CandidateProcess, float]:
    """The first candidate to heartbeat after ``after``, and its first heartbeat after it."""

    def first() -> tuple[CandidateProcess, float] | None:
        for candidate in candidates:
            if candidate.popen is not None and candidate.popen.poll() is not None:
                raise RuntimeError(
                    f"{candidate.name} exited (code {candidate.popen.returncode}); its log:\n"
                    f"{candidate.log_tail()}"
                )
        found = [(c, c.first_beat_after(after)) for c in candidates]
        started = [(c, t) for c, t in found if t is not None]
        return min(started, key=lambda pair: pair[1]) if started else None

    return wait_for(first, timeout=timeout, message="a candidate to lead", interval=0.02)


def describe(intervals: Sequence[Interval], origin: float) -> str:
    return "\n".join(
        f"  {i.candidate:<14} term {i.term}: {i.start - origin:7.2f}s .. {i.end - origin:7.2f}s"
        for i in intervals
    )


def go_candidate_binary() -> Path:
    """The built Go candidate; ``hack/go-candidate.sh`` (run by ``make test``) builds it."""
    script = REPO_ROOT / "hack" / "go-candidate.sh"
    path = Path(
        subprocess.run(
            [str(script), "--print-path"], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    if not path.is_file():
        raise FileNotFoundError(
            f"the Go candidate is not built ({path}); run hack/go-candidate.sh (make test does)"
        )
    return path


def go_confirmation_bound() -> float:
    """The Go candidate's call bound: client-go acts until P + R after its last confirmed call
    returned, so ``C + P + R + margin <= D``."""
    from mclease_core._decisions import safety_margin

    return LEASE_DURATION - RENEW_DEADLINE - RETRY_PERIOD - safety_margin(LEASE_DURATION)


def confirmation_bound() -> float:
    """The lock's bound C on one call for the candidates' timings."""
    from mclease_core._decisions import LeaseTiming
    from mclease_core.kube._lock import confirmation_bound as bound

    return bound(LeaseTiming(LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD))
