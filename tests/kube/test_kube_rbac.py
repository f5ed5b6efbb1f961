"""RBAC of config/rbac on a real API server: candidates write spec only, the controller status.

The roles come from the repository's own manifests (``kubectl apply -k config/rbac``), so these
tests check what users deploy. Identities are real: service-account tokens from the TokenRequest
API, used from Python clients and from a separate kubectl process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from mclease_dev.kube import REPO_ROOT, KubeCluster
from mclease_dev.leases import GROUP, PLURAL, VERSION, Leases, error_body, lease_body, micro_time

pytestmark = pytest.mark.kube

CONTROLLER_NS = "mclease-system"
CONTROLLER_SA = "mclease-controller"
CANDIDATE_SA = "candidate"


@pytest.fixture(scope="module")
def rbac_cluster(mcl_cluster: KubeCluster) -> KubeCluster:
    """The CRD cluster with config/rbac applied (the namespace comes from config/manager)."""
    mcl_cluster.ensure_namespace(CONTROLLER_NS)
    mcl_cluster.kubectl("apply", "-k", REPO_ROOT / "config" / "rbac")
    return mcl_cluster


@pytest.fixture
def candidate_kubeconfig(rbac_cluster: KubeCluster, namespace: str) -> Path:
    """A candidate service account in ``namespace``, bound to mclease-candidate there."""
    kubeconfig = rbac_cluster.kubeconfig_for_service_account(namespace, CANDIDATE_SA)
    rbac = k8s.RbacAuthorizationV1Api(rbac_cluster.api_client())
    rbac.create_namespaced_role_binding(
        namespace,
        k8s.V1RoleBinding(
            metadata=k8s.V1ObjectMeta(name="candidate-mclease"),
            role_ref=k8s.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="mclease-candidate"
            ),
            subjects=[
                k8s.RbacV1Subject(kind="ServiceAccount", name=CANDIDATE_SA, namespace=namespace)
            ],
        ),
    )
    return kubeconfig


@pytest.fixture
def controller_kubeconfig(rbac_cluster: KubeCluster) -> Path:
    return rbac_cluster.kubeconfig_for_service_account(CONTROLLER_NS, CONTROLLER_SA)


def test_candidate_creates_and_updates_spec_but_may_not_write_status(
    rbac_cluster: KubeCluster, namespace: str, candidate_kubeconfig: Path
) -> None:
    leases = Leases(rbac_cluster.api_client(candidate_kubeconfig), namespace)
    created = leases.create(lease_body("job", holderIdentity="pod-a_1"))
    renewed = leases.replace({**created, "spec": {**created["spec"], "renewTime": micro_time()}})
    assert renewed["metadata"]["generation"] == created["metadata"]["generation"] + 1
    replaced = leases.replace({**renewed, "spec": {**renewed["spec"], "holderIdentity": "pod-b"}})
    assert replaced["spec"]["holderIdentity"] == "pod-b"
    # Upstream's Go lock renews with a merge patch.
    leases.patch("job", {"spec": {"renewTime": micro_time()}})

    with pytest.raises(ApiException) as excinfo:
        leases.patch_status("job", {"globalHolderIdentity": "pod-b"})
    assert excinfo.value.status == 403
    assert f'"system:serviceaccount:{namespace}:{CANDIDATE_SA}"' in error_body(excinfo.value)
    assert 'cannot patch resource "multiclusterleases/status"' in error_body(excinfo.value)
    assert "globalHolderIdentity" not in leases.get("job").get("status", {})


def test_candidate_process_sees_its_permissions(
    rbac_cluster: KubeCluster, namespace: str, candidate_kubeconfig: Path
) -> None:
    def can_i(*args: str) -> str:
        result = rbac_cluster.kubectl(
            "auth", "can-i", *args, "-n", namespace, kubeconfig=candidate_kubeconfig, check=False
        )
        return result.stdout.strip()

    who = rbac_cluster.kubectl(
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
        kubeconfig=candidate_kubeconfig,
    )
    assert who.stdout == f"system:serviceaccount:{namespace}:{CANDIDATE_SA}"
    assert can_i("update", "multiclusterleases") == "yes"
    assert can_i("watch", "multiclusterleases") == "yes"  # the lock watches its own object
    assert can_i("list", "configmaps") == "no"
    assert can_i("patch", "multiclusterleases", "--subresource=status") == "no"
    assert can_i("delete", "multiclusterleases") == "no"


def test_candidate_is_confined_to_its_namespace(
    rbac_cluster: KubeCluster, namespace: str, candidate_kubeconfig: Path
) -> None:
    other = f"{namespace}-other"
    rbac_cluster.ensure_namespace(other)
    with pytest.raises(ApiException) as excinfo:
        Leases(rbac_cluster.api_client(candidate_kubeconfig), other).create(lease_body("x"))
    assert excinfo.value.status == 403


def test_a_candidate_refused_by_rbac_says_so_once(
    rbac_cluster: KubeCluster,
    namespace: str,
    candidate_kubeconfig: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The elector retries a refused lock forever; the lock says why once, with the fix."""
    from mclease_core.kube import MultiClusterLeaseLock

    other = f"{namespace}-unbound"
    rbac_cluster.ensure_namespace(other)
    lock = MultiClusterLeaseLock(
        "job", other, "pod-a", api_client=rbac_cluster.api_client(candidate_kubeconfig),
        lease_duration=6, renew_deadline=2, retry_period=1,
    )  # fmt: skip
    with caplog.at_level("WARNING", logger="mclease.lock"):
        for _ in range(3):
            ok, error = lock.get("job", other)
            assert not ok
            assert error.status == 403
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert "HTTP 403" in warnings[0]
    assert "mclease-candidate" in warnings[0]
    assert other in warnings[0]


