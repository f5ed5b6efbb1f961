"""Benchmarks of the core: the SQLite backend against raw sqlite3, and the elector's cost.

Run with ``make bench`` (or ``.venv/bin/python bench/storage.py``). Prints a table and writes
``bench/results/core.json``. Measures only; asserts nothing.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from _common import Row, measure, report, summarize, with_ratio

from mclease_core import FakeClock, LeaderElector, LeaseTiming
from mclease_core.backends import SQLiteStorage
from mclease_core.conformance import sample_lease_data
from mclease_core.plugin import encode_lease_data

COUNT = 2000


def sqlite_rows(directory: Path) -> list[Row]:
    storage = SQLiteStorage(directory / "ours.db")
    current = storage.create("bench", sample_lease_data())
    data = sample_lease_data("renewer")

    def ours_cas() -> None:
        nonlocal current
        current = storage.update("bench", data, version=current.version)

    ours_read = summarize(
        "sqlite read", "mclease", measure(lambda: storage.read("bench"), count=COUNT)
    )
    ours_write = summarize("sqlite compare-and-swap", "mclease", measure(ours_cas, count=COUNT))

    raw = sqlite3.connect(directory / "raw.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=FULL")
    raw.execute("CREATE TABLE leases (key TEXT PRIMARY KEY, version INTEGER, data BLOB)")
    raw.execute("INSERT INTO leases VALUES ('bench', 1, ?)", (encode_lease_data(data),))
    version = 1

    def raw_read() -> None:
        raw.execute("SELECT data, version FROM leases WHERE key = 'bench'").fetchone()

    def raw_cas() -> None:
        nonlocal version
        raw.execute("BEGIN IMMEDIATE")
        raw.execute(
            "UPDATE leases SET version = ?, data = ? WHERE key = 'bench' AND version = ?",
            (version + 1, encode_lease_data(data), version),
        )
        raw.execute("COMMIT")
        version += 1

    raw_read_row = summarize("sqlite read", "raw sqlite3", measure(raw_read, count=COUNT))
    raw_write_row = summarize(
        "sqlite compare-and-swap", "raw sqlite3", measure(raw_cas, count=COUNT)
    )
    storage.close()
    raw.close()
    return [
        raw_read_row,
        with_ratio(ours_read, raw_read_row),
        raw_write_row,
        with_ratio(ours_write, raw_write_row),
    ]


def elector_rows(directory: Path) -> list[Row]:
    """Storage operations per leader renewal and per follower poll, in steady state."""
    clock = FakeClock()
    timing = LeaseTiming(15, 10, 2)
    leader = LeaderElector(
        SQLiteStorage(directory / "e.db"), "lease", "leader", clock=clock, timing=timing
    )
    follower = LeaderElector(
        SQLiteStorage(directory / "e.db"), "lease", "follower", clock=clock, timing=timing
    )
    leader.try_acquire_or_renew()
    follower.try_acquire_or_renew()
    before_l, before_f = leader.storage.counts(), follower.storage.counts()
    rounds = 500
    for _ in range(rounds):
        clock.advance(2.0)
        leader.try_acquire_or_renew()
        follower.try_acquire_or_renew()
    rows = []
    for name, elector, before in (
        ("leader renewal", leader, before_l),
        ("follower poll", follower, before_f),
    ):
        after = elector.storage.counts()
        per = {op: (after[op] - before[op]) / rounds for op in after}
        rows.append(
            Row(
                "elector ops per " + name.split()[1],
                name,
                extra={k: f"{v:g}" for k, v in per.items()},
            )
        )
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        directory = Path(workdir)
        report("core", sqlite_rows(directory) + elector_rows(directory))


if __name__ == "__main__":
    main()
