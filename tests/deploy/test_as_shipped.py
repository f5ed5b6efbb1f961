"""The deployment as shipped: the image's install, the rendered manifests, their RBAC and flags.

Two clusters of the test bed (real API servers, with audit logs), one password-protected Redis as
the shared store. In each cluster the user's overlay on ``config/overlays/redis`` is rendered with
kubectl's kustomize and applied; the Deployment's two replicas run exactly the rendered container
(command, args, env from the ConfigMap, the store password from the Secret, the downward API) from
the wheels the Dockerfile installs, as the rendered ServiceAccount (a TokenRequest token, never
admin). Candidates run with the ``mclease-candidate`` ClusterRole bound in their namespace.

Then: one global leader across both clusters; kill -9 of the active replica (the standby takes
over; the killed one comes back as standby and takes over again when the other dies); kill -9 of
the leader (the other cluster's candidate leads); the leases are deleted (the finalizer comes off).
Afterwards: every request each identity sent was allowed, and the roles grant exactly those; the
store password appears in no output, Event or status.

Each bullet of issue 9 fails here without its fix: without the ``[controller]`` extra the install
step's smoke check fails; without ``patch`` on leases the active replica exits at its first renewal;
with the replica Lease outside the pod's namespace the Role refuses it; with the password only in
the URL the Secret-based store refuses the controller; an empty cluster name starts.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from mclease_core._crd import CRD_NAME
from mclease_core.kube._resource import GROUP, PLURAL, VERSION
from mclease_core.testing import ServerProcess, free_port
from mclease_core.testing import wait_until as wait_for
from mclease_dev import multicluster as harness
from mclease_dev.kube import KubeCluster, apply_manifest, find_kubectl, wait_crd_established
from mclease_dev.multicluster import CandidateProcess, wait_for_leader
from mclease_dev.processes import ManagedProcess
from tests.deploy import shipped
from tests.deploy.conftest import STORE_PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.kube]

NAMESPACE = "mclease-system"
CONTROLLER_USER = f"system:serviceaccount:{NAMESPACE}:mclease-controller"
APP_NAMESPACE = "shop"
CANDIDATE_USER = f"system:serviceaccount:{APP_NAMESPACE}:{harness.CANDIDATE_ACCOUNT}"

REPLICA_D, REPLICA_P = 15.0, 2.0
"""The replica election's defaults (--leader-elect-lease-duration, -retry-period): the rendered
Deployment sets neither."""
REPLICA_TAKEOVER = REPLICA_D + REPLICA_P + 3.0
"""Kill -9 of the active replica to the standby holding the Lease: the Lease runs out (at most D
after the last renewal), the standby's next attempt (P), and process start-up and slack."""
CONTROLLER_P = 2.0
"""The controller's default --retry-period."""
D, P = harness.LEASE_DURATION, harness.RETRY_PERIOD
LEADER_TAKEOVER = D + 2 * P + 1.2 * CONTROLLER_P + harness.confirmation_bound() + 1.0
"""Kill -9 of the leader to the other cluster's candidate leading: the global lease runs out (D),
the follower's poll (P) after its own local lease expiry (P), the other controller's jittered read
period, one confirmation, and slack."""


MCL_GROUP = "multicluster.core.cnrm.cloud.google.com"
RARE_GRANTS = {
    (MCL_GROUP, "multiclusterleases", "get"): "the controller reads one lease whose cached copy "
    "it dropped after a conflict or a failed reconcile (tests/kube/test_kube_rbac.py)",
    (MCL_GROUP, "multiclusterleases", "patch"): "upstream gke-labs' Go lock renews with a merge "
    "patch; the candidates here (Python lock) send update",
}
"""Grants the scenario need not exercise, each with the path that needs it. Everything else the
roles grant must be sent, and everything sent must be granted."""


# ----- processes as pods ------------------------------------------------------------------------


class Replica(ManagedProcess):
    """One controller pod: the rendered container, probed like the kubelet probes it."""

    def __init__(self, pod: shipped.Pod, index: int, health_port: int, workdir: Path):
        super().__init__(pod.name, pod.argv, workdir / f"{pod.name}.log")
        self.pod = pod
        self.index = index
        self.health_port = health_port
        self.env = pod.env
        self.cwd = workdir

    def probe(self, path: str) -> bool:
        return harness.probe(self.health_port, path)

    def identity_matches(self, holder: str) -> bool:
        return holder == self.pod.name or holder.endswith(f"_{self.pid}")


