"""The goals of the performance work beside what the last run measured, and the load plot.

Reads ``bench/results/controller.json``, ``backends.json`` and ``core.json`` (written by
``bench/controller.py``, ``bench/backends.py`` and ``bench/storage.py``; ``make bench`` runs
all), prints one table of measure, goal, measured value and verdict, writes it as
``bench/results/goals.json``, and draws ``docs/benchmarks-load.png``: the share of signals
confirmed on time and the p99 confirmation latency against the number of leases, one line per
store. A measure the last run did not produce says so ("not measured"); nothing is filled in by
hand.

Usage: ``python bench/goals.py [--no-plot]``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from _common import RESULTS

PLOT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-load.png"

Rows = list[dict[str, Any]]
NO_FEED = {"gcs"}
"""Stores without a change feed: the handoff goal of a watch-capable store does not apply."""


def _rows(name: str) -> Rows:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return []
    rows: Rows = json.loads(path.read_text())["rows"]
    return rows


def _matching(rows: Rows, benchmark: str, subject: str) -> Rows:
    pattern = re.compile(subject)
    return [
        r for r in rows if r["benchmark"].startswith(benchmark) and pattern.search(r["subject"])
    ]


def _worst(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


Goal = tuple[str, str, Callable[[], tuple[str, bool | None]]]


def goals(controller: Rows, backends: Rows, core: Rows) -> list[Goal]:
    def handoff(elector: str, watching_only: bool) -> Callable[[], tuple[str, bool | None]]:
        def measured() -> tuple[str, bool | None]:
            rows = _matching(controller, "graceful handoff", f"{elector} elector")
            if not rows:
                return "not measured", None
            parts, ok = [], True
            for row in rows:
                store = row["subject"].split(",")[0]
                runs = row["extra"].get("runs_ms", [])
                within = row["extra"]["within"]
                if watching_only and store in NO_FEED:
                    parts.append(f"({store}, no change feed: max {max(runs):.0f} ms)")
                    continue
                parts.append(f"{store} max {max(runs):.0f} ms ({within})")
                ok = ok and within.split("/")[0] == within.split("/")[1]
            return "; ".join(parts), ok

        return measured

    def confirmation() -> tuple[str, bool | None]:
        rows = _matching(controller, "confirmation latency", r"lock\.update")
        if not rows:
            return "not measured", None
        worst = _worst(r["p99_ms"] for r in rows)
        text = "; ".join(f"{r['subject'].split(':')[0]} {r['p99_ms']:.0f} ms" for r in rows)
        return text, worst is not None and worst <= 50

    def cpu() -> tuple[str, bool | None]:
        rows = [
            r for r in _matching(controller, "leases on time", ".") if "workers" not in r["subject"]
        ]
        values = [
            (
                r["subject"],
                r["extra"].get("ctrl_cpu_ms/renewal"),
                r["extra"].get("apiserver_cpu_ms/renewal"),
            )
            for r in rows
            if r["subject"].endswith(" 100 leases")
        ]
        if not values:
            return "not measured", None
        text = "; ".join(f"{s.split(':')[0]} {c} ms (API server {a} ms)" for s, c, a in values)
        return text, all(c is not None and c <= 0.5 for _, c, _ in values)

    def follower_reads() -> tuple[str, bool | None]:
        rows = _matching(controller, "storage ops per reconcile", "follower")
        if not rows:
            return "not measured", None
        values = [(r["subject"].split(":")[0], r["extra"].get("read/reconcile")) for r in rows]
        return "; ".join(f"{s} {v}" for s, v in values), all(v == 0 for _, v in values)

    def overhead() -> tuple[str, bool | None]:
        rows = [
            r for r in backends if r.get("ratio") is not None and r["benchmark"] in ("read", "cas")
        ]
        rows += [
            {**r, "subject": "sqlite", "benchmark": r["benchmark"].removeprefix("sqlite ")}
            for r in core
            if r.get("ratio") is not None and r["benchmark"].startswith("sqlite")
        ]
        if not rows:
            return "not measured", None
        text = "; ".join(
            f"{r['benchmark']} {r['subject'].split()[0]} {r['ratio']:.2f}" for r in rows
        )
        return text, all(r["ratio"] <= 1.10 for r in rows)

    def crash() -> tuple[str, bool | None]:
        rows = _matching(controller, "crash failover", "elector")
        if not rows:
            return "not measured", None
        text = "; ".join(
            f"{r['subject'].split(':')[0]} max {r['p99_ms']:.0f} ms ({r['extra']['within']})"
            for r in rows
        )
        ok = all(
            r["extra"]["within"].split("/")[0] == r["extra"]["within"].split("/")[1] for r in rows
        )
        return text, ok

    def leases() -> tuple[str, bool | None]:
        rows = [
            r for r in _matching(controller, "leases on time", ".") if "workers" not in r["subject"]
        ]
        if not rows:
            return "not measured", None
        best: dict[str, int] = {}
        for row in rows:
            store, _, rest = row["subject"].partition(": ")
            count = int(rest.split()[0])
            if row["extra"]["on_time"] == "100.0%":
                best[store] = max(best.get(store, 0), count)
        return "; ".join(f"{s} {n}" for s, n in best.items()) or "none all on time", None

    return [
        (
            "graceful handoff, CandidateElector, watch-capable store",
            "<= 0.3 s every run",
            handoff("candidate", True),
        ),
        (
            "graceful handoff, standard elector",
            "<= P + 0.2 s every run",
            handoff("standard", False),
        ),
        ("confirmation latency through the lock, p99", "<= 50 ms", confirmation),
        ("controller CPU per confirmed renewal (100 leases)", "<= 0.5 ms", cpu),
        ("follower store reads per idle reconcile", "0 (watch-capable)", follower_reads),
        ("our storage op / raw client, p50", "<= 1.10", overhead),
        ("crash failover, D + 2P", "every run", crash),
        ("leases one controller keeps all on time (P = 2 s)", "limited by the API server", leases),
    ]


def plot(controller: Rows, path: Path) -> bool:
    rows = [
        r for r in _matching(controller, "leases on time", ".") if "workers" not in r["subject"]
    ]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_store: dict[str, list[tuple[int, float, float]]] = {}
    for row in rows:
        store, _, rest = row["subject"].partition(": ")
        on_time = float(row["extra"]["on_time"].rstrip("%"))
        by_store.setdefault(store, []).append((int(rest.split()[0]), on_time, row["p99_ms"] or 0))
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for store, points in sorted(by_store.items()):
        points.sort()
        counts = [p[0] for p in points]
        left.plot(counts, [p[1] for p in points], marker="o", label=store)
        right.plot(counts, [p[2] for p in points], marker="o", label=store)
    left.set(xlabel="leases", ylabel="signals confirmed within C (%)", ylim=(0, 105))
    right.set(xlabel="leases", ylabel="p99 confirmation latency (ms)", yscale="log")
    for axis in (left, right):
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.suptitle("One controller, P = 2 s per lease (bench/controller.py --only load)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args()
    controller, backends, core = _rows("controller"), _rows("backends"), _rows("core")
    table = []
    print("\n## goals")
    for measure, goal, measured in goals(controller, backends, core):
        value, ok = measured()
        verdict = "met" if ok else ("not met" if ok is False else "-")
        table.append({"measure": measure, "goal": goal, "measured": value, "verdict": verdict})
        print(f"- {measure}: goal {goal}; measured {value}; {verdict}")
    (RESULTS / "goals.json").write_text(json.dumps(table, indent=2) + "\n")
    if not args.no_plot and plot(controller, PLOT):
        print(f"(plot written to {PLOT})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
