"""The storage conformance suite: what every backend must pass, importable by third parties.

Use it by subclassing :class:`StorageConformance` in a test module and providing one fixture,
``storage_harness``, that returns a :class:`StorageHarness` for your backend::

    import pytest
    from mclease_core.conformance import StorageConformance, StorageHarness

    class MyHarness(StorageHarness):
        ...

    class TestMyBackend(StorageConformance):
        @pytest.fixture
        def storage_harness(self):
            return MyHarness()

The suite checks the whole storage contract: round trips, compare-and-swap (stale update and stale
delete rejected; N concurrent writers with one version give exactly one winner, with threads and
with processes), versions that grow across delete and recreate, exact timestamps, awkward and
invalid keys, tenant isolation by prefix, corrupt records, and bounded failure when the store is
unreachable. A Hypothesis state machine compares the backend with a model. Compare-and-swap tests
never skip; only the multi-process race skips, for a backend that cannot be shared across processes
(``harness.url()`` returns ``None``, as ``memory://`` does).

It needs ``pytest`` and ``hypothesis`` (``pip install mclease-core[test]``); nothing else in
``mclease_core`` imports this module. See docs/writing-a-backend.md.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime as dt
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

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
    StorageError,
    StorageUnavailableError,
)
from ._plugins import open_storage
from ._storage import MAX_KEY_BYTES, Capabilities, LeaseData, LeaseObject, Storage

__all__ = ["StorageConformance", "StorageHarness", "sample_lease_data"]

RACERS = 8
"""How many threads or processes race for one compare-and-swap."""

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
    is down.

    ``namespace`` is a fresh name per test (ASCII letters and digits); map it to your backend's
    prefix or tenant option so tests do not see each other's records. Two ``open`` calls with the
    same namespace must see the same records.
    """

    unavailable_within: float = 15.0
    """Seconds within which an operation on an unreachable store must raise."""

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
        """Store bytes under ``key`` that are not a valid lease record, bypassing the codec."""


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
        outcomes = _race_in_threads(storage_harness, namespace, "create", version=None)
        _assert_one_winner(outcomes, LeaseAlreadyExistsError)

    def test_concurrent_updaters_in_threads_have_one_winner(
        self, storage_harness: StorageHarness, namespace: str
    ) -> None:
        with storage_harness.open(namespace) as store:
            created = store.create("race", sample_lease_data("initial"))
            outcomes = _race_in_threads(storage_harness, namespace, "update", created.version)
            winner = _assert_one_winner(outcomes, LeaseConflictError)
            assert store.read("race").data.holder_identity == winner

    def test_concurrent_deleters_in_threads_have_one_winner(
        self, storage_harness: StorageHarness, namespace: str
    ) -> None:
        with storage_harness.open(namespace) as store:
            created = store.create("race", sample_lease_data("initial"))
            outcomes = _race_in_threads(storage_harness, namespace, "delete", created.version)
            _assert_one_winner(outcomes, LeaseConflictError)

    @pytest.mark.parametrize("operation", ["create", "update"])
    def test_concurrent_writers_in_processes_have_one_winner(
        self, storage_harness: StorageHarness, namespace: str, operation: str
    ) -> None:
        url = storage_harness.url(namespace)
        if url is None:
            pytest.skip("capability: this store cannot be shared across processes")
        with storage_harness.open(namespace) as store:
            version = None
            if operation == "update":
                version = store.create("race", sample_lease_data("initial")).version
            outcomes = _race_in_processes(url, operation, version)
            expected = LeaseAlreadyExistsError if operation == "create" else LeaseConflictError
            winner = _assert_one_winner(outcomes, expected)
            assert store.read("race").data.holder_identity == winner

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
            for attempt in (
                lambda: store.read("lease"),
                lambda: store.create("lease", sample_lease_data()),
                lambda: store.update("lease", sample_lease_data(), version=1),
                lambda: store.delete("lease", version=1),
            ):
                started = time.monotonic()
                with pytest.raises(StorageUnavailableError) as info:
                    attempt()
                elapsed = time.monotonic() - started
                assert elapsed < storage_harness.unavailable_within, (
                    f"took {elapsed:.1f}s to report {info.value}"
                )
                assert info.value.retryable

    def test_capabilities_are_declared(self, storage: Storage) -> None:
        capabilities = storage.capabilities
        assert isinstance(capabilities, Capabilities)
        assert capabilities.min_write_interval >= 0
        assert capabilities.operation_timeout >= 0

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


# ----- race helpers ------------------------------------------------------------------------------

Outcome = tuple[str, str]  # (racer name, "won" or the exception class name)


def _attempt(store: Storage, operation: str, version: int | None, name: str) -> str:
    data = sample_lease_data(holder=name)
    try:
        if operation == "create":
            store.create("race", data)
        elif operation == "update":
            assert version is not None
            store.update("race", data, version=version)
        else:
            assert version is not None
            store.delete("race", version=version)
    except StorageError as exc:
        return type(exc).__name__
    return "won"


def _race_in_threads(
    harness: StorageHarness, namespace: str, operation: str, version: int | None
) -> list[Outcome]:
    stores = [harness.open(namespace) for _ in range(RACERS)]
    barrier = threading.Barrier(RACERS)
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def racer(index: int) -> None:
        barrier.wait()
        outcome = _attempt(stores[index], operation, version, f"racer-{index}")
        with lock:
            outcomes.append((f"racer-{index}", outcome))

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for store in stores:
            store.close()
    return outcomes


def _process_racer(
    url: str, operation: str, version: int | None, name: str, barrier: Any, results: Any
) -> None:
    store = open_storage(url)
    with contextlib.suppress(StorageError):
        store.read("warm-up-connection")
    barrier.wait(60)
    results.put((name, _attempt(store, operation, version, name)))
    store.close()


def _race_in_processes(url: str, operation: str, version: int | None) -> list[Outcome]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(RACERS)
    results = context.Queue()
    processes = [
        context.Process(
            target=_process_racer, args=(url, operation, version, f"racer-{i}", barrier, results)
        )
        for i in range(RACERS)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
        assert process.exitcode == 0, f"racer process exited with {process.exitcode}"
    return outcomes


def _assert_one_winner(outcomes: list[Outcome], loser_error: type[StorageError]) -> str:
    assert len(outcomes) == RACERS, f"only {len(outcomes)} of {RACERS} racers finished: {outcomes}"
    winners = [name for name, outcome in outcomes if outcome == "won"]
    losers = [outcome for _, outcome in outcomes if outcome != "won"]
    assert len(winners) == 1, f"expected exactly one winner, got {outcomes}"
    assert set(losers) == {loser_error.__name__}, (
        f"losers must fail with {loser_error.__name__}: {outcomes}"
    )
    return winners[0]


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