class Cluster:
    """One cluster of the test: its rendered manifests, its replicas and its candidate."""

    def __init__(
        self, cluster: KubeCluster, release: shipped.Release, store: ServerProcess, workdir: Path
    ):
        self.cluster = cluster
        self.release = release
        self.workdir = workdir / cluster.name
        self.workdir.mkdir()
        self.documents = shipped.render(
            cluster.assets.kubectl,
            self.workdir,
            base="overlays/redis",
            literals={"CLUSTER_NAME": cluster.name, "STORAGE_URL": f"redis://{store.address}/0"},
            secrets={"password": STORE_PASSWORD},
        )
        self.deployment = shipped.find(self.documents, "Deployment")
        self.replicas: list[Replica] = []
        self.processes: list[ManagedProcess] = []

    @property
    def name(self) -> str:
        return self.cluster.name

    def apply(self) -> None:
        apply_manifest(self.cluster, yaml.safe_dump_all(self.documents))
        wait_crd_established(self.cluster, CRD_NAME)

    def start_replica(self, index: int) -> Replica:
        """Start pod ``index`` of the Deployment (a restarted container keeps its pod's name)."""
        kubeconfig = self.cluster.kubeconfig_for_service_account(
            NAMESPACE,
            self.deployment["spec"]["template"]["spec"]["serviceAccountName"],
            create=False,
        )
        health = free_port()
        pod = shipped.pod_from(
            self.deployment,
            shipped.data_from_cluster(self.cluster, NAMESPACE),
            f"mclease-controller-7c9d5-{index}",
            release=self.release,
            kubeconfig=kubeconfig,
            ports={
                "MCLEASE_METRICS_BIND_ADDRESS": free_port(),
                "MCLEASE_HEALTH_PROBE_BIND_ADDRESS": health,
            },
        )
        replica = Replica(pod, index, health, self.workdir)
        self.replicas.append(replica)
        self.processes.append(replica)
        replica.start()
        return replica

    def candidate(self, identity: str, kubeconfig: Path) -> CandidateProcess:
        site = harness.Site(self.cluster, APP_NAMESPACE, Path("/nonexistent"), kubeconfig)
        process = CandidateProcess(
            site,
            identity,
            self.workdir,
            program=(str(self.release.python), str(harness.CANDIDATE_SCRIPT)),
        )
        process.env = shipped.clean_environment(self.release.bin)
        process.cwd = self.workdir
        self.processes.append(process)
        process.start()
        return process

    def replica_lease(self) -> tuple[str, str] | None:
        """(namespace, holder) of the replica election's Lease, wherever it was written."""
        api = k8s.CoordinationV1Api(self.cluster.api_client())
        for lease in api.list_lease_for_all_namespaces().items:
            if (lease.metadata.name or "").startswith("mclease-controller"):
                return lease.metadata.namespace, lease.spec.holder_identity or ""
        return None

    def active(self) -> Replica | None:
        found = self.replica_lease()
        if found is None:
            return None
        live = [r for r in self.replicas if r.alive() and r.identity_matches(found[1])]
        return live[0] if live else None

    def wait_active(self, timeout: float, *, not_: Replica | None = None) -> Replica:
        def check() -> Replica | None:
            for replica in self.replicas:
                if replica.popen is not None and replica.popen.poll() not in (None, -9):
                    raise AssertionError(
                        f"{self.name}/{replica.name} exited with {replica.popen.returncode}:\n"
                        f"{replica.log_tail()}"
                    )
            active = self.active()
            return active if active is not None and active is not not_ else None

        return wait_for(
            check, timeout=timeout, message=f"an active replica in {self.name}", interval=0.1
        )

    def logs(self) -> str:
        return "\n\n".join(
            f"--- {self.name}/{p.name} ---\n{p.log_tail(60)}" for p in self.processes
        )

    def stop_all(self) -> None:
        for process in self.processes:
            process.terminate(timeout=3)


