"""etcd-specific behaviour: URLs, revisions as versions, TLS and authentication (passwords from
the URL, a file or the environment), outages, the elector."""

from __future__ import annotations

import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import grpc
import pyetcd  # type: ignore[import-untyped]
import pytest
from pyetcd import etcdrpc

from mclease_core import (
    ConfigurationError,
    CorruptRecordError,
    LeaseConflictError,
    LeaseNotFoundError,
    LeaseTiming,
    StorageError,
    StorageUnavailableError,
    load_backends,
)
from mclease_core.conformance import sample_lease_data
from mclease_core.testing import (
    CREDENTIAL_SOURCES,
    ServerProcess,
    check_credentials,
    check_elector_takeover,
    check_frozen_server,
    check_outage_and_recovery,
)
from mclease_dev.canaries import CANARY_PASSWORDS
from mclease_etcd import EtcdConfig, EtcdStorage

PW, WRONG, AWKWARD = CANARY_PASSWORDS

StartEtcd = Callable[..., AbstractContextManager[ServerProcess]]


def _url(server: ServerProcess, path: str = "specific", options: str = "timeout=2") -> str:
    return f"etcd://{server.address}/{path}?{options}"


def _raw_client(server: ServerProcess) -> pyetcd.Etcd3Client:
    return pyetcd.client(server.host, server.port, timeout=5)


# ----- URLs and discovery ------------------------------------------------------------------------


def test_both_schemes_are_registered_through_the_entry_point() -> None:
    registry = load_backends()
    assert {"etcd", "etcds"} <= set(registry.schemes())
    assert registry.get("etcd").distribution == "mclease-etcd"


def test_a_full_url_is_parsed() -> None:
    config = EtcdConfig.from_url(
        f"etcds://al%40ice:{urllib.parse.quote(AWKWARD, safe='')}@etcd-0:2379,etcd-1,[::1]:2380"
        "/team/a?timeout=1.5&cert_cert=/c.pem&cert_key=/k.pem"
    )
    assert config.endpoints == (("etcd-0", 2379), ("etcd-1", 2379), ("::1", 2380))
    assert (config.user, config.password) == ("al@ice", AWKWARD)
    assert (config.prefix, config.timeout, config.tls) == ("team/a", 1.5, True)
    assert (config.cert_cert, config.cert_key, config.ca_cert) == ("/c.pem", "/k.pem", None)
    assert AWKWARD not in repr(config)


