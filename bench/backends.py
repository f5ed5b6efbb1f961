"""Storage backends on this machine: our read and compare-and-swap against the raw client's.

For each networked backend (Redis, etcd, GCS through fake-gcs-server) it starts a server on
127.0.0.1 (``mclease_dev.servers``, the same starters the plugins' fixtures use), measures
sequential single-client operations, and stops the server:

* ``read``: ``Storage.read`` against the raw client's read of the same key (Redis ``HMGET``, etcd
  ``get``, GCS ``download_as_bytes``);
* ``cas``: ``Storage.update`` with the current version against the raw client doing the same
  conditional write (Redis: our Lua script through redis-py's ``Script``; etcd: the same
  transaction through pyetcd; GCS: ``upload_from_string(if_generation_match=...)``), with the
  record already encoded for the raw client;
* ``conformance``: the wall time of each plugin's conformance suite (a pytest subprocess).

``ratio`` is our p50 over the raw client's p50: our overhead (codec, validation, error mapping).
Absolute numbers are loopback numbers of a 2-core machine; fake-gcs-server is not GCS (real GCS
is tens of milliseconds per operation and allows about one write per second per object).

Run: ``.venv/bin/python bench/backends.py`` (``--quick`` for fewer operations, ``--backends redis``
to pick, ``--no-conformance``). Servers come from ``hack/test-servers.sh``. Not a test: it
measures and asserts nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from _common import Row, measure, report, summarize, with_ratio

from mclease_core import Storage
from mclease_core.conformance import sample_lease_data
from mclease_core.plugin import encode_lease_data
from mclease_dev.servers import FAKE_GCS_BUCKET, etcd_server, fake_gcs_server, redis_server

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench/lease"
COUNTS = {"redis": 3000, "etcd": 1500, "gcs": 600}


class Pair:
    """Our store and the raw client's equivalent operations on one lease."""

    def __init__(
        self,
        store: Storage,
        raw_read: Callable[[], object],
        raw_cas: Callable[[int], int],
        raw_name: str,
    ):
        self.store = store
        self.raw_read = raw_read
        self.raw_cas = raw_cas
        self.raw_name = raw_name


def compare(backend: str, pair: Pair, count: int) -> list[Row]:
    """Four rows: read and cas, ours and raw, with our overhead as a ratio."""
    data = sample_lease_data("bench")
    version = pair.store.create(KEY, data).version

    def ours_cas() -> None:
        nonlocal version
        version = pair.store.update(KEY, data, version=version).version

    def raw_cas() -> None:
        nonlocal version
        version = pair.raw_cas(version)

    rows = []
    for benchmark, ours, raw in (
        ("read", lambda: pair.store.read(KEY), pair.raw_read),
        ("cas", ours_cas, raw_cas),
    ):
        ours_latencies, raw_latencies = interleaved(ours, raw, count)
        raw_row = summarize(benchmark, f"{backend} raw {pair.raw_name}", raw_latencies)
        ours_row = summarize(benchmark, f"{backend} mclease", ours_latencies)
        rows += [with_ratio(ours_row, raw_row), raw_row]
    pair.store.close()
    return rows


def interleaved(
    ours: Callable[[], object], raw: Callable[[], object], count: int, rounds: int = 10
) -> tuple[list[float], list[float]]:
    """Measure both in alternating rounds (order swapped each round), so that drift of the
    server or the machine hits both alike."""
    ours_latencies: list[float] = []
    raw_latencies: list[float] = []
    for index in range(rounds):
        order = [(ours, ours_latencies), (raw, raw_latencies)]
        for operation, latencies in order if index % 2 else reversed(order):
            latencies += measure(operation, count=count // rounds, warmup=5)
    return ours_latencies, raw_latencies


# ----- one function per backend: start the server, build the pair --------------------------------


@contextmanager
def redis_pair() -> Iterator[Pair]:
    import redis

    from mclease_redis import RedisStorage, _scripts

    with redis_server() as server:
        store = RedisStorage.from_url(f"redis://{server.address}/0?prefix=bench")
        client = redis.Redis(host=server.host, port=server.port, socket_timeout=5)
        record, counter = store.keys(KEY)
        script = client.register_script(_scripts.UPDATE)
        payload = encode_lease_data(sample_lease_data("bench"))

        def raw_cas(version: int) -> int:
            answer: list[Any] = script(
                keys=[record, counter], args=[str(version), payload, store.channel, KEY]
            )
            return int(answer[1])

        yield Pair(store, lambda: client.hmget(record, "data", "version"), raw_cas, "redis-py")
        client.close()


@contextmanager
def etcd_pair() -> Iterator[Pair]:
    import pyetcd  # type: ignore[import-untyped]

    from mclease_etcd import EtcdStorage

    with etcd_server() as server:
        store = EtcdStorage.from_url(f"etcd://{server.address}/bench")
        client = pyetcd.client(server.host, server.port, timeout=5)
        full = store.full_key(KEY)
        payload = encode_lease_data(sample_lease_data("bench"))
        txn = client.transactions

        def raw_cas(version: int) -> int:
            _, responses = client.transaction(
                compare=[txn.mod(full) == version],
                success=[txn.put(full, payload), txn.get(full)],
                failure=[],
            )
            return int(responses[1][0][1].mod_revision)

        yield Pair(store, lambda: client.get(full), raw_cas, "pyetcd")
        client.close()


@contextmanager
def gcs_pair() -> Iterator[Pair]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[import-untyped]

    from mclease_gcs import GCSStorage

    with fake_gcs_server() as server:
        endpoint = f"http://{server.address}"
        store = GCSStorage.from_url(
            f"gs://{FAKE_GCS_BUCKET}/bench?endpoint={endpoint}&anonymous=true"
        )
        client = storage.Client(
            project="bench",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
        )
        bucket = client.bucket(FAKE_GCS_BUCKET)
        name = store.object_name(KEY)
        payload = encode_lease_data(sample_lease_data("bench"))

        def raw_cas(version: int) -> int:
            blob = bucket.blob(name)
            blob.upload_from_string(
                payload, content_type="application/json", if_generation_match=version
            )
            return int(blob.generation)

        yield Pair(
            store, lambda: bucket.blob(name).download_as_bytes(), raw_cas, "google-cloud-storage"
        )
        client.close()


PAIRS: dict[str, Callable[[], AbstractContextManager[Pair]]] = {
    "redis": redis_pair,
    "etcd": etcd_pair,
    "gcs": gcs_pair,
}


def conformance_row(backend: str) -> Row:
    """Wall time of the plugin's conformance suite, run by pytest in a subprocess."""
    path = ROOT / "plugins" / f"mclease_{backend}" / "tests" / "test_conformance.py"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-200:]
    return Row("conformance", backend, extra={"wall_s": round(wall, 1), "result": summary})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="redis,etcd,gcs")
    parser.add_argument("--quick", action="store_true", help="a tenth of the operations")
    parser.add_argument("--no-conformance", action="store_true")
    args = parser.parse_args()
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    rows: list[Row] = []
    for backend in backends:
        count = COUNTS[backend] // (10 if args.quick else 1)
        with PAIRS[backend]() as pair:
            rows += compare(backend, pair, count)
    if not args.no_conformance:
        rows += [conformance_row(backend) for backend in backends]
    report("backends", rows)


if __name__ == "__main__":
    main()
