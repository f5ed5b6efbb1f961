"""Every kustomization in config/ renders with kubectl's kustomize, and what it renders hangs
together: selectors select the controller's pods, ports exist, secrets stay out of ConfigMaps,
the replica election's permissions are namespaced, and only the kind overlay keeps state on disk.

The deployment-as-shipped test (tests/deploy) runs the redis overlay for real; these checks cover
the others, which need a cloud or a TLS store to run.
"""

from __future__ import annotations

import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from mclease_dev.kube import find_kubectl

CONFIG = Path(__file__).resolve().parents[2] / "config"
KUSTOMIZATIONS = sorted(
    str(path.parent.relative_to(CONFIG)) for path in CONFIG.rglob("kustomization.yaml")
)
DEPLOYABLE = ["default", "overlays/redis", "overlays/etcd", "overlays/gcs", "overlays/sqlite-kind"]


def render(folder: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(find_kubectl()), "kustomize", str(CONFIG / folder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in documents if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def test_every_kustomization_renders() -> None:
    assert set(DEPLOYABLE) <= set(KUSTOMIZATIONS)
    for folder in KUSTOMIZATIONS:
        assert render(folder), folder


@pytest.mark.parametrize("folder", DEPLOYABLE)
def test_overlay_hangs_together(folder: str) -> None:
    documents = render(folder)
    deployment = one(documents, "Deployment")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    (container,) = pod["spec"]["containers"]
    ports = {port["name"] for port in container["ports"]}

    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        doc = one(documents, kind)
        selector = doc["spec"].get("selector") or doc["spec"]["podSelector"]
        assert selector["matchLabels"].items() <= labels.items(), f"{kind} selects no pod"
    service = one(documents, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports

    env = {item["name"]: item for item in container["env"]}
    for arg in container["args"]:
        if arg.startswith("$("):
            assert arg[2:-1] in env, f"{arg} is not defined in the container's env"
    config_map = one(documents, "ConfigMap")
    for key, value in config_map["data"].items():
        assert urllib.parse.urlsplit(value).password is None, f"a password in ConfigMap {key}"

    roles = {
        doc["metadata"]["name"]: doc for doc in documents if doc["kind"] in ("Role", "ClusterRole")
    }
    leases = [
        (name, doc["kind"])
        for name, doc in roles.items()
        for rule in doc["rules"]
        if "leases" in rule["resources"]
    ]
    assert leases == [("mclease-leader-election", "Role")], leases
    assert (
        roles["mclease-leader-election"]["metadata"]["namespace"]
        == deployment["metadata"]["namespace"]
    )

    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    on_disk = [name for name, v in volumes.items() if "persistentVolumeClaim" in v]
    assert on_disk == (["sqlite"] if folder == "overlays/sqlite-kind" else [])
    if folder == "overlays/sqlite-kind":
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
    else:
        assert deployment["spec"]["replicas"] == 2
        assert "--leader-elect" in container["args"]


def test_secrets_come_from_a_secret_in_the_store_overlays() -> None:
    redis = one(render("overlays/redis"), "Deployment")["spec"]["template"]["spec"]
    (container,) = redis["containers"]
    env = {item["name"]: item for item in container["env"]}
    assert env["MCLEASE_STORAGE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "mclease-storage"
    etcd = render("overlays/etcd")
    url = one(etcd, "ConfigMap")["data"]["STORAGE_URL"]
    assert "password_file=/etc/mclease/storage/password" in url
    volumes = one(etcd, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert next(v["secret"] for v in volumes if v["name"] == "storage") == {
        "secretName": "mclease-storage",
        "defaultMode": 0o440,
    }


def test_gcs_overlay_uses_workload_identity_and_no_key() -> None:
    documents = render("overlays/gcs")
    account = one(documents, "ServiceAccount")
    assert "iam.gke.io/gcp-service-account" in account["metadata"]["annotations"]
    assert not [doc for doc in documents if doc["kind"] == "Secret"]
    assert one(documents, "ConfigMap")["data"]["STORAGE_URL"].startswith("gs://")


def test_the_sample_lease_has_timings_the_lock_accepts() -> None:
    from mclease_core import LeaseTiming
    from mclease_core.kube._lock import confirmation_bound

    (sample,) = yaml.safe_load_all((CONFIG / "samples" / "multiclusterlease.yaml").read_text())
    spec = sample["spec"]
    timing = LeaseTiming(
        spec["leaseDurationSeconds"], spec["renewDeadlineSeconds"], spec["retryPeriodSeconds"]
    )
    assert confirmation_bound(timing) >= 0.25
