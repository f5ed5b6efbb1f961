"""The etcd change feed beyond the conformance suite: the probes of an idle watch, how soon a
frozen server is noticed, the prefix's edges, failover between endpoints, authentication."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pyetcd  # type: ignore[import-untyped]
import pytest
from pyetcd import etcdrpc

from mclease_core.conformance import sample_lease_data
from mclease_core.plugin import RESYNC, Change, ChangeFeed
from mclease_core.testing import LOOPBACK, ServerProcess, free_port
from mclease_dev.canaries import CANARY_PASSWORDS
from mclease_etcd import EtcdStorage
from mclease_etcd._feed import PROBE, SILENCE

PW, WRONG, _ = CANARY_PASSWORDS

StartEtcd = Callable[..., AbstractContextManager[ServerProcess]]


def _resynced(feed: ChangeFeed, within: float) -> list[Change]:
    seen: list[Change] = []
    deadline = time.monotonic() + within
    while not (RESYNC in seen and feed.connected):
        assert time.monotonic() < deadline, f"no resync within {within:g}s: {seen}"
        seen += feed.next(0.2)
    return seen


def _collect(feed: ChangeFeed, seconds: float) -> list[Change]:
    seen: list[Change] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen += feed.next(max(0.0, min(0.2, deadline - time.monotonic())))
    return seen


def test_the_silence_bound_is_within_the_operation_timeout() -> None:
    for timeout in (0.05, 0.5, 1.0, 5.0, 60.0):
        store = EtcdStorage.from_url(f"etcd://{LOOPBACK}:2379/x?timeout={timeout}")
        assert PROBE * timeout < SILENCE * timeout < store.capabilities.operation_timeout


def test_an_idle_feed_stays_connected_on_its_probes(etcd_server: ServerProcess) -> None:
    """Without probes etcd says nothing on an idle watch and the feed would give up after
    SILENCE x timeout (1 s here); it stays connected for three times that, without a resync."""
    url = f"etcd://{etcd_server.address}/idle?timeout=0.5"
    with EtcdStorage.from_url(url) as store, store.watch() as feed:
        _resynced(feed, 5)
        deadline = time.monotonic() + 3 * SILENCE * 0.5
        while time.monotonic() < deadline:
            assert feed.next(0.1) == []
            assert feed.connected, "an idle feed whose server answers lost its connection"
        written = store.create("after-idle", sample_lease_data())
        assert Change("after-idle", written) in _collect(feed, 1)


def test_a_frozen_server_is_noticed_after_twice_the_timeout(
    start_etcd: StartEtcd, caplog: pytest.LogCaptureFixture
) -> None:
    """Disconnected SILENCE x timeout after the last answer (not sooner than a probe could be
    answered), ``next`` bounded meanwhile, one warning however many attempts fail."""
    caplog.set_level(logging.DEBUG, logger="mclease.etcd")
    with start_etcd() as server:
        url = f"etcd://{server.address}/frozen?timeout=0.5"
        with EtcdStorage.from_url(url) as store, store.watch() as feed:
            _resynced(feed, 5)
            server.pause()
            try:
                frozen = time.monotonic()
                while feed.connected:
                    feed.next(0.05)
                noticed = time.monotonic() - frozen
                started = time.monotonic()
                assert feed.next(1.0) == []
                took = time.monotonic() - started
            finally:
                server.resume()
            assert PROBE * 0.5 < noticed < store.capabilities.operation_timeout
            assert took < 1.0 + store.capabilities.operation_timeout
            _resynced(feed, store.capabilities.operation_timeout + 2)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "answered nothing" in warnings[0].getMessage()


def test_the_feed_reports_the_prefix_only_and_decodes_like_read(
    etcd_server: ServerProcess,
) -> None:
    """Keys of a longer prefix (``edge/a`` against ``edge/ab``) are not reported, nor keys no
    read can name; a corrupt value is ``record=None``; a record equals what read returns."""
    raw = pyetcd.client(etcd_server.host, etcd_server.port, timeout=5)
    url = f"etcd://{etcd_server.address}/edge/a?timeout=2"
    try:
        with EtcdStorage.from_url(url) as store, store.watch() as feed:
            _resynced(feed, 5)
            raw.put(b"edge/ab/lease", b"{}")
            raw.put(b"edge/a", b"{}")
            raw.put(b"edge/a/\xff\xfe", b"{}")
            raw.put(b"edge/a/bad\nkey", b"{}")
            raw.put(b"edge/a/garbage", b"{not json")
            written = store.create("sub/lease", sample_lease_data())
            raw.delete(b"edge/a/garbage")
            seen = _collect(feed, 1)
            assert seen == [Change("garbage"), Change("sub/lease", written), Change("garbage")]
            assert store.read("sub/lease") == written
    finally:
        raw.close()


def test_a_feed_tries_the_next_endpoint(etcd_server: ServerProcess) -> None:
    closed = f"{LOOPBACK}:{free_port()}"
    url = f"etcd://{closed},{etcd_server.address}/failover?timeout=0.5"
    with (
        EtcdStorage.from_url(url) as store,
        store.watch() as feed,
        EtcdStorage.from_url(f"etcd://{etcd_server.address}/failover") as writer,
    ):
        _resynced(feed, 5)
        written = writer.create("lease", sample_lease_data())
        assert Change("lease", written) in _collect(feed, 1)


@pytest.fixture(scope="module")
def auth_etcd(start_etcd: StartEtcd) -> Iterator[ServerProcess]:
    """etcd with authentication (root has the first canary password), whose tokens expire after
    one idle second."""
    with start_etcd("--auth-token-ttl", "1") as server:
        raw = pyetcd.client(server.host, server.port, timeout=5)
        raw.authstub.UserAdd(etcdrpc.AuthUserAddRequest(name="root", password=PW), 5)
        raw.authstub.UserGrantRole(etcdrpc.AuthUserGrantRoleRequest(user="root", role="root"), 5)
        raw.authstub.AuthEnable(etcdrpc.AuthEnableRequest(), 5)
        raw.close()
        yield server


def test_a_feed_with_a_password_outlives_its_token(auth_etcd: ServerProcess) -> None:
    url = f"etcd://root:{PW}@{auth_etcd.address}/auth?timeout=1"
    with EtcdStorage.from_url(url) as store, store.watch() as feed:
        _resynced(feed, 5)
        assert _collect(feed, 2.5) == []  # the token expired meanwhile; the watch goes on
        assert feed.connected
        written = store.create("lease", sample_lease_data())
        assert Change("lease", written) in _collect(feed, 1)


def test_a_refused_password_warns_once_and_shows_no_secret(
    auth_etcd: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"etcd://root:{WRONG}@{auth_etcd.address}/auth?timeout=1"
    with EtcdStorage.from_url(url) as store, store.watch() as feed:
        started = time.monotonic()
        assert _collect(feed, 2) == []
        assert time.monotonic() - started < 2 + store.capabilities.operation_timeout
        assert not feed.connected
    texts = [record.getMessage() for record in caplog.records]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "refused the credentials" in warnings[0]
    assert not [text for text in texts if PW in text or WRONG in text]


def test_closing_a_feed_that_another_thread_reads_ends_the_read_quietly(
    etcd_server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mclease.etcd")
    with EtcdStorage.from_url(f"etcd://{etcd_server.address}/closing?timeout=1") as store:
        feed = store.watch()
        _resynced(feed, 5)
        reader = threading.Thread(target=feed.next, args=(30.0,))
        reader.start()
        time.sleep(0.3)
        feed.close()
        reader.join(store.capabilities.operation_timeout)
        assert not reader.is_alive(), "next() went on after close()"
        assert feed.next(1.0) == []
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.DEBUG]
