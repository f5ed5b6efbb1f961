"""The Helm chart (charts/mclease) renders the objects config/ renders, and refuses what it must.

The chart is a second way to install what ``kubectl apply -k`` installs, so the test holds it to
the kustomize tree rather than to a copy of expectations: ``helm template`` with values that
mean the same as an overlay is compared with ``kubectl kustomize`` of that overlay (built on
config/ by :func:`tests.deploy.shipped.render`), for config/default, the redis overlay (the store
Secret's password and CA wiring) and the gcs overlay (Workload Identity). Objects are equal
after removing what the two tools add on their own:

- Helm's labels (``helm.sh/chart``, ``app.kubernetes.io/managed-by|instance|version``);
- kustomize's hash suffix of the ConfigMap's name (and of the references to it), and the
  chart's ``checksum/config`` pod annotation, which is how a Helm chart rolls the pods when the
  settings change (kustomize does it with the new name);
- the order of the container's env and volumeMounts and of the pod's volumes: kustomize's patches
  put the overlay's entries first, the chart puts its optional ones last, and nothing refers to
  them by position.

The documented differences (for docs/deploy.md):

- no Namespace object: the chart installs into the release namespace (Helm's convention), so the
  ``pod-security.kubernetes.io/enforce: restricted`` label of config/'s Namespace is the user's
  to set (the chart's NOTES say how);
- the ConfigMap is named ``mclease-controller-config`` without a hash and also carries the name
  and component labels (kustomize's generator gives it only ``part-of``);
- the CRD comes from ``crds/``, which Helm does not template: it lacks the ``part-of`` label
  config/default adds. Its file must be byte-identical to config/crd/bases (checked here).

helm is the binary hack/helm.sh builds (``make helm``); a missing one fails the test with that
command rather than skipping, so a machine without it cannot pass silently.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from mclease_dev.kube import find_kubectl
from tests.deploy.shipped import render as kustomize_overlay

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mclease"
HELM_SCRIPT = ROOT / "hack" / "helm.sh"
NAMESPACE = "mclease-system"
CONFIG_MAP = "mclease-controller-config"
HELM_LABELS = frozenset(
    {
        "helm.sh/chart",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
    }
)
CLUSTER = "eu-west"
REDIS_URL = "rediss://redis.example.internal:6380/0?ssl_ca_certs=/etc/mclease/tls/ca.crt"
GOOGLE_ACCOUNT = "mclease-controller@my-project.iam.gserviceaccount.com"

Document = dict[str, Any]
Keyed = dict[tuple[str, str], Document]


# ----- the tools -----------------------------------------------------------------------------


def helm_path(environ: Mapping[str, str] = os.environ) -> Path:
    """Where hack/helm.sh puts helm: $MCLEASE_HELM_CACHE (else $XDG_CACHE_HOME/mclease/helm, else
    ~/.cache/mclease/helm) / <version> / helm, the version $MCLEASE_HELM_VERSION or the script's
    default (read from the script, so that a version bump there needs no change here)."""
    match = re.search(r'MCLEASE_HELM_VERSION:-([0-9][^}"]*)', HELM_SCRIPT.read_text())
    assert match, f"no default helm version in {HELM_SCRIPT}"
    version = environ.get("MCLEASE_HELM_VERSION") or match.group(1)
    cache_home = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    parent = environ.get("MCLEASE_HELM_CACHE") or f"{cache_home}/mclease/helm"
    return Path(parent) / version.removeprefix("v") / "helm"


def helm() -> Path:
    path = helm_path()
    if not os.access(path, os.X_OK):
        pytest.fail(f"no helm at {path}; run `make helm` (hack/helm.sh builds it)", pytrace=False)
    return path


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm()), *args], capture_output=True, text=True, timeout=60, check=False
    )


def values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def template_result(tmp_path: Path, values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return run_helm(
        "template",
        "mclease",
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--include-crds",
        "--values",
        str(values_file(tmp_path, values)),
    )


def template(tmp_path: Path, values: dict[str, Any]) -> list[Document]:
    result = template_result(tmp_path, values)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def required(**more: Any) -> dict[str, Any]:
    """The values every release must set, plus ``more``."""
    return {"clusterName": CLUSTER, "storage": {"url": REDIS_URL}, **more}


def by_key(documents: list[Document]) -> Keyed:
    keyed = {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents}
    assert len(keyed) == len(documents), "two objects of one kind and name"
    return keyed


def one(documents: list[Document], kind: str) -> Document:
    found = [doc for doc in documents if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(documents: list[Document]) -> Document:
    found: Document
    (found,) = one(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    return found


# ----- normalizing -----------------------------------------------------------------------------


def copied(doc: Document) -> Document:
    deep_copy: Document = json.loads(json.dumps(doc))
    return deep_copy


def without_helm_additions(doc: Document) -> Document:
    doc = copied(doc)
    labels = doc["metadata"].get("labels", {})
    for label in HELM_LABELS:
        labels.pop(label, None)
    if doc["kind"] == "Deployment":
        pod_metadata = doc["spec"]["template"]["metadata"]
        annotations = pod_metadata.get("annotations", {})
        assert "checksum/config" in annotations, "the pods do not roll when the settings change"
        del annotations["checksum/config"]
        if not annotations:
            del pod_metadata["annotations"]
    return doc


def without_hash_suffix(documents: list[Document]) -> list[Document]:
    """kustomize's documents with the generated ConfigMap's name (and references) unhashed."""
    (hashed,) = [d["metadata"]["name"] for d in documents if d["kind"] == "ConfigMap"]
    assert re.fullmatch(rf"{CONFIG_MAP}-[a-z0-9]+", hashed), hashed
    text = json.dumps(documents).replace(json.dumps(hashed), json.dumps(CONFIG_MAP))
    return list(json.loads(text))


def lists_by_name(doc: Document) -> Document:
    if doc["kind"] != "Deployment":
        return doc
    pod = doc["spec"]["template"]["spec"]
    pod["volumes"] = sorted(pod.get("volumes", []), key=lambda item: item["name"])
    for each in pod["containers"]:
        for field in ("env", "volumeMounts"):
            each[field] = sorted(each.get(field, []), key=lambda item: item["name"])
    return doc


# ----- the comparison with config/ ---------------------------------------------------------------


OVERLAYS: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = {
    # name: (config/ base, the user's ConfigMap literals, the equivalent chart values)
    "default": (
        "default",
        {"CLUSTER_NAME": CLUSTER, "STORAGE_URL": REDIS_URL},
        required(image={"tag": "latest"}),
    ),
    "redis": (
        "overlays/redis",
        {"CLUSTER_NAME": CLUSTER, "STORAGE_URL": REDIS_URL},
        required(
            image={"tag": "latest"},
            storage={
                "url": REDIS_URL,
                "passwordSecret": {"name": "mclease-storage", "key": "password"},
                "tlsSecret": {
                    "name": "mclease-storage",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    "optional": True,
                },
            },
        ),
    ),
    "gcs": (
        "overlays/gcs",
        {"CLUSTER_NAME": CLUSTER, "STORAGE_URL": "gs://my-bucket/leases"},
        required(
            image={"tag": "latest"},
            storage={"url": "gs://my-bucket/leases"},
            serviceAccount={"annotations": {"iam.gke.io/gcp-service-account": GOOGLE_ACCOUNT}},
        ),
    ),
}


def rendered_pair(tmp_path: Path, overlay: str) -> tuple[Keyed, Keyed]:
    """(chart, kustomize) objects of ``overlay``, normalized, by (kind, name)."""
    base, literals, values = OVERLAYS[overlay]
    kustomized = kustomize_overlay(
        find_kubectl(), tmp_path / "kustomize", base=base, literals=literals
    )
    if overlay == "gcs":  # the overlay's placeholder account, set as a user's overlay would
        account = one(kustomized, "ServiceAccount")["metadata"]["annotations"]
        account["iam.gke.io/gcp-service-account"] = GOOGLE_ACCOUNT
    chart = [lists_by_name(without_helm_additions(doc)) for doc in template(tmp_path, values)]
    return by_key(chart), by_key([lists_by_name(doc) for doc in without_hash_suffix(kustomized)])


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_chart_renders_the_objects_of_config(tmp_path: Path, overlay: str) -> None:
    chart, kustomized = rendered_pair(tmp_path, overlay)
    assert set(kustomized) - set(chart) == {("Namespace", NAMESPACE)}
    assert set(chart) - set(kustomized) == set()
    for key, doc in kustomized.items():
        if key[0] in ("Namespace", "ConfigMap", "CustomResourceDefinition"):
            continue
        assert chart[key] == doc, f"{key[0]} {key[1]} differs from config/{OVERLAYS[overlay][0]}"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_documented_differences_are_the_only_ones(tmp_path: Path, overlay: str) -> None:
    chart, kustomized = rendered_pair(tmp_path, overlay)
    ours, theirs = chart[("ConfigMap", CONFIG_MAP)], kustomized[("ConfigMap", CONFIG_MAP)]
    assert ours["data"] == theirs["data"]
    assert theirs["metadata"]["labels"].items() <= ours["metadata"]["labels"].items()
    (crd_key,) = [key for key in chart if key[0] == "CustomResourceDefinition"]
    crd = copied(kustomized[crd_key])
    del crd["metadata"]["labels"]["app.kubernetes.io/part-of"]
    assert chart[crd_key] == crd


def test_the_crd_is_config_s_file_byte_for_byte() -> None:
    sources = sorted((ROOT / "config" / "crd" / "bases").glob("*.yaml"))
    copies = sorted((CHART / "crds").glob("*.yaml"))
    names = [p.name for p in sources]
    assert [p.name for p in copies] == names, "charts/mclease/crds/ holds other files"
    for source, copy in zip(sources, copies, strict=True):
        assert copy.read_bytes() == source.read_bytes(), (
            f"{copy.relative_to(ROOT)} differs from {source.relative_to(ROOT)}; copy it again: "
            "cp config/crd/bases/*.yaml charts/mclease/crds/"
        )


# ----- lint, required values, refusals ------------------------------------------------------


EVERYTHING_ON = required(
    storage={
        "url": REDIS_URL,
        "passwordSecret": {"name": "mclease-storage", "key": "password"},
        "tlsSecret": {"name": "mclease-storage"},
    },
    serviceAccount={"annotations": {"iam.gke.io/gcp-service-account": GOOGLE_ACCOUNT}},
    metrics={"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    extraArgs=["--leader-elect-lease-duration", "20s"],
)


@pytest.mark.parametrize("values", [required(), EVERYTHING_ON], ids=["required", "everything-on"])
def test_helm_lint_strict_passes(tmp_path: Path, values: dict[str, Any]) -> None:
    values_path = values_file(tmp_path, values)
    result = run_helm("lint", "--strict", str(CHART), "--values", str(values_path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"storage": {"url": REDIS_URL}}, "clusterName is required"),
        ({"clusterName": "", "storage": {"url": REDIS_URL}}, "clusterName is required"),
        ({"clusterName": CLUSTER}, "storage.url is required"),
        (required(clusterName="eu/west"), 'clusterName "eu/west" has a "/"'),
        (required(replicas=2, leaderElect=False), "replicas is 2 but leaderElect is false"),
        (required(clustername="typo"), "clustername"),
    ],
    ids=["no-cluster-name", "empty-cluster-name", "no-store", "slash", "two-active", "typo"],
)
def test_a_release_without_what_it_needs_fails_at_render(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    result = template_result(tmp_path, values)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2@redis.example.internal:6379/0",
        "etcds://mclease:hunter2@etcd-0.example.internal:2379/mclease",
        "rediss://redis.example.internal:6380/0?password=hunter2",
        "gs://bucket/leases?access_token=hunter2",
    ],
)
def test_a_password_in_the_store_url_is_refused_unquoted(tmp_path: Path, url: str) -> None:
    result = template_result(tmp_path, {"clusterName": CLUSTER, "storage": {"url": url}})
    assert result.returncode != 0
    assert "storage.url holds a password" in result.stderr
    assert "set storage.passwordSecret" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "url",
    [
        "etcds://mclease@etcd-0.example.internal:2379,etcd-1.example.internal:2379/mclease"
        "?password_file=/etc/mclease/tls/password",
        "redis://redis.example.internal:6379/0?socket_timeout=2s",
        "sqlite:////var/lib/mclease/leases.db",
    ],
)
def test_a_store_url_without_a_password_is_accepted(tmp_path: Path, url: str) -> None:
    documents = template(tmp_path, {"clusterName": CLUSTER, "storage": {"url": url}})
    assert one(documents, "ConfigMap")["data"]["STORAGE_URL"] == url


# ----- the values' effects ------------------------------------------------------------------


def test_the_password_secret_becomes_the_password_variable(tmp_path: Path) -> None:
    without = {item["name"] for item in container(template(tmp_path, required()))["env"]}
    assert "MCLEASE_STORAGE_PASSWORD" not in without
    secret = {"name": "redis-auth", "key": "pw"}
    values = required(storage={"url": REDIS_URL, "passwordSecret": secret})
    env = {item["name"]: item for item in container(template(tmp_path, values))["env"]}
    assert env["MCLEASE_STORAGE_PASSWORD"] == {
        "name": "MCLEASE_STORAGE_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "pw"}},
    }


def test_the_tls_secret_is_mounted_whole_by_default(tmp_path: Path) -> None:
    values = required(storage={"url": REDIS_URL, "tlsSecret": {"name": "redis-tls"}})
    documents = template(tmp_path, values)
    mounts = {m["name"]: m for m in container(documents)["volumeMounts"]}
    assert mounts["storage-tls"] == {
        "name": "storage-tls",
        "mountPath": "/etc/mclease/tls",
        "readOnly": True,
    }
    pod = one(documents, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["storage-tls"] == {"name": "storage-tls", "secret": {"secretName": "redis-tls"}}


def test_image_replicas_and_extra_args(tmp_path: Path) -> None:
    documents = template(tmp_path, required(replicas=3, extraArgs=["--workers", "8"]))
    assert container(documents)["image"] == "mclease-controller:0.1.0"  # the appVersion
    assert container(documents)["args"][-3:] == ["--leader-elect", "--workers", "8"]
    assert one(documents, "Deployment")["spec"]["replicas"] == 3
    single = template(tmp_path, required(replicas=1, leaderElect=False))
    assert "--leader-elect" not in container(single)["args"]


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ({"metrics": {"service": {"enabled": False}}}, "Service"),
        ({"podDisruptionBudget": {"enabled": False}}, "PodDisruptionBudget"),
        ({"networkPolicy": {"enabled": False}}, "NetworkPolicy"),
    ],
)
def test_optional_objects_can_be_left_out(
    tmp_path: Path, values: dict[str, Any], kind: str
) -> None:
    assert kind in {doc["kind"] for doc in template(tmp_path, required())}
    assert kind not in {doc["kind"] for doc in template(tmp_path, required(**values))}


def test_the_service_monitor_is_config_prometheus(tmp_path: Path) -> None:
    assert "ServiceMonitor" not in {doc["kind"] for doc in template(tmp_path, required())}
    release = {"release": "prometheus"}
    values = required(metrics={"serviceMonitor": {"enabled": True, "labels": release}})
    monitor = one(template(tmp_path, values), "ServiceMonitor")
    result = subprocess.run(
        [str(find_kubectl()), "kustomize", str(ROOT / "config" / "prometheus")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    shipped = one([doc for doc in yaml.safe_load_all(result.stdout) if doc], "ServiceMonitor")
    assert monitor["spec"] == shipped["spec"]
    assert monitor["metadata"]["name"] == shipped["metadata"]["name"]
    wanted = {**shipped["metadata"]["labels"], **release}
    assert wanted.items() <= monitor["metadata"]["labels"].items()


def test_changed_settings_roll_the_pods(tmp_path: Path) -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = one(template(tmp_path, values), "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum(required()) == checksum(required())
    assert checksum(required()) != checksum(required(clusterName="us-east"))
