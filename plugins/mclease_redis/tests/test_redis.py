"""Redis-specific behaviour: URLs, credentials, key layout and hash slots, version counter,
outages, the elector."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from mclease_core import (
    ConfigurationError,
    CorruptRecordError,
    LeaseConflictError,
    LeaseTiming,
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
    free_port,
    wait_until,
)
from mclease_dev.canaries import CANARY_PASSWORDS
from mclease_redis import RedisStorage

PW, WRONG, AWKWARD = CANARY_PASSWORDS

StartRedis = Callable[..., AbstractContextManager[ServerProcess]]


def _url(server: ServerProcess, options: str = "prefix=specific") -> str:
    return f"redis://{server.address}/0?{options}"


def _raw_client(server: ServerProcess, **kwargs: object) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, socket_timeout=5, **kwargs)  # type: ignore[arg-type]


# ----- URLs and discovery ------------------------------------------------------------------------


def test_both_schemes_are_registered_through_the_entry_point() -> None:
    registry = load_backends()
    assert {"redis", "rediss"} <= set(registry.schemes())
    assert registry.get("redis").distribution == "mclease-redis"
    assert not [failure for failure in registry.failures if failure.plugin == "redis"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis:///0", "expected redis://"),
        ("redis://host/zero", "database number"),
        ("redis://host/0?colour=blue", "unknown redis URL option"),
        ("redis://host/0?timeout=soon", "number of seconds"),
        ("redis://host/0?timeout=0", "between 0.05 and 3600"),
        ("redis://host/0?timeout=1e308", "between 0.05 and 3600"),
        ("redis://host/0?ssl_ca_certs=/ca.pem", "rediss://"),
        (f"redis://:{PW}@host/notadb", "database number"),
        (f"redis://:{PW}@host/0?colour=blue", "unknown redis URL option"),
        (f"redis://:{PW}@host/0?password={PW}", "unknown redis URL option"),
        (f"redis://:{PW}@host/0?timeout=soon", "number of seconds"),
        (f"redis://:{PW}@host/0?ssl_ca_certs=/ca.pem", "rediss://"),
        (f"redis://:{PW}/0", "expected redis://"),
        (f"redis://:{AWKWARD}@host/0", "percent-encode"),
        ("redis://alice@host/0", "needs a password too"),
    ],
)
def test_bad_urls_are_rejected_clearly(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        RedisStorage.from_url(url)
    assert PW not in str(info.value)
    for piece in AWKWARD.split("@")[1].split("/"):
        assert piece not in str(info.value)


def test_url_options_reach_the_connection_pool() -> None:
    store = RedisStorage.from_url(
        f"rediss://alice:{urllib.parse.quote(AWKWARD, safe='')}@redis.example:6380/3"
        "?prefix=team-a&timeout=2.5&ssl_ca_certs=/etc/ca.pem"
    )
    options = store._pool.connection_kwargs
    assert (options["host"], options["port"], options["db"]) == ("redis.example", 6380, 3)
    # redis-py gets the credentials from our provider only, never in its own kwargs
    assert (options.get("username"), options.get("password")) == (None, None)
    assert options["credential_provider"].get_credentials() == ("alice", AWKWARD)
    assert options["socket_timeout"] == options["socket_connect_timeout"] == 2.5
    assert options["ssl_ca_certs"] == "/etc/ca.pem"
    assert store.prefix == "team-a"
    assert store.capabilities.may_lose_writes


# ----- credentials -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def protected_redis(start_redis: StartRedis) -> Iterator[ServerProcess]:
    """redis-server with ``requirepass`` and an ACL user ``alice`` whose password needs
    percent-encoding in a URL."""
    with start_redis("--requirepass", PW) as server:
        _raw_client(server, password=PW).acl_setuser(
            "alice", enabled=True, passwords=[f"+{AWKWARD}"], keys=["*"], commands=["+@all"]
        )
        yield server


def _password_file(directory: Path, password: str) -> Path:
    path = directory / "password"
    path.write_text(password + "\n")  # as `kubectl create secret --from-file` often stores it
    return path


@pytest.mark.parametrize("source", CREDENTIAL_SOURCES)
@pytest.mark.parametrize(
    ("username", "password"), [(None, PW), ("alice", AWKWARD)], ids=["requirepass", "acl-user"]
)
def test_credentials_from_each_source(
    protected_redis: ServerProcess, tmp_path: Path, username: str | None, password: str, source: str
) -> None:
    url = f"redis://{protected_redis.address}/0?prefix=credentials"
    check_credentials(
        RedisStorage.from_url,
        url,
        password,
        WRONG,
        username=username,
        directory=tmp_path,
        sources=[source],
    )


def test_no_password_for_a_protected_server_says_how_to_give_one(
    protected_redis: ServerProcess,
) -> None:
    with (
        RedisStorage.from_url(f"redis://{protected_redis.address}/0") as store,
        pytest.raises(
            ConfigurationError,
            match="requires a password; give it with "
            "password_file=PATH, \\$MCLEASE_STORAGE_PASSWORD or the URL",
        ),
    ):
        store.read("lease")


def test_a_missing_password_file_fails_when_opened(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    with pytest.raises(ConfigurationError, match="cannot read the redis password file") as info:
        RedisStorage.from_url(f"redis://127.0.0.1:1/0?password_file={missing}")
    assert repr(str(missing)) in str(info.value)


def test_a_new_connection_reads_the_rotated_password_file(
    protected_redis: ServerProcess, tmp_path: Path
) -> None:
    """A rotated Secret: the connected pool keeps working, and a new connection (here forced by
    CLIENT KILL) authenticates with the file's new content; a file gone meanwhile is a
    ConfigurationError naming it, and the store recovers once it is back."""
    raw = _raw_client(protected_redis, password=PW)
    path = _password_file(tmp_path, WRONG)
    url = f"redis://{protected_redis.address}/0?prefix=rotate&password_file={path}"
    with RedisStorage.from_url(url) as store:
        with pytest.raises(ConfigurationError, match="refused the credentials"):
            store.read("lease")
        _password_file(tmp_path, PW)
        created = store.create("lease", sample_lease_data())
        path.unlink()
        assert store.read("lease") == created  # the pooled connection stays authenticated
        raw.client_kill_filter(_type="normal", skipme=True)
        with pytest.raises(
            ConfigurationError, match=f"cannot read the redis password file '{path}'"
        ):
            store.read("lease")
        _password_file(tmp_path, PW)
        assert store.read("lease") == created


# ----- layout ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["plain", "with{brace", "}starts-closed", "{}", "a}b{c", "100%"])
def test_a_leases_keys_share_one_hash_slot(key: str) -> None:
    record, counter = RedisStorage.from_url("redis://h/0?prefix=p{x}").keys(key)
    assert key_slot(record.encode()) == key_slot(counter.encode())
    assert record.endswith(":record")
    assert counter.endswith(":version")


def test_keys_are_readable_with_redis_cli(redis_server: ServerProcess) -> None:
    with RedisStorage.from_url(_url(redis_server, "prefix=layout")) as store:
        store.create("app/leader", sample_lease_data())
    raw = _raw_client(redis_server)
    assert raw.exists("layout:{app/leader}:record", "layout:{app/leader}:version") == 2
    assert b'"holderIdentity":"holder-a"' in raw.hget("layout:{app/leader}:record", "data")  # type: ignore[operator]


def test_scripts_run_on_a_cluster_node_without_crossslot(start_redis: StartRedis) -> None:
    """A one-node Redis Cluster still refuses scripts whose keys span slots (and a password is
    checked: a wrong one is a clear, non-retryable error)."""
    with start_redis(
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-port",
        str(free_port()),
        "--requirepass",
        PW,
    ) as server:
        raw = _raw_client(server, password=PW)
        raw.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        wait_until(
            lambda: b"cluster_state:ok" in raw.execute_command("CLUSTER", "INFO"),
            timeout=10,
            message="the one-node cluster to be ready",
        )
        with (
            RedisStorage.from_url(f"redis://:{WRONG}@{server.address}/0") as store,
            pytest.raises(ConfigurationError, match="refused the credentials"),
        ):
            store.read("a")
        with RedisStorage.from_url(f"redis://:{PW}@{server.address}/0?prefix=c") as store:
            for key in ("a", "b/c", "{x}y", "ünï"):
                created = store.create(key, sample_lease_data())
                updated = store.update(key, sample_lease_data("b"), version=created.version)
                store.delete(key, version=updated.version)


# ----- versions ----------------------------------------------------------------------------------


def test_versions_never_go_back_when_the_counter_is_lost(redis_server: ServerProcess) -> None:
    with RedisStorage.from_url(_url(redis_server, "prefix=lost")) as store:
        first = store.create("lease", sample_lease_data())
        second = store.update("lease", sample_lease_data("b"), version=first.version)
        _raw_client(redis_server).delete(store.keys("lease")[1])
        third = store.update("lease", sample_lease_data("c"), version=second.version)
        assert third.version > second.version
        assert store.read("lease") == third


def test_a_non_positive_version_never_matches(redis_server: ServerProcess) -> None:
    with RedisStorage.from_url(_url(redis_server, "prefix=zero")) as store:
        with pytest.raises(LeaseConflictError):
            store.update("lease", sample_lease_data(), version=0)
        with pytest.raises(LeaseConflictError):
            store.delete("lease", version=-1)


# ----- corruption --------------------------------------------------------------------------------


def test_garbage_data_raises_the_corrupt_error(redis_server: ServerProcess) -> None:
    with RedisStorage.from_url(_url(redis_server, "prefix=garbage")) as store:
        record, _ = store.keys("lease")
        _raw_client(redis_server).hset(record, mapping={"data": b"\x00\xff not json", "version": 1})
        with pytest.raises(CorruptRecordError, match="corrupt"):
            store.read("lease")


def test_a_key_of_the_wrong_type_raises_the_corrupt_error(redis_server: ServerProcess) -> None:
    with RedisStorage.from_url(_url(redis_server, "prefix=wrongtype")) as store:
        _raw_client(redis_server).set(store.keys("lease")[0], b"a string, not a hash")
        with pytest.raises(CorruptRecordError, match="wrong type"):
            store.read("lease")
        with pytest.raises(CorruptRecordError):
            store.update("lease", sample_lease_data(), version=1)


def test_a_hash_without_its_version_raises_the_corrupt_error(redis_server: ServerProcess) -> None:
    with RedisStorage.from_url(_url(redis_server, "prefix=noversion")) as store:
        _raw_client(redis_server).hset(store.keys("lease")[0], "data", b"{}")
        with pytest.raises(CorruptRecordError, match="version"):
            store.read("lease")


# ----- outages -----------------------------------------------------------------------------------


def test_a_stopped_server_is_unavailable_then_recovers(start_redis: StartRedis) -> None:
    with start_redis() as server, RedisStorage.from_url(_url(server, "timeout=1")) as store:
        timings = check_outage_and_recovery(store, server, unavailable_within=3.0)
        assert max(timings.values()) < 3.0


def test_a_frozen_server_gives_bounded_errors(start_redis: StartRedis) -> None:
    with start_redis() as server, RedisStorage.from_url(_url(server, "timeout=0.5")) as store:
        check_frozen_server(store, server, unavailable_within=store.capabilities.operation_timeout)


# ----- the elector -------------------------------------------------------------------------------


def test_two_electors_elect_one_leader_and_fail_over(redis_server: ServerProcess) -> None:
    check_elector_takeover(
        lambda: RedisStorage.from_url(_url(redis_server, "prefix=elector&timeout=0.5")),
        timing=LeaseTiming(lease_duration=2.0, renew_deadline=1.5, retry_period=0.5),
    )
