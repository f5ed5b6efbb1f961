"""The storage conformance suite: what every backend must pass, importable by third parties.

Use it by subclassing :class:`StorageConformance` in a test module and providing one fixture,
``storage_harness``, that returns a :class:`StorageHarness` for your backend. A store served by a
server process needs only a URL template and a way to corrupt a record (:class:`ServerHarness`)::

    import pytest
    from mclease_core.conformance import ServerHarness, StorageConformance

    class MyHarness(ServerHarness):
        url_template = "my://{address}/conformance/{namespace}?timeout={timeout}"

        def corrupt(self, namespace, key): ...  # raw bytes, with the store's own client

    class TestMyBackend(StorageConformance):
        @pytest.fixture
        def storage_harness(self, my_server):  # a ServerProcess from mclease_core.testing
            return MyHarness(my_server)

The suite checks the whole storage contract: round trips, compare-and-swap (stale update and stale
delete rejected; N concurrent writers with one version give exactly one winner, with threads and
with processes, over many rounds, so that a non-atomic update fails reliably rather than now and
then), versions that grow across delete and recreate, exact timestamps, awkward and invalid keys,
tenant isolation by prefix, corrupt records, one store object shared by threads, and bounded
failure when the store is unreachable. A Hypothesis state machine compares the backend with a
model. Compare-and-swap tests never skip; only the multi-process race skips, for a backend that
cannot be shared across processes (``harness.url()`` returns ``None``, as ``memory://`` does).

The fault tests need a harness that can reach the server process (``server()``) and open a client
at another address (``open_at``, used with a :class:`~mclease_core.testing.FaultProxy`); a store
inside the process skips them ("capability: ..."). They hold a backend to the failure contract:

- a write sent on a live connection to a frozen server is :class:`OutcomeUnknownError` (never a
  conflict, never success) and a read :class:`StorageUnavailableError`, within the declared
  ``capabilities.operation_timeout`` plus :data:`FAULT_MARGIN` (measured, so the declared bound is
  honest; each call runs under the test's own deadline, so a backend without timeouts fails);
- a write right after the server restarted (a kept-open connection gone stale) succeeds or is
  :class:`StorageUnavailableError`: never outcome unknown for a request the new server cannot
  have received, never a hang (check a kept-open connection before sending on it);
- a write that committed but whose answer was lost is never a conflict or already-exists:
  :class:`OutcomeUnknownError`, or success with the right record if the backend can prove it.

A store whose capabilities say ``watch`` is held to the :class:`~mclease_core.plugin.ChangeFeed`
contract: a feed starts with a resync, reports another client's create, update and delete within
:data:`~mclease_core.plugin.WATCH_LATENCY` (plus margin) with exactly the record a read returns,
and nothing of another namespace; a frozen server makes it disconnected within
``operation_timeout`` (plus margin), a restarted one is followed by a resync, and writes are
reported again after either; closing is bounded. A store that cannot watch must say so
(``watch()`` raises :class:`NotImplementedError`), and then these tests skip ("capability: ...").

It needs ``pytest`` and ``hypothesis`` (``pip install mclease-core[test]``); nothing else in
``mclease_core`` imports this module. See docs/writing-a-backend.md.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime as dt
import multiprocessing
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ._errors import (
    CorruptRecordError,
    InvalidKeyError,
    LeaseAlreadyExistsError,
    LeaseConflictError,
    LeaseNotFoundError,
    OutcomeUnknownError,
    StorageError,
    StorageUnavailableError,
)
from ._plugins import open_storage
from ._storage import (
    MAX_KEY_BYTES,
    RESYNC,
    WATCH_LATENCY,
    Capabilities,
    Change,
    ChangeFeed,
    LeaseData,
    LeaseObject,
    Storage,
)
from .testing import LOOPBACK, FaultProxy, ServerProcess, call_all_within, call_within, free_port

__all__ = [
    "FAULT_MARGIN",
    "ServerHarness",
    "StorageConformance",
    "StorageHarness",
    "sample_lease_data",
]

RACERS = 8
"""How many threads or processes race for one compare-and-swap."""
RACE_ROUNDS = 20
"""How many times each race is run: a non-atomic compare-and-swap loses some races only."""
SHARING_THREADS = 4
SHARING_ROUNDS = 15
"""Threads sharing one store object, and the rounds of operations each runs on it."""
PROCESS_START_TIMEOUT = 300.0
"""Seconds the racer processes may take to start (spawned: each imports the backend anew)."""
FAULT_MARGIN = 2.0
"""Seconds a fault may take beyond the store's declared ``operation_timeout`` (a loaded machine)."""

