"""mclease as a user gets it: the image's install steps, the rendered manifests and the pods.

For: ``tests/deploy``. What ships is the Dockerfile, the kustomize tree in ``config/`` and the
distributions. This module runs them the way a cluster would, on the test bed's API servers:

- :func:`install_release` runs the Dockerfile's two ``RUN`` steps (``hack/build-wheels.sh`` and
  ``hack/install-wheels.sh``, read from the Dockerfile itself) into a fresh virtual environment:
  wheels, no editable install, no test tools, the repository not on ``sys.path``.
- :func:`render` builds a user's overlay on top of one of ``config/overlays`` with the kustomize
  built into kubectl, as ``kubectl apply -k`` would.
- :class:`Pod` is what the kubelet would start from the rendered Deployment: exactly its
  container's command, args and env, with ``configMapKeyRef``/``secretKeyRef`` values read from
  the API server, the downward API filled in and ``$(VAR)`` expanded.

Where a process on one machine cannot be a pod, the difference is the smallest one that works and
is written here: each pod's ports (its own network namespace in a cluster) are moved with the
CLI's own environment variables, ``MCLEASE_METRICS_BIND_ADDRESS`` and
``MCLEASE_HEALTH_PROBE_BIND_ADDRESS``; and the mounted service-account token is a TokenRequest
token for the same ServiceAccount handed over in ``KUBECONFIG`` (the in-cluster paths under
/var/run/secrets are shared by every process here).

Not for: the image itself (no Docker runs here; the image's build-time smoke check is the same
``hack/install-wheels.sh``).
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from mclease_dev.kube import REPO_ROOT, KubeCluster

DOCKERFILE = REPO_ROOT / "Dockerfile"
IMAGE_WHEEL_DIR = "/wheels"
"""Where the Dockerfile puts the wheels; the test substitutes a temporary folder."""


# ----- the release: the Dockerfile's steps ------------------------------------------------------


@dataclass(frozen=True)
class Release:
    """A fresh virtual environment with mclease installed from wheels, as in the image."""

    root: Path
    wheels: list[str]

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"


def dockerfile_runs(path: Path = DOCKERFILE) -> list[str]:
    """The shell command of every ``RUN`` instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("RUN ")]