def wait_healthy(replicas: Iterable[Replica], timeout: float = 30.0) -> None:
    """Wait until every replica answers its liveness and readiness probes, as the kubelet
    would before it counts the pod as up; a replica that exits fails with its log."""

    def probes_pass(replica: Replica) -> bool:
        if not replica.alive():
            raise AssertionError(f"{replica.name} exited:\n{replica.log_tail()}")
        return replica.probe("/healthz") and replica.probe("/readyz")

    for replica in replicas:
        wait_for(
            lambda r=replica: probes_pass(r),  # type: ignore[misc]
            timeout=timeout,
            message=f"{replica.name} healthy and ready",
            interval=0.1,
        )


# ----- the test ---------------------------------------------------------------------------------


def test_two_clusters_as_shipped(
    release: shipped.Release,
    audited_clusters: dict[str, KubeCluster],
    protected_redis: ServerProcess,
    workdir: Path,
) -> None:
    check_release(release)
    clusters = [Cluster(c, release, protected_redis, workdir) for c in audited_clusters.values()]
    try:
        run_scenario(clusters)
        check_requests_match_roles(clusters)
        check_no_password_anywhere(clusters)
    except BaseException:
        print("\n\n".join(c.logs() for c in clusters))
        raise
    finally:
        for c in clusters:
            c.stop_all()


def check_release(release: shipped.Release) -> None:
    """The venv holds wheels only: the packages come from it, not from the repository."""
    where = subprocess.run(
        [str(release.python), "-c", "import mclease_core, sys; print(mclease_core.__file__)"],
        env=shipped.clean_environment(release.bin),
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(release.root)), f"mclease_core imported from {where}"
    names = {wheel.split("-")[0] for wheel in release.wheels}
    assert names == {"mclease_core", "mclease_redis", "mclease_etcd", "mclease_gcs"}, names
    backends = subprocess.run(
        [str(release.bin / "mclease"), "backends", "--json"],
        env=shipped.clean_environment(release.bin),
        capture_output=True,
        text=True,
        check=True,
    )
    schemes = {row["scheme"] for row in json.loads(backends.stdout)}
    assert "example" not in schemes, "the plugin template shipped as a backend"
    assert {"redis", "rediss", "etcd", "etcds", "gs", "sqlite", "memory"} <= schemes


def run_scenario(clusters: Sequence[Cluster]) -> None:
    for c in clusters:
        c.apply()
        replicas = int(c.deployment["spec"]["replicas"])
        assert replicas == 2, "the shipped Deployment runs two replicas"
        for index in range(replicas):
            c.start_replica(index)
    for c in clusters:
        wait_healthy(c.replicas)
        c.wait_active(timeout=30)
        namespace, _ = c.replica_lease() or ("", "")
        assert namespace == NAMESPACE, f"the replica Lease went to {namespace!r}"

    candidates = []
    for c in clusters:
        kubeconfig = harness.prepare_namespace(c.cluster, APP_NAMESPACE)
        candidates.append(c.candidate(f"shop-{c.name}", kubeconfig))
    leader, _ = wait_for_leader(candidates, timeout=60)

    # The active replica of the leader's cluster dies; the standby takes over; the killed pod
    # restarts as standby, and takes over in its turn when the other dies.
    home = next(c for c in clusters if c.cluster is leader.site.cluster)
    for _ in range(2):
        active = home.wait_active(timeout=5)
        killed_at = active.kill()
        successor = home.wait_active(timeout=REPLICA_TAKEOVER + 5, not_=active)
        took = time.monotonic() - killed_at
        print(
            f"{home.name}: kill -9 of the active replica -> standby active in {took:.1f}s "
            f"(bound {REPLICA_TAKEOVER:.0f}s)"
        )
        assert took <= REPLICA_TAKEOVER
        restarted = home.start_replica(active.index)
        home.replicas.remove(active)
        wait_healthy([restarted, successor])
        assert home.active() is successor, "the restarted replica took over from a live one"

    # The leader dies; the other cluster's candidate leads.
    current, _ = wait_for_leader(candidates, timeout=60, after=time.monotonic())
    others = [c for c in candidates if c is not current]
    killed_at = current.kill()
    _, took_over = wait_for_leader(others, timeout=LEADER_TAKEOVER + 10, after=killed_at)
    print(
        f"kill -9 of the leader -> other cluster leads in {took_over - killed_at:.1f}s "
        f"(bound {LEADER_TAKEOVER:.1f}s)"
    )
    assert took_over - killed_at <= LEADER_TAKEOVER
    overlapping = harness.overlaps(harness.all_intervals(candidates))
    assert not overlapping, f"two leaders at once: {overlapping}"

    # Deleting a lease: the active controller takes its finalizer off.
    for candidate in candidates:
        candidate.terminate()
    for c in clusters:
        custom = k8s.CustomObjectsApi(c.cluster.api_client())
        custom.delete_namespaced_custom_object(
            GROUP, VERSION, APP_NAMESPACE, PLURAL, harness.LEASE_NAME
        )
        wait_for(
            lambda api=custom: (
                not api.list_namespaced_custom_object(  # type: ignore[misc]
                    GROUP, VERSION, APP_NAMESPACE, PLURAL
                )["items"]
            ),
            timeout=30,
            message=f"the lease in {c.name} to be deleted",
            interval=0.2,
        )