def test_controller_patches_status(
    rbac_cluster: KubeCluster, namespace: str, controller_kubeconfig: Path
) -> None:
    Leases(rbac_cluster.api_client(), namespace).create(lease_body("job"))
    leases = Leases(rbac_cluster.api_client(controller_kubeconfig), namespace)
    patched = leases.patch_status(
        "job", {"globalHolderIdentity": "pod-a_1234", "observedGeneration": 1, "fencingToken": 1}
    )
    assert patched["status"]["globalHolderIdentity"] == "pod-a_1234"
    # Its finalizer rights: patching metadata of the main resource.
    finalized = leases.patch("job", {"metadata": {"finalizers": ["mclease.io/global-lease"]}})
    assert finalized["metadata"]["finalizers"] == ["mclease.io/global-lease"]
    leases.patch("job", {"metadata": {"finalizers": None}})
    # A lease whose cached copy the controller dropped (after a 409 or a failed reconcile) is
    # read once (Reconciler.reconcile with no object); a 403 there would never forget a lease.
    assert leases.get("job")["metadata"]["name"] == "job"


def test_controller_lists_cluster_wide_and_holds_its_replica_lease(
    rbac_cluster: KubeCluster, namespace: str, controller_kubeconfig: Path
) -> None:
    api = rbac_cluster.api_client(controller_kubeconfig)
    listed = k8s.CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, PLURAL)
    assert isinstance(listed, dict)
    assert listed["kind"] == "MultiClusterLeaseList"
    coordination = k8s.CoordinationV1Api(api)
    name = f"mclease-controller-{namespace}"
    lease = k8s.V1Lease(
        metadata=k8s.V1ObjectMeta(name=name),
        spec=k8s.V1LeaseSpec(holder_identity="replica-0", lease_duration_seconds=15),
    )
    created = coordination.create_namespaced_lease(CONTROLLER_NS, lease)
    assert created.spec is not None
    patch = {
        "metadata": {"resourceVersion": created.metadata.resource_version},
        "spec": {"holderIdentity": "replica-1"},
    }
    updated = coordination.patch_namespaced_lease(name, CONTROLLER_NS, patch)
    assert updated.spec is not None
    assert updated.spec.holder_identity == "replica-1"
    assert coordination.read_namespaced_lease(name, CONTROLLER_NS).spec == updated.spec
    # Its Lease rights end at its own namespace (a Role, not a ClusterRole).
    with pytest.raises(ApiException) as elsewhere:
        coordination.create_namespaced_lease(namespace, lease)
    assert elsewhere.value.status == 403
    with pytest.raises(ApiException) as excinfo:
        k8s.CustomObjectsApi(api).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "missing"
        )
    assert excinfo.value.status == 403


def test_default_kustomization_applies_in_server_dry_run(rbac_cluster: KubeCluster) -> None:
    # A server dry run does not create the Namespace, so namespaced objects need it to exist;
    # rbac_cluster made it. A real `kubectl apply -k config/default` creates it first.
    result = rbac_cluster.kubectl(
        "apply", "--dry-run=server", "-k", REPO_ROOT / "config" / "default"
    )
    out = result.stdout
    for kind_name in (
        "customresourcedefinition.apiextensions.k8s.io/multiclusterleases.multicluster.core"
        ".cnrm.cloud.google.com",
        "clusterrole.rbac.authorization.k8s.io/mclease-controller",
        "clusterrole.rbac.authorization.k8s.io/mclease-candidate",
        "clusterrolebinding.rbac.authorization.k8s.io/mclease-controller",
        "role.rbac.authorization.k8s.io/mclease-leader-election",
        "rolebinding.rbac.authorization.k8s.io/mclease-leader-election",
        "serviceaccount/mclease-controller",
        "deployment.apps/mclease-controller",
        "namespace/mclease-system",
    ):
        assert kind_name in out, out
    assert "(server dry run)" in out
    assert "configmap/mclease-controller-config-" in out
