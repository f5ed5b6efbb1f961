"""The multi-cluster election: confirmation latency, storage operations, failover times and how
many leases one controller keeps renewed on time.

Everything runs for real on this machine: control planes of the Kubernetes test bed (etcd +
kube-apiserver each), ``mclease controller`` processes (one per cluster and namespace, admin
kubeconfig), the global store (a SQLite file, or a ``redis-server`` on a free port), and
candidates. The run starts all of it (:class:`_controller_bed.ElectionBed`) and stops all of it,
and checks by pid that nothing it started is left. One module per benchmark, each with its
method in its docstring:

1. ``latency`` and 2. ``ops`` (:mod:`_controller_latency`): one cluster, one controller, one
   ``MultiClusterLeaseLock``: signal to confirmed, and the controller's storage operations per
   renewal and per follower reconcile.
3. ``failover`` (:mod:`_controller_failover`): clusters east and west; kill -9 of the leading
   candidate to the other's ``onstarted_leading``, and a graceful release to the same.
4. ``load`` (:mod:`_controller_load`): N leases signalled every retry period against one
   controller; the share confirmed within the lock's call bound.

Run: ``.venv/bin/python bench/controller.py`` (``--quick`` for a short run; ``--only
latency,ops,failover,load``; ``--stores sqlite,redis``; ``--failover-stores``; ``--sizes
25,50,100,150,200,300``; ``--runs``; ``--step-seconds``; ``--calls``; ``--workers``;
``--compare-workers``). Prints one table and writes ``bench/results/controller.json``. Measures;
asserts nothing. Other work on the machine shows in the numbers: the load average is printed with
them.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from _common import Row, report
from _controller_bed import ElectionBed, commit, load_average, new_name
from _controller_failover import bench_failover
from _controller_latency import bench_leader
from _controller_load import bench_load

BENCHMARKS = ("latency", "ops", "failover", "load")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the command line asked for, after ``--quick``."""

    only: frozenset[str]
    stores: list[str]
    failover_stores: list[str]
    runs: int
    sizes: list[int]
    step_seconds: float
    calls: int
    steady_seconds: float
    follower_seconds: float
    workers: int
    compare_workers: int
    keep: bool


@dataclasses.dataclass(frozen=True)
class Section:
    """One benchmark for one store; its rows, or one FAILED row if it raised."""

    title: str
    run: Callable[[], list[Row]]


def parse_settings(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer calls and runs, shorter steps (a smoke run)"
    )
    parser.add_argument("--only", default=",".join(BENCHMARKS))
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument(
        "--failover-stores", default=None, help="stores for the failover runs (default: --stores)"
    )
    parser.add_argument("--runs", type=int, default=5, help="failover runs per store")
    parser.add_argument("--sizes", default="25,50,100,150,200,300")
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument(
        "--workers",
        type=int,
        default=4,
        help="the controller's --workers in the load steps (its default: 4)",
    )
    parser.add_argument(
        "--compare-workers",
        type=int,
        default=16,
        help="re-run the first saturated load step with this many workers (0: do not)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args(argv)
    only = frozenset(args.only.split(","))
    unknown = only - set(BENCHMARKS)
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {', '.join(sorted(unknown))}")
    sizes = [int(s) for s in args.sizes.split(",")]
    quick = bool(args.quick)
    return Settings(
        only=only,
        stores=args.stores.split(","),
        failover_stores=(args.failover_stores or args.stores).split(","),
        runs=1 if quick else args.runs,
        sizes=sizes[:2] if quick else sizes,
        step_seconds=8.0 if quick else args.step_seconds,
        calls=50 if quick else args.calls,
        steady_seconds=8 if quick else 20,
        follower_seconds=5 if quick else 10,
        workers=args.workers,
        compare_workers=0 if quick else args.compare_workers,
        keep=args.keep,
    )


def sections(bed: ElectionBed, settings: Settings) -> list[Section]:
    """The benchmarks asked for, in the order they run: latency/ops, failover, load; one section
    per store."""

    def leader(store: str) -> list[Row]:
        return bench_leader(
            bed.east,
            store,
            bed.url(store, new_name("leader")),
            bed.workdir,
            settings.calls,
            settings.steady_seconds,
            settings.follower_seconds,
            set(settings.only),
        )

    def failover(store: str) -> list[Row]:
        return bench_failover(
            bed.clusters,
            store,
            bed.url(store, new_name("fo")),
            bed.workdir,
            settings.runs,
            budget=60 + 40 * settings.runs,
        )

    def load(store: str) -> list[Row]:
        return bench_load(
            bed.east,
            store,
            functools.partial(_load_url, bed, store),
            settings.sizes,
            settings.step_seconds,
            bed.workdir,
            settings.workers,
            settings.compare_workers,
        )

    plan: list[tuple[str, bool, list[str], Callable[[str], list[Row]]]] = [
        ("latency/ops", bool(settings.only & {"latency", "ops"}), settings.stores, leader),
        ("failover", "failover" in settings.only, settings.failover_stores, failover),
        ("load", "load" in settings.only, settings.stores, load),
    ]
    return [
        Section(f"{title} {store}", functools.partial(run, store))
        for title, wanted, stores, run in plan
        if wanted
        for store in stores
    ]


def _load_url(bed: ElectionBed, store: str, count: int) -> str:
    """A fresh store for each load step."""
    return bed.url(store, new_name(f"load{count}"))


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    wall = time.monotonic()
    context: dict[str, object] = {"load_at_start": load_average(), "commit": commit()}
    workdir = Path(tempfile.mkdtemp(prefix="mclease-bench-controller-"))
    print(f"work folder {workdir}; load {context['load_at_start']}", flush=True)
    rows: list[Row] = []
    failed = []
    bed = ElectionBed(
        workdir,
        ["east", "west"] if "failover" in settings.only else ["east"],
        stores=[*settings.stores, *settings.failover_stores],
    )
    with bed:
        for section in sections(bed, settings):
            began = time.monotonic()
            print(f"- {section.title} (load {load_average()})", flush=True)
            try:
                rows.extend(section.run())
            except Exception as exc:
                failed.append(section.title)
                traceback.print_exc()
                rows.append(Row(section.title, "FAILED", extra={"error": f"{exc}"[:300]}))
            print(f"  {section.title}: {time.monotonic() - began:.0f} s", flush=True)
    leftovers = bed.leftovers()
    context.update(
        {
            "load_at_end": load_average(),
            "wall_seconds": round(time.monotonic() - wall),
            "cpus": os.cpu_count(),
            "leftover_processes": leftovers or "none",
            "command": "python bench/controller.py " + " ".join(sys.argv[1:]),
        }
    )
    if failed:
        context["failed_sections"] = failed
    report("controller", rows, context)
    if settings.keep:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed or leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