AWKWARD_KEYS = [
    "a/b/c",
    "/leading-slash",
    "trailing-slash/",
    "double//slash",
    "dots/../..",
    "spaces in a key",
    "ünïcödé-κλειδί-键-🔑",
    "percent%2Fencoded",
    "quote'and\"double",
    "x" * 200,
]
INVALID_KEYS = [
    "",
    "nul\x00byte",
    "new\nline",
    "x" * (MAX_KEY_BYTES + 1),
    "é" * (MAX_KEY_BYTES // 2 + 1),
]


class StorageHarness(abc.ABC):
    """What the suite needs from a backend: a way to open stores, break one, and reach one that
    is down; optionally (for the fault tests) its server process and a client at another address.

    ``namespace`` is a fresh name per test (ASCII letters and digits); map it to your backend's
    prefix or tenant option so tests do not see each other's records. Two ``open`` calls with the
    same namespace must see the same records.
    """

    unavailable_within: float | None = None
    """Seconds within which an operation on an unreachable store must raise; ``None``: the
    unreachable store's declared ``operation_timeout`` plus :data:`FAULT_MARGIN`. A value larger
    than that fails the suite: the harness must not hide a slow backend behind a generous bound."""

    @abc.abstractmethod
    def open(self, namespace: str) -> Storage:
        """A new client of the store, isolated under ``namespace``."""

    @abc.abstractmethod
    def url(self, namespace: str) -> str | None:
        """The URL another process passes to ``open_storage`` to reach the same store and
        namespace, or ``None`` if the store cannot be shared across processes."""

    @abc.abstractmethod
    def open_unreachable(self) -> Storage | None:
        """A client configured for a store that does not answer (a closed port, a missing path),
        or ``None`` for a store that lives inside the process and so cannot be unreachable."""

    @abc.abstractmethod
    def corrupt(self, namespace: str, key: str) -> None:
        """Store bytes under ``key`` that are not a valid lease record, bypassing the codec
        (with the store's own client: a raw command, file or API call, not the backend)."""

    def server(self) -> ServerProcess | None:
        """The server process behind the store, which the fault tests pause and restart, or
        ``None`` (the default) for a store without one: the fault tests then skip."""
        return None

    def open_at(self, namespace: str, host: str, port: int) -> Storage | None:
        """A client of the same store and ``namespace`` that connects to ``host:port`` (the
        server itself, or a :class:`~mclease_core.testing.FaultProxy` in front of it), with
        short timeouts: the fault tests wait for them. ``None`` (the default): cannot."""
        return None

    def is_write_request(self, chunk: bytes) -> bool:
        """Whether ``chunk``, bytes a client sends (a request or the start of one), belongs to
        a write: the lost-answer test loses the answer on the connection of the first such
        chunk after it armed the proxy. The default, any chunk, suits a client that sends
        nothing but the operation itself; a client that sends requests of its own meanwhile
        (the GCS client looks its bucket up) answers from the protocol (not an HTTP ``GET``)."""
        return True


class ServerHarness(StorageHarness):
    """A harness for a store served by one :class:`~mclease_core.testing.ServerProcess` and
    opened by URL: set :attr:`url_template` and write :meth:`corrupt`.

    The template's fields are ``{address}`` (``host:port``), ``{namespace}`` and ``{timeout}``
    (seconds: :attr:`timeout` for the ordinary tests, :attr:`fault_timeout` for the fault tests
    and the unreachable store). Override :meth:`url_at` when an option derives from another,
    :meth:`open_url` to open with something other than :func:`open_storage`.
    """

    url_template: ClassVar[str]
    timeout: ClassVar[float] = 5.0
    fault_timeout: ClassVar[float] = 1.0

    def __init__(self, process: ServerProcess):
        self.process = process

    def url_at(self, namespace: str, address: str, timeout: float) -> str:
        return self.url_template.format(address=address, namespace=namespace, timeout=timeout)

    def open_url(self, url: str) -> Storage:
        return open_storage(url)

    def url(self, namespace: str) -> str:
        return self.url_at(namespace, self.process.address, self.timeout)

    def open(self, namespace: str) -> Storage:
        return self.open_url(self.url(namespace))

    def open_unreachable(self) -> Storage:
        closed = f"{LOOPBACK}:{free_port()}"
        return self.open_url(self.url_at("unreachable", closed, self.fault_timeout))

    def server(self) -> ServerProcess:
        return self.process

    def open_at(self, namespace: str, host: str, port: int) -> Storage:
        return self.open_url(self.url_at(namespace, f"{host}:{port}", self.fault_timeout))


def sample_lease_data(holder: str = "holder-a", **changes: Any) -> LeaseData:
    """A valid record for tests; keyword arguments override fields."""
    moment = dt.datetime(2026, 11, 26, 12, 30, 45, 123456, tzinfo=dt.UTC)
    base = LeaseData(
        holder_identity=holder,
        holder_cluster="east",
        lease_duration_seconds=15.0,
        acquire_time=moment,
        renew_time=moment,
        lease_transitions=3,
        fencing_token=None,
    )
    return dataclasses.replace(base, **changes)


def _new_namespace() -> str:
    return "t" + uuid.uuid4().hex[:16]


class StorageConformance:
    """The conformance suite. Subclass it in a ``Test*`` class and provide ``storage_harness``."""

    # ----- fixtures ----------------------------------------------------------------------------

    @pytest.fixture
    def namespace(self) -> str:
        return _new_namespace()

    @pytest.fixture
    def storage(self, storage_harness: StorageHarness, namespace: str) -> Iterator[Storage]:
        store = storage_harness.open(namespace)
        try:
            yield store
        finally:
            store.close()

    # ----- round trips -------------------------------------------------------------------------

    def test_read_missing_raises_not_found(self, storage: Storage) -> None:
        with pytest.raises(LeaseNotFoundError) as info:
            storage.read("missing")
        assert info.value.key == "missing"

    def test_create_then_read_round_trips_every_field(self, storage: Storage) -> None:
        data = sample_lease_data(
            holder_cluster="west-1",
            lease_duration_seconds=2.5,
            lease_transitions=41,
            fencing_token=977,
        )
        created = storage.create("lease", data)
        assert isinstance(created.version, int)
        assert created.data == data
        assert storage.read("lease") == created

    def test_create_existing_raises_already_exists(self, storage: Storage) -> None:
        first = storage.create("lease", sample_lease_data("a"))
        with pytest.raises(LeaseAlreadyExistsError):
            storage.create("lease", sample_lease_data("b"))
        assert storage.read("lease") == first

    def test_update_with_current_version_replaces_record(self, storage: Storage) -> None:
        created = storage.create("lease", sample_lease_data("a"))
        updated = storage.update("lease", sample_lease_data("b"), version=created.version)
        assert updated.version > created.version
        assert storage.read("lease") == updated
        assert updated.data.holder_identity == "b"

    def test_an_update_that_changes_nothing_still_gets_a_new_version(
        self, storage: Storage
    ) -> None:
        """A version is never handed out twice, even for identical bytes (stores that skip
        no-op writes, like the Kubernetes API server, must force a change)."""
        created = storage.create("lease", sample_lease_data())
        same = storage.update("lease", sample_lease_data(), version=created.version)
        assert same.version > created.version
        with pytest.raises(LeaseConflictError):
            storage.update("lease", sample_lease_data(), version=created.version)

    def test_stale_update_is_rejected(self, storage: Storage) -> None:
        created = storage.create("lease", sample_lease_data("a"))
        current = storage.update("lease", sample_lease_data("b"), version=created.version)
        with pytest.raises(LeaseConflictError) as info:
            storage.update("lease", sample_lease_data("stale"), version=created.version)
        assert info.value.key == "lease"
        assert storage.read("lease") == current

    def test_update_of_missing_record_is_a_conflict(self, storage: Storage) -> None:
        with pytest.raises(LeaseConflictError):
            storage.update("missing", sample_lease_data(), version=1)
        with pytest.raises(LeaseNotFoundError):
            storage.read("missing")

    def test_delete_with_current_version_removes_record(self, storage: Storage) -> None:
        created = storage.create("lease", sample_lease_data())
        storage.delete("lease", version=created.version)
        with pytest.raises(LeaseNotFoundError):
            storage.read("lease")

    def test_stale_delete_is_rejected(self, storage: Storage) -> None:
        created = storage.create("lease", sample_lease_data("a"))
        current = storage.update("lease", sample_lease_data("b"), version=created.version)
        with pytest.raises(LeaseConflictError):
            storage.delete("lease", version=created.version)
        assert storage.read("lease") == current

    def test_delete_of_missing_record_is_a_conflict(self, storage: Storage) -> None:
        with pytest.raises(LeaseConflictError):
            storage.delete("missing", version=1)

    def test_versions_grow_across_delete_and_recreate(self, storage: Storage) -> None:
        seen = []
        for round_ in range(3):
            created = storage.create("lease", sample_lease_data(f"h{round_}"))
            updated = storage.update(
                "lease", sample_lease_data(f"u{round_}"), version=created.version
            )
            seen += [created.version, updated.version]
            storage.delete("lease", version=updated.version)
        assert seen == sorted(seen)
        assert len(set(seen)) == len(seen), f"a version was reused: {seen}"

    def test_a_version_from_before_delete_cannot_touch_the_recreated_record(
        self, storage: Storage
    ) -> None:
        old = storage.create("lease", sample_lease_data("old"))
        storage.delete("lease", version=old.version)
        new = storage.create("lease", sample_lease_data("new"))
        with pytest.raises(LeaseConflictError):
            storage.update("lease", sample_lease_data("zombie"), version=old.version)
        with pytest.raises(LeaseConflictError):
            storage.delete("lease", version=old.version)
        assert storage.read("lease") == new

    @pytest.mark.parametrize(
        "offset", [dt.timedelta(0), dt.timedelta(hours=5, minutes=30), dt.timedelta(hours=-8)]
    )
    def test_timestamps_round_trip_with_microseconds_and_offset(
        self, storage: Storage, offset: dt.timedelta
    ) -> None:
        zone = dt.timezone(offset)
        renew = dt.datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=zone)
        acquire = dt.datetime(2025, 7, 1, 0, 0, 0, 1, tzinfo=zone)
        storage.create("lease", sample_lease_data(renew_time=renew, acquire_time=acquire))
        read = storage.read("lease").data
        assert read.renew_time == renew
        assert read.renew_time.microsecond == 999999
        assert read.renew_time.utcoffset() == offset
        assert read.acquire_time == acquire
        assert read.acquire_time.utcoffset() == offset

    def test_errors_name_the_key_and_are_storage_errors(self, storage: Storage) -> None:
        created = storage.create("named", sample_lease_data())
        attempts: list[Callable[[], object]] = [
            lambda: storage.create("named", sample_lease_data()),
            lambda: storage.update("named", sample_lease_data(), version=created.version + 1000),
            lambda: storage.read("other"),
        ]
        for attempt in attempts:
            with pytest.raises(StorageError) as info:
                attempt()
            assert info.value.key in ("named", "other")

    # ----- keys and tenants --------------------------------------------------------------------

    @pytest.mark.parametrize("key", AWKWARD_KEYS)
    def test_awkward_keys_work(self, storage: Storage, key: str) -> None:
        created = storage.create(key, sample_lease_data(key[:50]))
        assert storage.read(key) == created
        updated = storage.update(key, sample_lease_data("next"), version=created.version)
        storage.delete(key, version=updated.version)
        with pytest.raises(LeaseNotFoundError):
            storage.read(key)

    def test_keys_that_look_alike_are_distinct(self, storage: Storage) -> None:
        keys = ["a/b", "a%2Fb", "a", "a/", "A/b", "a/b/c"]
        for key in keys:
            storage.create(key, sample_lease_data(holder=key))
        for key in keys:
            assert storage.read(key).data.holder_identity == key

    @pytest.mark.parametrize("key", INVALID_KEYS, ids=lambda key: repr(key)[:20])
    def test_invalid_keys_are_rejected_clearly(self, storage: Storage, key: str) -> None:
        with pytest.raises(InvalidKeyError):
            storage.create(key, sample_lease_data())
        with pytest.raises(InvalidKeyError):
            storage.read(key)

    def test_namespaces_isolate_tenants(self, storage_harness: StorageHarness) -> None:
        with (
            storage_harness.open(_new_namespace()) as one,
            storage_harness.open(_new_namespace()) as two,
        ):
            one.create("shared-name", sample_lease_data("tenant-one"))
            with pytest.raises(LeaseNotFoundError):
                two.read("shared-name")
            two.create("shared-name", sample_lease_data("tenant-two"))
            assert one.read("shared-name").data.holder_identity == "tenant-one"
            assert two.read("shared-name").data.holder_identity == "tenant-two"

    def test_clients_of_one_namespace_share_records(
        self, storage_harness: StorageHarness, namespace: str
    ) -> None:
        with storage_harness.open(namespace) as one, storage_harness.open(namespace) as two:
            created = one.create("lease", sample_lease_data())
            assert two.read("lease") == created

    # ----- races -------------------------------------------------------------------------------

    def test_concurrent_creators_in_threads_have_one_winner(
        self, storage_harness: StorageHarness, namespace: str
    ) -> None:
        rounds = _race_in_threads(storage_harness, namespace, "create", [None] * RACE_ROUNDS)
        _assert_one_winner_each_round(rounds, LeaseAlreadyExistsError)

    def test_concurrent_updaters_in_threads_have_one_winner(
        self, storage_harness: StorageHarness, namespace: str
    ) -> None:
        with storage_harness.open(namespace) as store:
            versions = _create_race_records(store)
            rounds = _race_in_threads(storage_harness, namespace, "update", versions)
            winners = _assert_one_winner_each_round(rounds, LeaseConflictError)
            for round_, winner in enumerate(winners):
                assert store.read(_race_key(round_)).data.holder_identity == winner

    def test_concurrent_deleters_in_threads_have_one_winner(
        self, storage_harness: StorageHarness, namespace: str
    ) -> None:
        with storage_harness.open(namespace) as store:
            versions = _create_race_records(store)
            rounds = _race_in_threads(storage_harness, namespace, "delete", versions)
            _assert_one_winner_each_round(rounds, LeaseConflictError)

    @pytest.mark.parametrize("operation", ["create", "update"])
    def test_concurrent_writers_in_processes_have_one_winner(
        self, storage_harness: StorageHarness, namespace: str, operation: str
    ) -> None:
        url = storage_harness.url(namespace)
        if url is None:
            pytest.skip("capability: this store cannot be shared across processes")
        with storage_harness.open(namespace) as store:
            versions: list[int | None] = [None] * RACE_ROUNDS
            if operation == "update":
                versions = _create_race_records(store)
            rounds = _race_in_processes(url, operation, versions)
            expected = LeaseAlreadyExistsError if operation == "create" else LeaseConflictError
            winners = _assert_one_winner_each_round(rounds, expected)
            for round_, winner in enumerate(winners):
                assert store.read(_race_key(round_)).data.holder_identity == winner

    def test_one_store_object_shared_by_threads_stays_correct(self, storage: Storage) -> None:
        """Threads share one store object (as an elector and a caller may): its updates of one
        record form one chain of compare-and-swaps (each won from the version the previous one
        made, no version handed out twice) and every thread's own records work meanwhile."""
        initial = storage.create("shared", sample_lease_data("initial"))
        swaps: list[tuple[int, int, str]] = []  # (expected version, new version, thread)
        failures: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(SHARING_THREADS)

        def work(name: str) -> None:
            barrier.wait(30)
            own: list[int] = []
            for round_ in range(SHARING_ROUNDS):
                current = storage.read("shared")
                try:
                    updated = storage.update(
                        "shared", sample_lease_data(name), version=current.version
                    )
                except LeaseConflictError:
                    pass
                else:
                    own.append(updated.version)
                    with lock:
                        swaps.append((current.version, updated.version, name))
                key = f"own-{name}"
                created = storage.create(key, sample_lease_data(f"{name}-{round_}"))
                changed = storage.update(key, sample_lease_data(name), version=created.version)
                assert storage.read(key) == changed, f"{name} read another record than it wrote"
                storage.delete(key, version=changed.version)
            assert own == sorted(set(own)), f"{name} saw its versions go back: {own}"

        def guarded(name: str) -> None:
            try:
                work(name)
            except BaseException as exc:  # reported below, with the thread's name
                with lock:
                    failures.append(f"{name}: {type(exc).__name__}: {exc}")

        threads = [
            threading.Thread(target=guarded, args=(f"thread{i}",), daemon=True)
            for i in range(SHARING_THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads), "a sharing thread hangs"
        assert not failures, f"threads sharing one store failed: {failures}"
        chain = sorted(swaps, key=lambda swap: swap[1])
        assert swaps, "no update of the shared record succeeded"
        expected = initial.version
        for swap in chain:
            assert swap[0] == expected, (
                f"an update won from version {swap[0]} while the record was at {expected}: "
                f"two writers won one compare-and-swap ({chain})"
            )
            expected = swap[1]
        final = storage.read("shared")
        assert final.version == expected
        assert final.data.holder_identity == chain[-1][2]

    # ----- failures ----------------------------------------------------------------------------

    def test_corrupt_record_raises_corrupt_error(
        self, storage_harness: StorageHarness, storage: Storage, namespace: str
    ) -> None:
        storage.create("healthy", sample_lease_data())
        storage_harness.corrupt(namespace, "broken")
        with pytest.raises(CorruptRecordError) as info:
            storage.read("broken")
        assert info.value.key == "broken"
        assert "corrupt" in str(info.value).lower()
        assert storage.read("healthy").data == sample_lease_data()

    def test_unreachable_store_raises_unavailable_in_bounded_time(
        self, storage_harness: StorageHarness
    ) -> None:
        unreachable = storage_harness.open_unreachable()
        if unreachable is None:
            pytest.skip("capability: an in-process store cannot be unreachable")
        with unreachable as store:
            declared = store.capabilities.operation_timeout + FAULT_MARGIN
            bound = storage_harness.unavailable_within or declared
            assert bound <= declared, (
                f"the harness allows {bound:g}s, more than the store declares "
                f"(operation_timeout {store.capabilities.operation_timeout:g}s + {FAULT_MARGIN:g}s)"
            )
            results = call_all_within(
                bound,
                {
                    "read": lambda: store.read("lease"),
                    "create": lambda: store.create("lease", sample_lease_data()),
                    "update": lambda: store.update("lease", sample_lease_data(), version=1),
                    "delete": lambda: store.delete("lease", version=1),
                },
            )
            for name, result in results.items():
                result.assert_failed_with(name, StorageUnavailableError, hint=_TIME_OUT)

    def test_capabilities_are_declared(self, storage: Storage) -> None:
        capabilities = storage.capabilities
        assert isinstance(capabilities, Capabilities)
        assert capabilities.min_write_interval >= 0
        assert capabilities.operation_timeout >= 0

    # ----- faults: a frozen server, a restarted server, a lost answer ----------------------------

    def test_a_frozen_server_makes_writes_outcome_unknown_within_the_declared_timeout(
        self, storage_harness: StorageHarness, namespace: str
    ) -> None:
        """A write sent on a live connection to a server that stopped answering may have been
        applied: outcome unknown, never a conflict or success; a read is unavailable. Each
        within the declared ``operation_timeout`` (+ margin), measured: the bound is honest."""
        server = _server_or_skip(storage_harness)
        operations = ("read", "create", "update", "delete")
        stores = {
            op: _open_at(storage_harness, namespace, server.host, server.port) for op in operations
        }
        try:
            versions = {}
            for op, store in stores.items():
                _warm(store, op)  # a live, kept-open connection, with every script loaded
                versions[op] = store.create(f"record-{op}", sample_lease_data(op)).version
            bound = max(store.capabilities.operation_timeout for store in stores.values())
            bound += FAULT_MARGIN
            calls: dict[str, Callable[[], object]] = {
                "read": lambda: stores["read"].read("record-read"),
                "create": lambda: stores["create"].create("new", sample_lease_data("frozen")),
                "update": lambda: stores["update"].update(
                    "record-update", sample_lease_data("frozen"), version=versions["update"]
                ),
                "delete": lambda: stores["delete"].delete(
                    "record-delete", version=versions["delete"]
                ),
            }
            server.pause()
            try:
                results = call_all_within(bound, calls)
            finally:
                server.resume()
        finally:
            _close_all(stores.values())
        results["read"].assert_failed_with("read", StorageUnavailableError, hint=_TIME_OUT)
        for op in ("create", "update", "delete"):
            results[op].assert_failed_with(op, OutcomeUnknownError, hint=_TIME_OUT)

    def test_a_write_after_the_server_restarted_is_unavailable_or_succeeds(
        self, storage_harness: StorageHarness, namespace: str
    ) -> None:
        """The server restarted under a kept-open connection: the new server process cannot
        have received anything sent on the old connection, so the write succeeds (the backend
        noticed and reconnected) or is unavailable, never outcome unknown, never a hang. The
        server may lose its records with the restart; the write creates a new one."""
        server = _server_or_skip(storage_harness)
        with _open_at(storage_harness, namespace, server.host, server.port) as store:
            _warm(store, "before-restart")
            server.stop()
            server.start()
            bound = store.capabilities.operation_timeout + FAULT_MARGIN
            result = call_within(
                bound, lambda: store.create("after", sample_lease_data("after")), name="create"
            )
            assert result.finished, f"a write after the restart hangs ({result.describe()})"
            if result.error is not None:
                result.assert_failed_with(
                    "a write the restarted server never received", StorageUnavailableError
                )
            else:
                assert store.read("after") == result.value

    def test_a_lost_answer_to_a_committed_write_is_never_a_conflict(
        self, storage_harness: StorageHarness, namespace: str
    ) -> None:
        """A proxy forwards each write and loses its answer: the write committed, so it is
        outcome unknown (or success with the right record, if the backend can prove it), never
        a conflict or already-exists (a retry that met its own write); a read shows it."""
        server = _server_or_skip(storage_harness)
        with (
            FaultProxy(server.host, server.port) as proxy,
            _open_at(storage_harness, namespace, proxy.host, proxy.port) as store,
            _open_at(storage_harness, namespace, server.host, server.port) as direct,
        ):
            _warm(store, "warm-up")
            bound = store.capabilities.operation_timeout + FAULT_MARGIN
            version: int | None = None
            steps: dict[str, Callable[[], object]] = {
                "create": lambda: store.create("lost", sample_lease_data("created")),
                "update": lambda: store.update(
                    "lost", sample_lease_data("updated"), version=version or 0
                ),
                "delete": lambda: store.delete("lost", version=version or 0),
            }
            for op, call in steps.items():
                _warm_connection(store)
                lost_before = proxy.answers_lost
                proxy.lose_next_answer(storage_harness.is_write_request)
                result = call_within(bound, call, name=op)
                assert proxy.answers_lost == lost_before + 1, "the proxy lost no answer"
                assert result.finished, f"{op} with a lost answer hangs ({result.describe()})"
                if result.error is not None:
                    assert isinstance(result.error, OutcomeUnknownError), (
                        f"{op} committed but its answer was lost: {result.describe()}"
                    )
                if op == "delete":
                    with pytest.raises(LeaseNotFoundError):  # the delete committed
                        direct.read("lost")
                    continue
                stored = direct.read("lost")
                written = "created" if op == "create" else "updated"
                assert stored.data.holder_identity == written, (
                    f"the proxy forwarded the {op} and lost the answer, yet the store holds "
                    f"{stored}: the request whose answer was lost was not the write"
                )
                if result.error is None:
                    assert result.value == stored, f"{op} reported another record than it wrote"
                version = stored.version

    # ----- change feeds -------------------------------------------------------------------------

    def test_a_store_watches_as_its_capabilities_declare(self, storage: Storage) -> None:
        if not storage.capabilities.watch:
            with pytest.raises(NotImplementedError):
                storage.watch()
            return
        feed = storage.watch()
        try:
            _await_resync(feed, storage.capabilities.operation_timeout + FAULT_MARGIN)
            assert feed.connected, "a feed that resynced says it is not connected"
        finally:
            feed.close()

    def test_a_feed_reports_each_write_of_another_client_with_its_record(
        self, storage_harness: StorageHarness, namespace: str, storage: Storage
    ) -> None:
        """Within WATCH_LATENCY (plus margin) of each acknowledged write, with the record a
        read returns; a delete as ``record=None``; another namespace's writes never."""
        with _feed_or_skip(storage) as feed, storage_harness.open(namespace) as other:
            _await_resync(feed, storage.capabilities.operation_timeout + FAULT_MARGIN)
            with storage_harness.open(_new_namespace()) as stranger:
                stranger.create("watched", sample_lease_data("stranger"))
            created = other.create("watched", sample_lease_data("created"))
            _expect_change(feed, "watched", created, "a create")
            updated = other.update("watched", sample_lease_data("updated"), version=created.version)
            assert storage.read("watched") == updated
            _expect_change(feed, "watched", updated, "an update")
            other.delete("watched", version=updated.version)
            _expect_change(feed, "watched", None, "a delete")
            recreated = other.create("watched", sample_lease_data("recreated"))
            _expect_change(feed, "watched", recreated, "a create after a delete")

    def test_a_feed_notices_a_frozen_server_and_resyncs_after_it(
        self, storage_harness: StorageHarness, namespace: str
    ) -> None:
        """A silent store (a paused server: the connection stays open and says nothing) makes
        the feed disconnected within ``operation_timeout`` (plus margin); once the server answers
        again the feed resyncs and reports writes."""
        server = _server_or_skip(storage_harness)
        with (
            _open_at(storage_harness, namespace, server.host, server.port) as store,
            _feed_or_skip(store) as feed,
            storage_harness.open(namespace) as other,
        ):
            bound = store.capabilities.operation_timeout + FAULT_MARGIN
            _await_resync(feed, bound)
            server.pause()
            try:
                lost, _ = _read_feed(feed, bound, lambda _: not feed.connected)
            finally:
                server.resume()
            assert lost, (
                f"the feed still says it is connected {bound:g}s after its server froze: it must "
                "probe an idle connection and give up within operation_timeout"
            )
            _await_resync(feed, bound)
            written = other.create("after-freeze", sample_lease_data("after"))
            _expect_change(feed, "after-freeze", written, "a write after the freeze")

    def test_a_feed_resyncs_after_its_server_restarted(
        self, storage_harness: StorageHarness, namespace: str
    ) -> None:
        """The server restarted (and may have lost its records): the feed reports a resync, so
        its consumer forgets what it knew, and then reports writes again."""
        server = _server_or_skip(storage_harness)
        with (
            _open_at(storage_harness, namespace, server.host, server.port) as store,
            _feed_or_skip(store) as feed,
        ):
            bound = store.capabilities.operation_timeout + FAULT_MARGIN
            _await_resync(feed, bound)
            server.stop()
            server.start()
            _await_resync(feed, 2 * bound)
            with storage_harness.open(namespace) as other:
                written = other.create("after-restart", sample_lease_data("after"))
            _expect_change(feed, "after-restart", written, "a write after the restart")

    def test_closing_a_feed_of_a_frozen_server_is_bounded(
        self, storage_harness: StorageHarness, namespace: str
    ) -> None:
        server = _server_or_skip(storage_harness)
        store = _open_at(storage_harness, namespace, server.host, server.port)
        with store, _feed_or_skip(store) as feed:
            bound = store.capabilities.operation_timeout + FAULT_MARGIN
            _await_resync(feed, bound)
            server.pause()
            try:
                result = call_within(bound, feed.close, name="close")
            finally:
                server.resume()
            assert result.finished, f"closing a feed of a frozen server: {result.describe()}"
            assert result.error is None, f"closing a feed of a frozen server: {result.describe()}"

    # ----- against the model -------------------------------------------------------------------

    def test_behaves_like_the_reference_model(self, storage_harness: StorageHarness) -> None:
        def machine() -> _StorageModelMachine:
            return _StorageModelMachine(storage_harness.open(_new_namespace()))

        run_state_machine_as_test(
            machine,  # type: ignore[arg-type]  # hypothesis takes any factory of machines
            settings=settings(
                max_examples=15,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            ),
        )


# ----- fault helpers -----------------------------------------------------------------------------


def _server_or_skip(harness: StorageHarness) -> ServerProcess:
    server = harness.server()
    if server is None:
        pytest.skip("capability: no server process to freeze, restart or put a proxy before")
    return server


def _open_at(harness: StorageHarness, namespace: str, host: str, port: int) -> Storage:
    store = harness.open_at(namespace, host, port)
    if store is None:
        pytest.skip("capability: the harness cannot open a client at another address")
    return store


def _warm(store: Storage, key: str) -> None:
    """Every kind of operation once on ``store``: its connections are open and whatever it
    prepares on first use (scripts, sessions, tokens) is ready."""
    created = store.create(key, sample_lease_data("warm-up"))
    updated = store.update(key, sample_lease_data("warm-up"), version=created.version)
    store.read(key)
    store.delete(key, version=updated.version)


def _warm_connection(store: Storage) -> None:
    """One answered request, so that the next one goes out on a live connection."""
    with contextlib.suppress(LeaseNotFoundError):
        store.read("warm-up-connection")


_TIME_OUT = ": the backend must time out within its declared operation_timeout"


# ----- change feed helpers -----------------------------------------------------------------------


@contextlib.contextmanager
def _feed_or_skip(store: Storage) -> Iterator[ChangeFeed]:
    if not store.capabilities.watch:
        pytest.skip("capability: the store cannot watch for changes")
    feed = store.watch()
    try:
        yield feed
    finally:
        feed.close()


def _read_feed(
    feed: ChangeFeed, within: float, done: Callable[[list[Change]], bool]
) -> tuple[bool, list[Change]]:
    """Read ``feed`` until ``done`` of what it reported is true, for ``within`` seconds at most;
    whether it came true, and what the feed reported."""
    seen: list[Change] = []
    deadline = time.monotonic() + within
    while not done(seen):
        left = deadline - time.monotonic()
        if left <= 0:
            return False, seen
        seen += feed.next(min(left, 0.2))
    return True, seen


def _await_resync(feed: ChangeFeed, within: float) -> None:
    resynced, seen = _read_feed(feed, within, lambda seen: RESYNC in seen and feed.connected)
    assert resynced, f"no resync within {within:g}s (reported: {seen[-5:]})"


def _expect_change(feed: ChangeFeed, key: str, record: LeaseObject | None, what: str) -> None:
    """The feed reports ``key`` as ``record`` within WATCH_LATENCY (plus margin) of now, the
    moment its write was acknowledged; other keys must not be reported."""
    bound = WATCH_LATENCY + FAULT_MARGIN
    expected = Change(key, record)
    reported, seen = _read_feed(feed, bound, lambda seen: expected in seen)
    strangers = [c for c in seen if c.key not in (key, None)]
    assert not strangers, f"after {what} the feed reported other keys: {strangers[:3]}"
    assert reported, f"{what} was not reported as {expected} within {bound:g}s; reported: {seen}"


def _close_all(stores: Iterable[Storage]) -> None:
    for store in stores:
        with contextlib.suppress(Exception):  # a store still busy in an abandoned call
            store.close()


# ----- race helpers ------------------------------------------------------------------------------

RaceResult = tuple[str, str]
"""One racer's result in one round: (racer name, ``"won"`` or the exception class name)."""


def _race_key(round_: int) -> str:
    return f"race-{round_}"


def _create_race_records(store: Storage) -> list[int | None]:
    """One record per round, for update and delete races; their versions."""
    return [
        store.create(_race_key(round_), sample_lease_data("initial")).version
        for round_ in range(RACE_ROUNDS)
    ]


def _attempt(store: Storage, operation: str, round_: int, version: int | None, name: str) -> str:
    data = sample_lease_data(holder=name)
    key = _race_key(round_)
    try:
        if operation == "create":
            store.create(key, data)
        elif operation == "update":
            assert version is not None
            store.update(key, data, version=version)
        else:
            assert version is not None
            store.delete(key, version=version)
    except StorageError as exc:
        return type(exc).__name__
    return "won"


def _race_in_threads(
    harness: StorageHarness, namespace: str, operation: str, versions: list[int | None]
) -> list[list[RaceResult]]:
    """``RACERS`` threads, each with its own store, race once per entry of ``versions`` (the
    version each round's record has), all released together by a barrier every round."""
    stores = [harness.open(namespace) for _ in range(RACERS)]
    barrier = threading.Barrier(RACERS)
    rounds: list[list[RaceResult]] = [[] for _ in versions]
    lock = threading.Lock()

    def racer(index: int) -> None:
        name = f"racer-{index}"
        for round_, version in enumerate(versions):
            barrier.wait(60)
            result = _attempt(stores[index], operation, round_, version, name)
            with lock:
                rounds[round_].append((name, result))

    threads = [threading.Thread(target=racer, args=(i,), daemon=True) for i in range(RACERS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        for store in stores:
            store.close()
    return rounds


def _process_racer(
    url: str, operation: str, versions: list[int | None], name: str, barrier: Any, results: Any
) -> None:
    store = open_storage(url)
    with contextlib.suppress(StorageError):
        store.read("warm-up-connection")
    for round_, version in enumerate(versions):
        # the first wait covers the other racers' start-up (imports, on a loaded machine)
        barrier.wait(PROCESS_START_TIMEOUT if round_ == 0 else 60)
        results.put((round_, name, _attempt(store, operation, round_, version, name)))
    store.close()


def _race_in_processes(
    url: str, operation: str, versions: list[int | None]
) -> list[list[RaceResult]]:
    """Like :func:`_race_in_threads` with ``RACERS`` processes (started once for all rounds)."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(RACERS)
    results = context.Queue()
    processes = [
        context.Process(
            target=_process_racer, args=(url, operation, versions, f"racer-{i}", barrier, results)
        )
        for i in range(RACERS)
    ]
    for process in processes:
        process.start()
    rounds: list[list[RaceResult]] = [[] for _ in versions]
    deadline = time.monotonic() + PROCESS_START_TIMEOUT + 60 * len(versions)
    try:
        for _ in range(RACERS * len(versions)):
            while True:
                try:
                    round_, name, result = results.get(timeout=1)
                    break
                except queue.Empty:
                    failed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
                    assert not failed, f"racer processes exited with {failed}: {rounds}"
                    assert time.monotonic() < deadline, f"racer processes hang: {rounds}"
            rounds[round_].append((name, result))
        for process in processes:
            process.join(30)
            assert process.exitcode == 0, f"racer process exited with {process.exitcode}"
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)
    return rounds


def _assert_one_winner_each_round(
    rounds: list[list[RaceResult]], loser_error: type[StorageError]
) -> list[str]:
    """Every round had exactly one winner and only ``loser_error`` losers; the winners."""
    winners = []
    for round_, results in enumerate(rounds):
        where = f"round {round_ + 1} of {len(rounds)}"
        assert len(results) == RACERS, (
            f"{where}: only {len(results)} of {RACERS} racers finished: {results}"
        )
        won = [name for name, result in results if result == "won"]
        losers = {result for _, result in results if result != "won"}
        assert len(won) == 1, f"{where}: expected exactly one winner, got {results}"
        assert losers == {loser_error.__name__}, (
            f"{where}: losers must fail with {loser_error.__name__}: {results}"
        )
        winners.append(won[0])
    return winners


# ----- the model-based state machine --------------------------------------------------------------


class _StorageModelMachine(RuleBasedStateMachine):
    """Random operations on a backend and on a dict model; their answers must agree."""

    versions = Bundle("versions")

    def __init__(self, store: Storage):
        super().__init__()
        self.store = store
        self.model: dict[str, LeaseObject] = {}
        self.last_version: dict[str, int] = {}

    keys = st.sampled_from(["k1", "k2", "a/b"])
    holders = st.sampled_from(["h1", "h2", "h3"])

    @rule(target=versions, key=keys, holder=holders)
    def create(self, key: str, holder: str) -> int:
        data = sample_lease_data(holder)
        if key in self.model:
            with pytest.raises(LeaseAlreadyExistsError):
                self.store.create(key, data)
            return self.model[key].version
        created = self.store.create(key, data)
        self._accept(key, created)
        return created.version

    @rule(target=versions, key=keys, holder=holders, version=versions)
    def update(self, key: str, holder: str, version: int) -> int:
        data = sample_lease_data(holder)
        current = self.model.get(key)
        if current is None or current.version != version:
            with pytest.raises(LeaseConflictError):
                self.store.update(key, data, version=version)
            return version
        updated = self.store.update(key, data, version=version)
        self._accept(key, updated)
        return updated.version

    @rule(key=keys, version=versions)
    def delete(self, key: str, version: int) -> None:
        current = self.model.get(key)
        if current is None or current.version != version:
            with pytest.raises(LeaseConflictError):
                self.store.delete(key, version=version)
            return
        self.store.delete(key, version=version)
        del self.model[key]

    @rule(key=keys)
    def read(self, key: str) -> None:
        if key not in self.model:
            with pytest.raises(LeaseNotFoundError):
                self.store.read(key)
        else:
            assert self.store.read(key) == self.model[key]

    @invariant()
    def versions_only_grow(self) -> None:
        for key, record in self.model.items():
            assert record.version == self.last_version[key]

    def _accept(self, key: str, record: LeaseObject) -> None:
        previous = self.last_version.get(key)
        assert previous is None or record.version > previous, (
            f"version of {key!r} went from {previous} to {record.version}"
        )
        self.last_version[key] = record.version
        self.model[key] = record

    def teardown(self) -> None:
        self.store.close()