def test_defaults() -> None:
    config = EtcdConfig.from_url("etcd://localhost")
    assert config.endpoints == (("localhost", 2379),)
    assert (config.prefix, config.tls, config.user) == ("mclease", False, None)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("etcd:///prefix", "expected etcd://"),
        ("etcd://host:http/x", "invalid port"),
        ("etcd://host/x?colour=blue", "unknown etcd URL option"),
        ("etcd://host/x?timeout=-1", "between 0.05 and 3600"),
        ("etcd://host/x?ca_cert=/ca.pem", "etcds://"),
        ("etcds://host/x?cert_cert=/c.pem", "go together"),
        ("etcd://alice@host/x", "needs a user name and a password; give the password"),
        (f"etcd://:{PW}@host/x", "give the user name"),
        ("etcds://host/x?ca_cert=/no/such/ca.pem", "cannot read"),
        (f"etcd://root:{PW}@host:http/x", "invalid port"),
        (f"etcd://root:{PW}@/x", "a host is empty"),
        (f"etcd://:{PW}/x", "invalid port"),
        (f"etcd://root:{PW}@host/x?colour=blue", "unknown etcd URL option"),
        (f"etcd://root:{PW}@host/x?ca_cert=/ca.pem", "etcds://"),
        (f"etcds://root:{PW}@host/x?cert_cert=/c.pem", "go together"),
        (f"etcd://root:{AWKWARD}@host/x", "percent-encode"),
        ("etcd://root@host/x?password_file=/no/such/password", "cannot read the etcd password"),
    ],
)
def test_bad_urls_are_rejected_clearly(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        EtcdStorage.from_url(url)
    assert PW not in str(info.value)
    for piece in AWKWARD.split("@")[1].split("/"):
        assert piece not in str(info.value)


# ----- revisions ---------------------------------------------------------------------------------


def test_the_version_is_the_keys_mod_revision(etcd_server: ServerProcess) -> None:
    with EtcdStorage.from_url(_url(etcd_server, "revisions")) as store:
        created = store.create("app/leader", sample_lease_data())
        updated = store.update("app/leader", sample_lease_data("b"), version=created.version)
    value, meta = _raw_client(etcd_server).get(b"revisions/app/leader")
    assert meta.mod_revision == updated.version
    assert b'"holderIdentity":"b"' in value


def test_a_non_positive_version_never_creates_or_deletes(etcd_server: ServerProcess) -> None:
    with EtcdStorage.from_url(_url(etcd_server, "zero")) as store:
        with pytest.raises(LeaseConflictError):
            store.update("lease", sample_lease_data(), version=0)
        with pytest.raises(LeaseConflictError):
            store.delete("lease", version=0)
        assert _raw_client(etcd_server).get(b"zero/lease") == (None, None)


def test_garbage_value_raises_the_corrupt_error(etcd_server: ServerProcess) -> None:
    _raw_client(etcd_server).put(b"garbage/lease", b"\x00\xff not json")
    with (
        EtcdStorage.from_url(_url(etcd_server, "garbage")) as store,
        pytest.raises(CorruptRecordError, match="corrupt"),
    ):
        store.read("lease")


# ----- TLS and authentication --------------------------------------------------------------------


_NEW_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
"""openssl req's options for a new P-256 key without a passphrase."""


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _certificate(directory: Path, name: str, extension: str) -> None:
    key, csr, ext = (directory / f"{name}{suffix}" for suffix in (".key", ".csr", ".ext"))
    ext.write_text(extension + "\n")
    _openssl("req", *_NEW_EC_KEY, "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    _openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        directory / "ca.pem",
        "-CAkey",
        directory / "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        directory / f"{name}.pem",
        "-extfile",
        ext,
    )


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    _openssl(
        "req",
        "-x509",
        *_NEW_EC_KEY,
        "-keyout",
        directory / "ca.key",
        "-out",
        directory / "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=mclease-test-ca",
    )
    _certificate(directory, "server", "subjectAltName=IP:127.0.0.1")
    _certificate(directory, "client", "extendedKeyUsage=clientAuth")
    return directory


@pytest.fixture(scope="module")
def secure_etcd(
    start_etcd: StartEtcd, certificates: Path
) -> Iterator[tuple[ServerProcess, str, Path]]:
    """etcd with TLS, client certificates, and authentication (root and the first canary
    password), whose tokens expire after one idle second."""
    pki = certificates
    tls = f"ca_cert={pki}/ca.pem&cert_cert={pki}/client.pem&cert_key={pki}/client.key"
    with start_etcd(
        "--cert-file",
        pki / "server.pem",
        "--key-file",
        pki / "server.key",
        "--client-cert-auth",
        "--trusted-ca-file",
        pki / "ca.pem",
        "--auth-token-ttl",
        "1",
        scheme="https",
        ready=lambda port: _serves(f"etcds://127.0.0.1:{port}/probe?{tls}"),
    ) as server:
        _enable_authentication(
            pyetcd.client(
                server.host,
                server.port,
                timeout=5,
                ca_cert=str(pki / "ca.pem"),
                cert_cert=str(pki / "client.pem"),
                cert_key=str(pki / "client.key"),
            )
        )
        yield server, tls, pki


def _serves(url: str) -> bool:
    try:
        with EtcdStorage.from_url(url) as store:
            store.read("readiness-probe")
    except LeaseNotFoundError:
        return True
    except StorageError:
        return False
    return True


def _enable_authentication(raw: pyetcd.Etcd3Client) -> None:
    """Give etcd the user root (the first canary password), turn authentication on, close."""
    raw.authstub.UserAdd(etcdrpc.AuthUserAddRequest(name="root", password=PW), 5)
    raw.authstub.UserGrantRole(etcdrpc.AuthUserGrantRoleRequest(user="root", role="root"), 5)
    raw.authstub.AuthEnable(etcdrpc.AuthEnableRequest(), 5)
    raw.close()


def test_tls_with_user_and_password(secure_etcd: tuple[ServerProcess, str, Path]) -> None:
    server, tls, pki = secure_etcd
    plain_client = pyetcd.client(
        server.host,
        server.port,
        timeout=5,
        user="root",
        password=PW,
        ca_cert=str(pki / "ca.pem"),
        cert_cert=str(pki / "client.pem"),
        cert_key=str(pki / "client.key"),
    )
    with EtcdStorage.from_url(f"etcds://root:{PW}@{server.address}/tls?{tls}") as store:
        created = store.create("lease", sample_lease_data())
        assert store.read("lease") == created
        time.sleep(2.5)  # let etcd expire the idle tokens; the next call must re-authenticate
        with pytest.raises(grpc.RpcError, match="invalid auth token"):
            plain_client.get(b"tls/lease")  # what pyetcd alone does with an expired token
        store.update("lease", sample_lease_data("b"), version=created.version)
        assert store.read("lease").data.holder_identity == "b"
    plain_client.close()


@pytest.fixture(scope="module")
def auth_etcd(start_etcd: StartEtcd) -> Iterator[ServerProcess]:
    """Plain-text etcd with authentication: root has the first canary password."""
    with start_etcd() as server:
        _enable_authentication(_raw_client(server))
        yield server


def _password_file(directory: Path, password: str) -> Path:
    path = directory / "password"
    path.write_text(password + "\n")
    return path


@pytest.mark.parametrize("source", CREDENTIAL_SOURCES)
@pytest.mark.parametrize("channel", ["plain-text", "tls"])
def test_credentials_from_each_source(
    request: pytest.FixtureRequest, tmp_path: Path, channel: str, source: str
) -> None:
    """The right and a wrong password. Over TLS the user name is in the URL; on plain text it
    comes from the password's source, and the token goes as metadata (gRPC refuses call
    credentials on an insecure channel)."""
    if channel == "tls":
        server, tls, _ = request.getfixturevalue("secure_etcd")
        url, username = f"etcds://root@{server.address}/credentials?{tls}", None
    else:
        url, username = f"etcd://{request.getfixturevalue('auth_etcd').address}/credentials", "root"
    check_credentials(
        EtcdStorage.from_url,
        url,
        PW,
        WRONG,
        username=username,
        directory=tmp_path,
        sources=[source],
        says=("refused the credentials (etcdserver: authentication failed", "user name 'root'"),
    )


def test_no_credentials_for_a_server_with_authentication(auth_etcd: ServerProcess) -> None:
    with (
        EtcdStorage.from_url(f"etcd://{auth_etcd.address}/none") as store,
        pytest.raises(
            ConfigurationError,
            match=r"requires authentication .*user name is "
            r"empty.*username_file=PATH",
        ),
    ):
        store.read("lease")


def test_a_changed_password_is_read_from_the_file_again(
    auth_etcd: ServerProcess, tmp_path: Path
) -> None:
    """Changing a user's password revokes its tokens; the store re-authenticates with the file's
    new content (a rotated Secret), without being reopened."""
    admin = pyetcd.client(auth_etcd.host, auth_etcd.port, timeout=5, user="root", password=PW)
    admin.call_credentials = None  # plain text: the token as metadata
    auth, token = admin.authstub, admin.metadata
    auth.UserAdd(etcdrpc.AuthUserAddRequest(name="carol", password=PW), 5, metadata=token)
    auth.UserGrantRole(
        etcdrpc.AuthUserGrantRoleRequest(user="carol", role="root"), 5, metadata=token
    )
    path = _password_file(tmp_path, PW)
    with EtcdStorage.from_url(
        f"etcd://carol@{auth_etcd.address}/rotate?password_file={path}"
    ) as store:
        created = store.create("lease", sample_lease_data())
        _password_file(tmp_path, WRONG)
        auth.UserChangePassword(
            etcdrpc.AuthUserChangePasswordRequest(name="carol", password=WRONG),
            5,
            metadata=token,
        )
        assert store.read("lease") == created
    admin.close()


def test_plaintext_against_a_tls_server_is_unavailable(
    secure_etcd: tuple[ServerProcess, str, Path],
) -> None:
    server, _, _ = secure_etcd
    with (
        EtcdStorage.from_url(f"etcd://{server.address}/tls?timeout=1") as store,
        pytest.raises(StorageUnavailableError),
    ):
        store.read("lease")


# ----- outages -----------------------------------------------------------------------------------


def test_a_stopped_server_is_unavailable_then_recovers(start_etcd: StartEtcd) -> None:
    with start_etcd() as server, EtcdStorage.from_url(_url(server, options="timeout=1")) as store:
        timings = check_outage_and_recovery(store, server, unavailable_within=3.0)
        assert max(timings.values()) < 3.0


def test_a_frozen_server_gives_bounded_errors(start_etcd: StartEtcd) -> None:
    with start_etcd() as server, EtcdStorage.from_url(_url(server, options="timeout=0.5")) as store:
        check_frozen_server(store, server, unavailable_within=store.capabilities.operation_timeout)


# ----- the elector -------------------------------------------------------------------------------


def test_two_electors_elect_one_leader_and_fail_over(etcd_server: ServerProcess) -> None:
    check_elector_takeover(
        lambda: EtcdStorage.from_url(_url(etcd_server, "elector", "timeout=0.5")),
        timing=LeaseTiming(lease_duration=2.0, renew_deadline=1.5, retry_period=0.5),
    )
