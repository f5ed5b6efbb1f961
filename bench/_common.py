"""Shared pieces of the benchmarks: timing loops, percentiles, the table and the JSON file.

Benchmarks measure; they never assert. Each script builds a list of :class:`Row` and calls
:func:`report`, which prints a table and writes ``bench/results/<name>.json``.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclasses.dataclass
class Row:
    """One measured thing. ``ratio`` compares with a baseline (for example the raw client)."""

    benchmark: str
    subject: str
    ops_per_second: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    ratio: float | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def measure(operation: Callable[[], object], *, count: int, warmup: int = 20) -> list[float]:
    """Run ``operation`` ``count`` times after ``warmup`` runs; return each latency in seconds."""
    for _ in range(warmup):
        operation()
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        operation()
        latencies.append(time.perf_counter() - started)
    return latencies


def summarize(benchmark: str, subject: str, latencies: list[float], **extra: Any) -> Row:
    ordered = sorted(latencies)
    return Row(
        benchmark=benchmark,
        subject=subject,
        ops_per_second=len(ordered) / sum(ordered),
        p50_ms=1000 * statistics.median(ordered),
        p99_ms=1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        extra=dict(extra),
    )


def with_ratio(row: Row, baseline: Row) -> Row:
    """Our p50 latency over the baseline's (1.0 = no overhead)."""
    if row.p50_ms is not None and baseline.p50_ms:
        row.ratio = row.p50_ms / baseline.p50_ms
    return row


def report(name: str, rows: list[Row], context: dict[str, Any] | None = None) -> Path:
    """Print ``rows`` as a table and write them with machine facts to results/<name>.json.

    ``context`` (optional): facts of the run (load, wall time, versions), printed under the
    table and written as ``"context"`` in the JSON file.
    """
    headers = ["benchmark", "subject", "ops/s", "p50 ms", "p99 ms", "ratio", "notes"]
    table = [
        [
            row.benchmark,
            row.subject,
            _fmt(row.ops_per_second, 0),
            _fmt(row.p50_ms, 3),
            _fmt(row.p99_ms, 3),
            _fmt(row.ratio, 2),
            ", ".join(f"{k}={v}" for k, v in row.extra.items()),
        ]
        for row in rows
    ]
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *table, strict=False)
    ]
    print(f"\n## {name}")
    for line in [headers, ["-" * w for w in widths], *table]:
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(line, widths, strict=False)
            ).rstrip()
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {
        "name": name,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": [dataclasses.asdict(row) for row in rows],
    }
    if context:
        document["context"] = context
        for key, value in context.items():
            print(f"{key}: {value}")
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(
        f"(written to {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path})"
    )
    return path


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"
