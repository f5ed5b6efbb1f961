"""The Redis change feed beyond the conformance suite: the probe, the channel per prefix and
database, messages that are not ours, ACL users without the channel, a Redis Cluster node, and
one warning per loss without the password."""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
import redis

from mclease_core.conformance import sample_lease_data
from mclease_core.plugin import (
    RESYNC,
    Change,
    ChangeFeed,
    LeaseAlreadyExistsError,
    LeaseConflictError,
    LeaseObject,
)
from mclease_core.testing import ServerProcess, free_port, wait_until
from mclease_dev.canaries import CANARY_PASSWORDS
from mclease_redis import RedisStorage
from mclease_redis._feed import PROBE, SILENCE

PW, _, AWKWARD = CANARY_PASSWORDS

StartRedis = Callable[..., AbstractContextManager[ServerProcess]]


def _url(server: ServerProcess, options: str) -> str:
    return f"redis://{server.address}/0?{options}"


def _raw_client(server: ServerProcess, **kwargs: object) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, socket_timeout=5, **kwargs)  # type: ignore[arg-type]


def _resynced(feed: ChangeFeed, within: float = 5.0) -> list[Change]:
    seen: list[Change] = []
    deadline = time.monotonic() + within
    while not (RESYNC in seen and feed.connected):
        assert time.monotonic() < deadline, f"no resync within {within:g}s: {seen}"
        seen += feed.next(0.1)
    return seen


def _collect(
    feed: ChangeFeed, until: Callable[[list[Change]], bool], within: float = 3.0
) -> list[Change]:
    seen: list[Change] = []
    deadline = time.monotonic() + within
    while not until(seen) and time.monotonic() < deadline:
        seen += feed.next(0.1)
    return seen


@pytest.fixture
def feed_store(redis_server: ServerProcess) -> Iterator[RedisStorage]:
    with RedisStorage.from_url(_url(redis_server, "prefix=feed&timeout=0.5")) as store:
        yield store


# ----- liveness ----------------------------------------------------------------------------------


def test_an_idle_feed_pings_and_stays_connected(
    feed_store: RedisStorage, redis_server: ServerProcess
) -> None:
    """Idle for longer than SILENCE * timeout: only the probes' answers keep it connected."""
    with feed_store.watch() as feed:
        _resynced(feed)
        idle = SILENCE * feed_store.timeout + 0.5
        assert _collect(feed, lambda _: False, within=idle) == []
        assert feed.connected
        subscribers = [
            client
            for client in _raw_client(redis_server).client_list()
            if client["sub"] == "1" and client["name"] == ""
        ]
        assert [client["cmd"] for client in subscribers] == ["ping"]
        assert PROBE * feed_store.timeout < 1
        assert int(subscribers[0]["idle"]) <= 1  # whole seconds since its last command


def test_a_frozen_server_is_noticed_within_twice_the_timeout(start_redis: StartRedis) -> None:
    with (
        start_redis() as server,
        RedisStorage.from_url(_url(server, "prefix=frozen&timeout=0.5")) as store,
        store.watch() as feed,
    ):
        _resynced(feed)
        server.pause()
        try:
            frozen = time.monotonic()
            wait_until(lambda: not feed.next(0.05) and not feed.connected, timeout=5)
            noticed = time.monotonic() - frozen
            started = time.monotonic()
            assert feed.next(0.3) == []  # reconnecting to the frozen server stays bounded
            assert time.monotonic() - started < 0.3 + store.capabilities.operation_timeout
        finally:
            server.resume()
        assert noticed <= SILENCE * store.timeout + 0.3, f"noticed after {noticed:.2f}s"
        _resynced(feed)
        created = store.create("after", sample_lease_data())
        assert Change("after", created) in _collect(feed, lambda seen: len(seen) > 0)