def check_requests_match_roles(clusters: Sequence[Cluster]) -> None:
    """Every request was allowed, and each role grants exactly what its identity sent."""
    for c in clusters:
        events = c.cluster.audit_events()
        for user, roles in (
            (CONTROLLER_USER, ("mclease-controller", "mclease-leader-election")),
            (CANDIDATE_USER, ("mclease-candidate",)),
        ):
            sent = shipped.requests_of(events, user)
            refused = {grant: codes for grant, codes in sent.items() if 403 in codes}
            assert not refused, f"{c.name}: {user} was refused {refused}"
            granted = shipped.granted(c.documents, *roles) - RARE_GRANTS.keys()
            assert set(sent) - RARE_GRANTS.keys() == granted, (
                f"{c.name}: {user}: sent but not granted {sorted(set(sent) - granted)}; "
                f"granted but never sent {sorted(granted - set(sent))}"
            )


def check_no_password_anywhere(clusters: Sequence[Cluster]) -> None:
    outputs: list[tuple[str, str]] = []
    for c in clusters:
        for process in c.processes:
            outputs.append(
                (f"{c.name}/{process.name}", process.log_path.read_text(errors="replace"))
            )
        core = k8s.CoreV1Api(c.cluster.api_client())
        events = core.list_event_for_all_namespaces().items
        outputs.append((f"{c.name} Events", "\n".join(e.message or "" for e in events)))
        outputs.append((f"{c.name} audit", c.cluster.audit_log.read_text()))
    for where, text in outputs:
        assert STORE_PASSWORD not in text, f"the store password appears in {where}"
    for c in clusters:  # the product's processes (the candidates are test doubles)
        for replica in c.replicas:
            text = replica.log_path.read_text(errors="replace")
            assert "Traceback" not in text, f"a traceback in {c.name}/{replica.name}"


# ----- the defaults refuse to start ---------------------------------------------------------------


def test_the_defaults_refuse_to_start_until_the_cluster_name_and_store_are_set(
    release: shipped.Release, workdir: Path
) -> None:
    kubectl = find_kubectl()
    documents = shipped.render(kubectl, workdir, base="default", literals={})
    name_missing = run_pod(documents, release, workdir)
    assert name_missing.returncode == 2
    assert name_missing.stderr.count("\n") == 1, name_missing.stderr
    assert "cluster name" in name_missing.stderr.lower()
    assert "CLUSTER_NAME" in name_missing.stderr

    named = shipped.render(
        kubectl, workdir / "named", base="default", literals={"CLUSTER_NAME": "eu-west"}
    )
    store_missing = run_pod(named, release, workdir)
    assert store_missing.returncode == 2
    assert store_missing.stderr.count("\n") == 1, store_missing.stderr
    assert "set-the-shared-store" in store_missing.stderr


def run_pod(
    documents: list[dict[str, Any]], release: shipped.Release, workdir: Path
) -> subprocess.CompletedProcess[str]:
    """The rendered pod, with a kubeconfig for an API server that is not there: every check
    that refuses the settings comes before the first request."""
    kubeconfig = workdir / "unreachable.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    deployment = shipped.find(documents, "Deployment")
    pod = shipped.pod_from(
        deployment,
        shipped.data_from_documents(documents),
        "mclease-0",
        release=release,
        kubeconfig=kubeconfig,
    )
    return subprocess.run(pod.argv, env=pod.env, capture_output=True, text=True, timeout=30)
