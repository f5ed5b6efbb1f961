"""mclease on several clusters of the test bed: the CRD, the RBAC, controllers and candidates.

For: preparing real clusters of the test bed (:mod:`mclease_dev.kube`) for mclease (the CRD, the
controller's RBAC from ``config/rbac/``, a candidate service account per namespace), starting
and stopping election controller and recording candidate (:mod:`mclease_dev.candidate`)
processes, and judging what the candidates recorded (:mod:`mclease_dev.records`): leadership
intervals, overlaps, the timing of their lock calls. ``tests/e2e/conftest.py`` wraps this in
fixtures; ``tests/deploy``, ``demo/multicluster_demo.py`` and the controller benchmarks use it
directly.

Every process is a :class:`~mclease_dev.processes.ManagedProcess` (own session, dies with its
parent, SIGTERM then SIGKILL); :class:`ProcessGroup` stops all it started.

Not for: assertions about the product (the tests make those) or starting the API servers (the
test bed does that).
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from mclease_core._crd import CRD_NAME, crd_manifest
from mclease_core.kube._resource import GROUP, PLURAL, VERSION, LeaseView
from mclease_core.testing import free_port, wait_until

from . import REPO_ROOT
from .kube import KubeCluster, apply_manifest, wait_crd_established
from .processes import ManagedProcess, http_get, mclease_command, probe
from .records import HEARTBEAT_FRESH, CandidateRecords, Interval, LockCall

__all__ = [
    "CANDIDATE_ACCOUNT",
    "CANDIDATE_SCRIPT",
    "CONTROLLER_ACCOUNT",
    "CONTROLLER_NAMESPACE",
    "CONTROLLER_RETRY_PERIOD",
    "HEARTBEAT_FRESH",
    "LEASE_DURATION",
    "LEASE_NAME",
    "RENEW_DEADLINE",
    "RETRY_PERIOD",
    "CandidateProcess",
    "ControllerProcess",
    "Interval",
    "LockCall",
    "ProcessGroup",
    "Site",
    "all_intervals",
    "confirmation_bound",
    "describe",
    "go_candidate_binary",
    "go_confirmation_bound",
    "leaders_now",
    "new_namespace_name",
    "overlaps",
    "prepare_cluster",
    "prepare_namespace",
    "probe",
    "wait_for_leader",
]

CANDIDATE_SCRIPT = Path(__file__).with_name("candidate.py")
"""The recording candidate as a script, for an interpreter without this harness installed."""
CANDIDATE_PROGRAM = (sys.executable, "-m", "mclease_dev.candidate")
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


class ControllerProcess(ManagedProcess):
    """``mclease controller`` for one cluster, watching one namespace."""

    def __init__(
        self,
        site: Site,
        storage_url: str,
        workdir: Path,
        *,
        tag: str = "",
        retry_period: float = CONTROLLER_RETRY_PERIOD,
        metrics: bool = False,
        extra_args: Sequence[str] = (),
    ):
        self.site = site
        self.health_port = free_port()
        self.metrics_port: int | None = free_port() if metrics else None
        """Where ``/metrics`` is served (``None``: not served)."""
        name = f"controller-{site.name}{tag}"
        metrics_address = "0" if self.metrics_port is None else f"127.0.0.1:{self.metrics_port}"
        argv = mclease_command(
            "controller",
            *("--cluster-name", site.name),
            *("--storage", storage_url),
            *("--kubeconfig", str(site.controller_kubeconfig)),
            *("--namespace", site.namespace),
            *("--retry-period", str(retry_period)),
            *("--metrics-bind-address", metrics_address),
            *("--health-probe-bind-address", f"127.0.0.1:{self.health_port}"),
            *extra_args,
        )
        super().__init__(name, argv, workdir / f"{name}.log")

    def ready(self) -> bool:
        return probe(self.health_port, "/readyz")

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_until(self.ready, timeout=timeout, message=f"{self.name} to be ready")

    def metrics(self) -> dict[str, float]:
        """The Prometheus text of ``/metrics`` as ``{'name{labels}': value}``."""
        assert self.metrics_port is not None, f"{self.name} serves no metrics"
        status, text = http_get(self.metrics_port, "/metrics")
        if status != 200:
            raise RuntimeError(f"{self.name}: the metrics endpoint answered {status}")
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values


class CandidateProcess(ManagedProcess, CandidateRecords):
    """The recording candidate (:mod:`mclease_dev.candidate`) in one site, campaigning forever;
    what it recorded is read with the :class:`~mclease_dev.records.CandidateRecords` methods.

    ``timing`` is (D, R, P), default the module's; ``heartbeats=False`` runs it without a
    heartbeat file (then :meth:`in_term` tells whether it leads); ``program`` is the command
    that runs it (another interpreter, the Go candidate); ``env`` its whole environment
    (default: :class:`~mclease_dev.processes.ManagedProcess`'s).
    """

    def __init__(
        self,
        site: Site,
        identity: str,
        workdir: Path,
        *,
        label: str | None = None,
        lease_name: str = LEASE_NAME,
        timing: tuple[int, int, int] = (LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD),
        heartbeats: bool = True,
        program: Sequence[str] = CANDIDATE_PROGRAM,
        env: Mapping[str, str] | None = None,
    ):
        self.site = site
        label = label or f"{site.name}/{identity}"
        safe = label.replace("/", "-")
        CandidateRecords.__init__(
            self,
            identity,
            label,
            events=workdir / f"{safe}.events",
            heartbeats=workdir / f"{safe}.beats" if heartbeats else None,
        )
        duration, renew_deadline, retry_period = timing
        argv = [
            *program,
            *("--kubeconfig", str(site.candidate_kubeconfig)),
            *("--namespace", site.namespace),
            *("--name", lease_name),
            *("--identity", identity),
            *(("--heartbeats", str(self.heartbeats)) if self.heartbeats else ()),
            *("--events", str(self.events)),
            *("--lease-duration", str(duration)),
            *("--renew-deadline", str(renew_deadline)),
            *("--retry-period", str(retry_period)),
        ]
        ManagedProcess.__init__(
            self, f"candidate-{safe}", argv, workdir / f"candidate-{safe}.log", env=env
        )


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
            process.signal(signal.SIGTERM)
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
        exited = next((c for c in candidates if c.returncode is not None), None)
        if exited is not None:
            raise exited.exited_error("exited while waiting for a leader")
        found = [(c, c.first_beat_after(after)) for c in candidates]
        started = [(c, t) for c, t in found if t is not None]
        return min(started, key=lambda pair: pair[1]) if started else None

    leader = wait_until(first, timeout=timeout, message="a candidate to lead", interval=0.02)
    assert leader is not None  # wait_until returns only a true value
    return leader


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