def test_a_stopped_server_is_one_warning_then_a_resync(
    start_redis: StartRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """Several failed attempts while the server is down, one warning; no password in any log
    line; next() stays bounded."""
    with start_redis("--requirepass", PW) as server:
        url = f"redis://:{urllib.parse.quote(PW)}@{server.address}/0?prefix=stop&timeout=0.5"
        with RedisStorage.from_url(url) as store, store.watch() as feed:
            _resynced(feed)
            caplog.clear()
            with caplog.at_level(logging.DEBUG, logger="mclease.redis"):
                server.stop()
                for _ in range(10):
                    started = time.monotonic()
                    assert feed.next(0.2) == []
                    assert time.monotonic() - started < 0.2 + store.capabilities.operation_timeout
                assert not feed.connected
                server.start()
                _resynced(feed)
            warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(warnings) == 1, [r.getMessage() for r in warnings]
            assert "lost the change feed of Redis at" in warnings[0].getMessage()
            assert any("is back" in r.getMessage() for r in caplog.records)
            assert len([r for r in caplog.records if "still down" in r.getMessage()]) >= 2
            for record in caplog.records:
                assert PW not in record.getMessage()
                assert urllib.parse.quote(PW) not in record.getMessage()


# ----- the channel -------------------------------------------------------------------------------


def test_the_channel_is_per_prefix_and_database(redis_server: ServerProcess) -> None:
    with (
        RedisStorage.from_url(_url(redis_server, "prefix=chan")) as zero,
        RedisStorage.from_url(f"redis://{redis_server.address}/1?prefix=chan") as one,
        RedisStorage.from_url(_url(redis_server, "prefix=chan:changes:db1")) as lookalike,
        zero.watch() as feed,
    ):
        assert zero.channel == "chan:changes:db0"
        assert one.channel == "chan:changes:db1"
        assert len({zero.channel, one.channel, lookalike.channel}) == 3
        _resynced(feed)
        one.create("lease", sample_lease_data("db1"))
        lookalike.create("lease", sample_lease_data("lookalike"))
        mine = zero.create("lease", sample_lease_data("db0"))
        seen = _collect(feed, lambda seen: len(seen) > 0)
        assert _collect(feed, lambda _: False, within=0.3) == []
        assert seen == [Change("lease", mine)]


def test_messages_carry_the_record_and_odd_ones_resync(
    feed_store: RedisStorage, redis_server: ServerProcess
) -> None:
    """A record that does not decode is ``record=None``; a message the scripts cannot have sent
    is a resync (it may hide any change)."""
    raw = _raw_client(redis_server)
    with feed_store.watch() as feed:
        _resynced(feed)
        created = feed_store.create("a/b", sample_lease_data())
        for message in (b"broken\n7\n{not json", b"badversion\nx\n{}", b"\xff\xfe", b"a\nb"):
            raw.publish(feed_store.channel, message)
        feed_store.delete("a/b", version=created.version)
        seen = _collect(feed, lambda seen: Change("a/b") in seen)
    assert seen == [
        Change("a/b", created),
        Change("broken"),
        Change("badversion"),
        RESYNC,
        RESYNC,
        Change("a/b"),
    ]


def test_each_write_publishes_once_and_a_refused_write_not_at_all(
    feed_store: RedisStorage,
) -> None:
    with feed_store.watch() as feed:
        _resynced(feed)
        first = feed_store.create("once", sample_lease_data())
        with pytest.raises(LeaseAlreadyExistsError):
            feed_store.create("once", sample_lease_data("again"))
        second = feed_store.update("once", sample_lease_data("b"), version=first.version)
        with pytest.raises(LeaseConflictError):
            feed_store.update("once", sample_lease_data("c"), version=first.version)
        seen = _collect(feed, lambda seen: len(seen) >= 2)
        assert _collect(feed, lambda _: False, within=0.3) == []
    assert seen == [Change("once", first), Change("once", second)]


# ----- ACL users and Redis Cluster ---------------------------------------------------------------


def test_an_acl_user_without_the_channel_writes_and_says_why_feeds_miss_it(
    start_redis: StartRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis 7 gives a new ACL user no channels: the writes succeed (the PUBLISH is a pcall),
    one warning says what to grant, the user's feed cannot subscribe and says so; once the
    channel is granted, the feed resyncs and the writes are reported."""
    with start_redis("--requirepass", PW) as server:
        admin = _raw_client(server, password=PW)
        admin.acl_setuser(
            "alice", enabled=True, passwords=[f"+{AWKWARD}"], keys=["*"], commands=["+@all"]
        )
        admin.execute_command("ACL", "SETUSER", "alice", "resetchannels")
        user = urllib.parse.quote(AWKWARD, safe="")
        url = f"redis://alice:{user}@{server.address}/0?prefix=acl&timeout=0.5"
        with (
            caplog.at_level(logging.INFO, logger="mclease.redis"),
            RedisStorage.from_url(url) as store,
            store.watch() as feed,
        ):
            first = store.create("lease", sample_lease_data())
            second = store.update("lease", sample_lease_data("b"), version=first.version)
            assert store.read("lease") == second
            assert _collect(feed, lambda _: False, within=0.5) == []
            assert not feed.connected
            refusals = [
                r.getMessage() for r in caplog.records if "refused to publish" in r.getMessage()
            ]
            assert len(refusals) == 1
            assert "ACL SETUSER <user> &acl:changes:db0" in refusals[0]
            assert any(
                "may not run the lease's commands or use its change channel 'acl:changes:db0'"
                in r.getMessage()
                for r in caplog.records
                if "lost the change feed" in r.getMessage()
            )
            admin.execute_command("ACL", "SETUSER", "alice", f"&{store.channel}")
            _resynced(feed)
            third = store.update("lease", sample_lease_data("c"), version=second.version)
            assert Change("lease", third) in _collect(feed, lambda seen: len(seen) > 0)
        for record in caplog.records:
            assert AWKWARD not in record.getMessage()
            assert user not in record.getMessage()


def test_a_feed_on_a_cluster_node_sees_the_writes(start_redis: StartRedis) -> None:
    """A script's PUBLISH works on a Redis Cluster node (and is broadcast to the cluster)."""
    with start_redis(
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-port",
        str(free_port()),
    ) as server:
        raw = _raw_client(server)
        raw.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        wait_until(
            lambda: b"cluster_state:ok" in raw.execute_command("CLUSTER", "INFO"),
            timeout=10,
            message="the one-node cluster to be ready",
        )
        with RedisStorage.from_url(_url(server, "prefix=c")) as store, store.watch() as feed:
            _resynced(feed)
            written: list[Change] = []
            for key in ("a", "b/c", "{x}y"):
                created = store.create(key, sample_lease_data())
                store.delete(key, version=created.version)
                written += [Change(key, created), Change(key)]
            assert _collect(feed, lambda seen: len(seen) >= len(written)) == written


def test_the_records_in_changes_equal_reads(feed_store: RedisStorage) -> None:
    with feed_store.watch() as feed:
        _resynced(feed)
        created = feed_store.create("same", sample_lease_data(fencing_token=None))
        seen = _collect(feed, lambda seen: len(seen) > 0)
    assert seen == [Change("same", feed_store.read("same"))]
    assert isinstance(seen[0].record, LeaseObject)
    assert seen[0].record == created