def install_release(workdir: Path) -> Release:
    """Run the Dockerfile's build and install steps into ``workdir`` (wheels, then a venv)."""
    runs = dockerfile_runs()
    build = [run for run in runs if "hack/build-wheels.sh" in run]
    install = [run for run in runs if "install-wheels.sh" in run]
    assert len(build) == 1, f"expected one wheel build among the Dockerfile's RUN steps: {runs}"
    assert len(install) == 1, f"expected one install among the Dockerfile's RUN steps: {runs}"
    wheels = workdir / "wheels"
    root = workdir / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    # The install step runs hack/install-wheels.sh copied to /tmp; here it runs from hack/.
    install_command = install[0].replace(
        "/tmp/install-wheels.sh", str(REPO_ROOT / "hack/install-wheels.sh")
    )
    install_command = install_command.split("&&")[0]  # not the clean-up of the image's /wheels
    for command, python in (
        (build[0], sys.executable),
        (install_command, str(root / "bin/python")),
    ):
        step = subprocess.run(
            ["sh", "-c", command.replace(IMAGE_WHEEL_DIR, shlex.quote(str(wheels)))],
            cwd=REPO_ROOT,
            env={**clean_environment(root / "bin"), "PYTHON": python},
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert step.returncode == 0, (
            f"the Dockerfile step `{command}` failed ({step.returncode}):\n{step.stderr[-3000:]}"
        )
    return Release(root, sorted(p.name for p in wheels.glob("*.whl")))


def clean_environment(bin_dir: Path) -> dict[str, str]:
    """What a container starts with: a PATH, a HOME, nothing from this test run."""
    keep = {name: os.environ[name] for name in ("HOME", "LANG", "TMPDIR") if name in os.environ}
    system_path = os.defpath.lstrip(":") or "/usr/bin:/bin"
    return {**keep, "PATH": f"{bin_dir}:/usr/local/bin:{system_path}"}


# ----- the manifests ----------------------------------------------------------------------------


def render(
    kubectl: Path,
    workdir: Path,
    *,
    base: str,
    literals: Mapping[str, str],
    secrets: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of a user's overlay: ``config/<base>`` with the controller's
    ConfigMap values and the store Secret (``mclease-storage``) set, as docs/deploy.md says.

    kustomize refuses resources outside the overlay's tree, so ``config/`` is copied beside it.
    """
    shutil.copytree(REPO_ROOT / "config", workdir / "config", dirs_exist_ok=True)
    overlay = workdir / "overlay"
    overlay.mkdir(exist_ok=True)
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f"../config/{base}"],
        "configMapGenerator": [
            {
                "name": "mclease-controller-config",
                "namespace": "mclease-system",
                "behavior": "merge",
                "literals": [f"{key}={value}" for key, value in literals.items()],
            }
        ],
    }
    if secrets:
        kustomization["secretGenerator"] = [
            {
                "name": "mclease-storage",
                "namespace": "mclease-system",
                "literals": [f"{key}={value}" for key, value in secrets.items()],
            }
        ]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    result = subprocess.run(
        [str(kubectl), "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(documents: Sequence[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        doc
        for doc in documents
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''} in the rendered manifests"
    return found[0]


# ----- pods ---------------------------------------------------------------------------------------


_VARIABLE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion: defined variables replaced, ``$$`` is ``$``, anything
    else left as written."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VARIABLE.sub(substitute, text)


@dataclass(frozen=True)
class Pod:
    """One replica of the rendered Deployment as the kubelet would start its container."""

    name: str
    namespace: str
    argv: list[str]
    env: dict[str, str]


ObjectData = Callable[[str, str], Mapping[str, str]]
"""``(kind, name) -> data`` of a ConfigMap or Secret (Secret values decoded)."""


def data_from_cluster(cluster: KubeCluster, namespace: str) -> ObjectData:
    """What the kubelet reads: the objects as the API server has them."""
    core = k8s.CoreV1Api(cluster.api_client())

    def read(kind: str, name: str) -> Mapping[str, str]:
        if kind == "ConfigMap":
            return core.read_namespaced_config_map(name, namespace).data or {}
        encoded = core.read_namespaced_secret(name, namespace).data or {}
        return {key: base64.b64decode(value).decode() for key, value in encoded.items()}

    return read


def data_from_documents(documents: Sequence[dict[str, Any]]) -> ObjectData:
    """The rendered objects themselves (for a pod whose manifests were not applied)."""

    def read(kind: str, name: str) -> Mapping[str, str]:
        doc = find(documents, kind, name)
        if kind == "ConfigMap":
            return dict(doc.get("data") or {})
        return {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}

    return read


def pod_from(
    deployment: Mapping[str, Any],
    data: ObjectData,
    name: str,
    *,
    release: Release,
    kubeconfig: Path | None = None,
    ports: Mapping[str, int] | None = None,
) -> Pod:
    """The controller container of ``deployment`` for a pod called ``name``.

    ``ports`` maps the CLI's bind-address environment variables to this pod's own port.
    """
    namespace = deployment["metadata"]["namespace"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    fields = {"metadata.name": name, "metadata.namespace": namespace}
    env: dict[str, str] = {}
    for item in container.get("env", []):
        env[item["name"]] = _env_value(item, env, data, fields)
    parts = [*container.get("command", []), *container.get("args", [])]
    argv = [expand(part, env) for part in parts]
    assert argv[0] == "mclease", f"the container runs {argv[0]!r}, not the mclease entry point"
    argv[0] = str(release.bin / "mclease")
    process_env = {**clean_environment(release.bin), "HOSTNAME": name, **env}
    if kubeconfig is not None:
        process_env["KUBECONFIG"] = str(kubeconfig)
    for variable, port in (ports or {}).items():
        process_env[variable] = f"127.0.0.1:{port}"
    return Pod(name, namespace, argv, process_env)


def _env_value(
    item: Mapping[str, Any], env: Mapping[str, str], data: ObjectData, fields: Mapping[str, str]
) -> str:
    if "value" in item:
        return expand(str(item["value"]), env)
    source = item["valueFrom"]
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        return data("ConfigMap", ref["name"])[ref["key"]]
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        return data("Secret", ref["name"])[ref["key"]]
    if "fieldRef" in source:
        return fields[source["fieldRef"]["fieldPath"]]
    raise AssertionError(f"env source the test cannot fill in: {item}")


# ----- RBAC ---------------------------------------------------------------------------------------


Grant = tuple[str, str, str]
"""(API group, resource[/subresource], verb)."""


def granted(documents: Sequence[dict[str, Any]], *names: str) -> set[Grant]:
    """Every (group, resource, verb) the Roles/ClusterRoles called ``names`` allow."""
    grants: set[Grant] = set()
    for doc in documents:
        if doc["kind"] in ("Role", "ClusterRole") and doc["metadata"]["name"] in names:
            for rule in doc.get("rules", []):
                for group in rule.get("apiGroups", []):
                    for resource in rule.get("resources", []):
                        grants.update((group, resource, verb) for verb in rule.get("verbs", []))
    return grants


def requests_of(events: Sequence[Mapping[str, Any]], user: str) -> dict[Grant, set[int]]:
    """The resource requests ``user`` sent (from audit events) and the response codes seen."""
    sent: dict[Grant, set[int]] = {}
    for event in events:
        ref = event.get("objectRef")
        if event.get("user", {}).get("username") != user or not ref:
            continue
        resource = ref.get("resource", "")
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        key = (ref.get("apiGroup", ""), resource, event["verb"])
        sent.setdefault(key, set()).add(int(event.get("responseStatus", {}).get("code", 0)))
    return sent
