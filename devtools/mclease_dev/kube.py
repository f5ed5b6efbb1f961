"""A real Kubernetes control plane for tests: etcd + kube-apiserver processes, envtest style.

For: tests that need the real API server's behaviour (CRD schema validation, the status
subresource, RBAC, generations, watches) without Docker. ``start_cluster`` starts one etcd and
one kube-apiserver bound to 127.0.0.1 on free ports, with a CA, a serving certificate, an admin
client certificate (``system:masters``), a service-account signing key and RBAC authorization,
and writes an admin kubeconfig. ``KubeCluster`` then hands out API clients, kubeconfigs for
service accounts (TokenRequest) and users (client certificates), and runs processes as them.

Not for: workloads. No controller-manager, scheduler or kubelet runs: namespaces must be created
explicitly, pods never start, garbage collection does not happen, and the ServiceAccount
admission plugin is off (as in controller-runtime's envtest).

Binaries: ``$KUBEBUILDER_ASSETS`` (a directory with ``kube-apiserver``, ``etcd`` and usually
``kubectl``), else the cache that ``hack/kube-assets.sh`` (``make kube-assets``) fills.

Processes are :class:`mclease_dev.processes.ManagedProcess` (own session, log file, SIGTERM
then SIGKILL); waits are :func:`mclease_core.testing.wait_until`. No pytest dependency: the
fixtures are in ``tests/kube/conftest.py``; the demo and the benchmarks use it directly.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mclease_core._closing import Closing
from mclease_core.testing import free_port, wait_until

from . import REPO_ROOT
from .processes import ManagedProcess, ProcessExitedError

__all__ = [
    "ETCD_VERSION",
    "K8S_VERSION",
    "REPO_ROOT",
    "AssetsMissingError",
    "ClusterStartError",
    "KubeAssets",
    "KubeCluster",
    "apply_manifest",
    "find_assets",
    "find_kubectl",
    "running_clusters",
    "start_cluster",
    "start_clusters",
    "wait_crd_established",
]

# Keep in step with hack/kube-assets.sh (the cache folder is keyed by both).
K8S_VERSION = "1.37.2"
ETCD_VERSION = "3.7.3"
SERVICE_CIDR = "10.0.0.0/24"
START_TIMEOUT_S = 90.0


class AssetsMissingError(RuntimeError):
    """The kube-apiserver / etcd binaries are not where the test bed looks for them."""


class ClusterStartError(RuntimeError):
    """A control-plane process did not come up; the message carries the tail of its log."""


# --- binaries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KubeAssets:
    """Paths of the control-plane binaries."""

    kube_apiserver: Path
    etcd: Path
    kubectl: Path | None


def default_assets_dir() -> Path:
    """The cache folder hack/kube-assets.sh fills, keyed by the versions."""
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    root = os.environ.get("MCLEASE_KUBE_ASSETS_CACHE", str(user_cache / "mclease" / "kube-assets"))
    return Path(root) / f"{K8S_VERSION}-etcd{ETCD_VERSION}"


def find_assets() -> KubeAssets:
    """Locate the binaries: ``$KUBEBUILDER_ASSETS``, else the hack/kube-assets.sh cache."""
    env_dir = os.environ.get("KUBEBUILDER_ASSETS")
    directory = Path(env_dir) if env_dir else default_assets_dir()
    missing = [b for b in ("kube-apiserver", "etcd") if not os.access(directory / b, os.X_OK)]
    if missing:
        origin = "KUBEBUILDER_ASSETS" if env_dir else "the kube-assets cache"
        raise AssetsMissingError(
            f"{', '.join(missing)} not found in {directory} ({origin}). "
            "Build them with `hack/kube-assets.sh` (or `make kube-assets`), "
            "or point KUBEBUILDER_ASSETS at a directory that has kube-apiserver and etcd."
        )
    kubectl = directory / "kubectl"
    found = kubectl if os.access(kubectl, os.X_OK) else shutil.which("kubectl")
    return KubeAssets(
        directory / "kube-apiserver", directory / "etcd", Path(found) if found else None
    )


def find_kubectl() -> Path:
    """The kubectl of :func:`find_assets` (beside kube-apiserver, else on PATH)."""
    kubectl = find_assets().kubectl
    if kubectl is None:
        raise AssetsMissingError(
            "kubectl not found beside kube-apiserver nor on PATH; run hack/kube-assets.sh "
            "(make kube-assets)"
        )
    return kubectl


# --- certificates -----------------------------------------------------------------------------


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class _KeyPair:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return _pem_cert(self.cert)

    @property
    def key_pem(self) -> bytes:
        return _pem_key(self.key)


def _name(common_name: str, organizations: Iterable[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _make_ca(common_name: str) -> _KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return _KeyPair(cert, key)


def _issue(
    ca: _KeyPair,
    common_name: str,
    *,
    organizations: Iterable[str] = (),
    server: bool = False,
) -> _KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        names: list[x509.GeneralName] = [
            x509.DNSName(n)
            for n in ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
        ]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "10.0.0.1")]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return _KeyPair(builder.sign(ca.key, hashes.SHA256()), key)


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


# --- processes --------------------------------------------------------------------------------


class _ControlPlaneProcess(ManagedProcess):
    """etcd or kube-apiserver: a start failure is a :class:`ClusterStartError` with its log."""

    def failure(self, what: str) -> ClusterStartError:
        return ClusterStartError(str(self.exited_error(what)))

    def wait_ready(self, check: Callable[[], bool], what: str, timeout: float) -> None:
        try:
            self.wait_until(check, timeout=timeout, message=what, interval=0.2)
        except ProcessExitedError as exc:
            raise ClusterStartError(str(exc)) from exc
        except AssertionError as exc:  # wait_until's timeout
            raise self.failure(f"did not become ready ({what}) within {timeout:.0f}s") from exc


# --- kubeconfig -------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _kubeconfig(
    cluster: str, server: str, ca_pem: bytes, user: str, credentials: Mapping[str, str]
) -> str:
    context = f"{user}@{cluster}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [{"name": user, "user": dict(credentials)}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
    }
    return json.dumps(doc, indent=2)  # JSON is YAML: no YAML library needed


# --- the cluster ------------------------------------------------------------------------------

_RUNNING: set[KubeCluster] = set()


@dataclass(eq=False)
class KubeCluster(Closing):
    """One simulated cluster: an etcd and a kube-apiserver of its own, and their files.

    Build it with :func:`start_cluster`; stop it with :meth:`stop` (or use it as a context
    manager). ``kubeconfig`` is the admin kubeconfig (client certificate, ``system:masters``).
    """

    name: str
    workdir: Path
    assets: KubeAssets
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)
    audit: bool = False
    """Record every request (who, verb, resource, response code) in :attr:`audit_log`."""
    _processes: list[_ControlPlaneProcess] = field(default_factory=list, repr=False)
    _clients: list[Any] = field(default_factory=list, repr=False)
    _ca: _KeyPair | None = field(default=None, repr=False)

    # -- public view --

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def apiserver_log(self) -> Path:
        return self.workdir / "kube-apiserver.log"

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (JSON lines, one per request) when started with audit."""
        return self.workdir / "audit.log"

    def audit_events(self) -> list[dict[str, Any]]:
        """Every request the audit log holds so far, once each (its latest stage: a watch that
        is still open shows as ResponseStarted)."""
        if not self.audit_log.exists():
            return []
        latest: dict[str, dict[str, Any]] = {}
        for line in self.audit_log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                latest[event["auditID"]] = event
        return list(latest.values())

    @property
    def pids(self) -> list[int]:
        """Process ids of etcd and kube-apiserver (each leads its own process group)."""
        return [p.pid for p in self._processes if p.popen is not None]

    @property
    def running(self) -> bool:
        return bool(self._processes) and all(p.alive() for p in self._processes)

    def close(self) -> None:
        """The context manager's exit: :meth:`stop`."""
        self.stop()

    # -- start --

    def _pki(self) -> Path:
        return self.workdir / "pki"

    def _write_pki(self) -> None:
        pki = self._pki()
        pki.mkdir(parents=True, exist_ok=True)
        self._ca = ca = _make_ca(f"mclease-testbed-{self.name}-ca")
        serving = _issue(ca, "kube-apiserver", server=True)
        admin = _issue(ca, "admin", organizations=["system:masters"])
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write(pki / "ca.crt", ca.cert_pem, 0o644)
        _write(pki / "apiserver.crt", serving.cert_pem, 0o644)
        _write(pki / "apiserver.key", serving.key_pem)
        _write(pki / "sa.key", _pem_key(sa_key))
        sa_pub = sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write(pki / "sa.pub", sa_pub, 0o644)
        _write(pki / "admin.pem", admin.cert_pem + admin.key_pem)
        credentials = {
            "client-certificate-data": _b64(admin.cert_pem),
            "client-key-data": _b64(admin.key_pem),
        }
        text = _kubeconfig(self.name, self.url, ca.cert_pem, "admin", credentials)
        _write(self.kubeconfig, text.encode())

    def _etcd_argv(self) -> list[str]:
        return [
            str(self.assets.etcd),
            f"--name={self.name}",
            f"--data-dir={self.workdir / 'etcd-data'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
            f"--initial-cluster={self.name}=http://127.0.0.1:{self.etcd_peer_port}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        pki = self._pki()
        return [
            str(self.assets.kube_apiserver),
            f"--etcd-servers={self.etcd_url}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--secure-port={self.port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # 1.37 refuses a loopback advertise address with the lease/master-count reconcilers;
            # nothing here needs the endpoints of the in-cluster "kubernetes" Service.
            "--endpoint-reconciler-type=none",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={self.url}",
            f"--api-audiences={self.url}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
            *(self._audit_argv() if self.audit else []),
        ]

    def _audit_argv(self) -> list[str]:
        policy = {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived"],
            "rules": [{"level": "Metadata"}],
        }
        path = _write(self.workdir / "audit-policy.yaml", json.dumps(policy).encode(), 0o644)
        return [
            f"--audit-policy-file={path}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
        ]

    def _launch(self, name: str, argv: list[str]) -> _ControlPlaneProcess:
        process = _ControlPlaneProcess(name, argv, self.workdir / f"{name}.log")
        self._processes.append(process)
        process.start()
        return process

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.etcd_port}/health", timeout=1
            ) as resp:
                return b'"true"' in resp.read()
        except (OSError, urllib.error.URLError):
            return False

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self._pki() / "admin.pem"))
        return context

    def readyz(self) -> bool:
        """True when the API server answers ``/readyz`` with ok."""
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{self.port}/readyz", timeout=2, context=self._ssl_context()
            ) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def start_etcd(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        _RUNNING.add(self)
        self._launch("etcd", self._etcd_argv())

    def wait_etcd(self) -> None:
        self._processes[0].wait_ready(self._etcd_healthy, "etcd /health", START_TIMEOUT_S)

    def start_apiserver(self) -> None:
        self._write_pki()
        self._launch("kube-apiserver", self._apiserver_argv())

    def wait_apiserver(self, timeout: float = START_TIMEOUT_S) -> None:
        self._processes[-1].wait_ready(self.readyz, "kube-apiserver /readyz", timeout)

    # -- stop --

    def stop(self) -> None:
        """Stop the API server, then etcd, and close the API clients this cluster handed out."""
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        try:
            for process in reversed(self._processes):
                process.terminate()
        finally:
            self._processes.clear()
            _RUNNING.discard(self)

    # -- clients --

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for ``kubeconfig`` (default: admin).

        The cluster closes it on :meth:`stop`; a caller may close it earlier.
        """
        from kubernetes import config

        path = str(kubeconfig or self.kubeconfig)
        client = config.new_client_from_config(config_file=path)  # type: ignore[no-untyped-call,unused-ignore]
        self._clients.append(client)
        return client

    def kubeconfig_for_service_account(
        self, namespace: str, name: str, *, create: bool = True, expiration_seconds: int = 3600
    ) -> Path:
        """A kubeconfig that authenticates as ``system:serviceaccount:<namespace>:<name>``.

        Creates the namespace and the ServiceAccount when ``create`` (and they are missing),
        then asks the TokenRequest API for a bound token.
        """
        from kubernetes import client as k8s

        api = k8s.CoreV1Api(self.api_client())
        if create:
            self.ensure_namespace(namespace)
            _create_if_missing(
                lambda: api.create_namespaced_service_account(
                    namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=name))
                )
            )
        request = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[self.url], expiration_seconds=expiration_seconds)
        )
        status = api.create_namespaced_service_account_token(name, namespace, request).status
        if status is None or not status.token:
            raise RuntimeError(f"TokenRequest for {namespace}/{name} returned no token")
        token: str = status.token
        user = f"system:serviceaccount:{namespace}:{name}"
        return self._write_user_kubeconfig(f"sa-{namespace}-{name}", user, {"token": token})

    def kubeconfig_for_user(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig with a client certificate for ``user`` in ``groups`` (no RBAC added)."""
        assert self._ca is not None, "the cluster is not started"
        pair = _issue(self._ca, user, organizations=groups)
        credentials = {
            "client-certificate-data": _b64(pair.cert_pem),
            "client-key-data": _b64(pair.key_pem),
        }
        return self._write_user_kubeconfig(f"user-{user}", user, credentials)

    def _write_user_kubeconfig(self, stem: str, user: str, credentials: Mapping[str, str]) -> Path:
        assert self._ca is not None, "the cluster is not started"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
        path = self.workdir / "kubeconfigs" / f"{safe}.kubeconfig"
        path.parent.mkdir(exist_ok=True)
        text = _kubeconfig(self.name, self.url, self._ca.cert_pem, user, credentials)
        return _write(path, text.encode())

    def ensure_namespace(self, namespace: str) -> None:
        """Create ``namespace`` unless it exists (no controller-manager creates any)."""
        from kubernetes import client as k8s

        api = k8s.CoreV1Api(self.api_client())
        body = k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace))
        _create_if_missing(lambda: api.create_namespace(body))

    # -- processes acting as someone --

    def run_as(
        self,
        kubeconfig: Path,
        argv: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        check: bool = False,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` with ``KUBECONFIG=kubeconfig``: as the identity that kubeconfig holds."""
        full_env = {
            **os.environ,
            "KUBECACHEDIR": str(self.workdir / "kube-cache"),
            **(env or {}),
            "KUBECONFIG": str(kubeconfig),
        }
        return subprocess.run(
            [os.fspath(a) for a in argv],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            input=input,
        )

    def kubectl(
        self,
        *args: str | os.PathLike[str],
        kubeconfig: Path | None = None,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster (as admin unless ``kubeconfig`` says otherwise)."""
        if self.assets.kubectl is None:
            raise AssetsMissingError(
                "kubectl not found beside kube-apiserver nor on PATH; run hack/kube-assets.sh"
            )
        result = self.run_as(
            kubeconfig or self.kubeconfig, [self.assets.kubectl, *args], input=input
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, result.args, result.stdout, result.stderr
            )
        return result


def apply_manifest(cluster: KubeCluster, manifest: str) -> str:
    """``kubectl apply --server-side`` the YAML text as admin; return kubectl's output."""
    return cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=mclease-testbed",
        "-f",
        "-",
        input=manifest,
    ).stdout


def wait_crd_established(cluster: KubeCluster, name: str, timeout: float = 30.0) -> Any:
    """Wait until the CRD ``name`` is Established; return it (a V1CustomResourceDefinition)."""
    from kubernetes import client as k8s

    api = k8s.ApiextensionsV1Api(cluster.api_client())

    def crd_if_established() -> Any:
        crd = api.read_custom_resource_definition(name)
        found = crd.status.conditions if crd.status else None
        return (
            crd
            if any(c.type == "Established" and c.status == "True" for c in found or [])
            else None
        )

    return wait_until(
        crd_if_established, timeout=timeout, interval=0.2, message=f"CRD {name} Established"
    )


def _create_if_missing(create: Callable[[], object]) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        create()
    except ApiException as exc:
        if exc.status != 409:
            raise


@atexit.register
def _stop_leftovers() -> None:
    """Last resort if a caller forgot ``stop()``: no control plane outlives the test process."""
    for cluster in list(_RUNNING):
        cluster.stop()


# --- starting ---------------------------------------------------------------------------------


def _start_all(clusters: Sequence[KubeCluster]) -> None:
    """Start the etcds, then the API servers, side by side; on failure stop everything."""
    try:
        for cluster in clusters:
            cluster.start_etcd()
        for cluster in clusters:
            cluster.wait_etcd()
            cluster.start_apiserver()
        for cluster in clusters:
            cluster.wait_apiserver()
    except BaseException:
        for cluster in clusters:
            cluster.stop()
        raise


_START_ATTEMPTS = 3


def _start_fresh(make: Callable[[], list[KubeCluster]]) -> list[KubeCluster]:
    """Start the clusters ``make`` builds; on a port clash, wipe them and retry on new ports."""
    for attempt in range(1, _START_ATTEMPTS + 1):
        clusters = make()
        try:
            _start_all(clusters)
            return clusters
        except ClusterStartError as exc:
            if "address already in use" not in str(exc) or attempt == _START_ATTEMPTS:
                raise
            for cluster in clusters:
                shutil.rmtree(cluster.workdir, ignore_errors=True)
    raise AssertionError("unreachable")


def start_cluster(name: str, workdir: Path, assets: KubeAssets | None = None) -> KubeCluster:
    """Start one control plane whose files live in ``workdir``; return it once ``/readyz`` is ok."""
    found = assets or find_assets()
    (cluster,) = _start_fresh(lambda: [KubeCluster(name, workdir, found)])
    return cluster


def start_clusters(
    names: Sequence[str], root: Path, assets: KubeAssets | None = None, *, audit: bool = False
) -> dict[str, KubeCluster]:
    """Start one independent control plane per name, in ``root/<name>``, side by side
    (``audit``: each records every request in its :attr:`KubeCluster.audit_log`)."""
    found = assets or find_assets()
    clusters = _start_fresh(
        lambda: [KubeCluster(name, root / name, found, audit=audit) for name in names]
    )
    return {cluster.name: cluster for cluster in clusters}


@contextlib.contextmanager
def running_clusters(
    names: Sequence[str], root: Path, assets: KubeAssets | None = None, *, audit: bool = False
) -> Iterator[dict[str, KubeCluster]]:
    """:func:`start_clusters` for the duration of a ``with`` block: all stopped at its end."""
    clusters = start_clusters(names, root, assets, audit=audit)
    try:
        yield clusters
    finally:
        for cluster in clusters.values():
            cluster.stop()
