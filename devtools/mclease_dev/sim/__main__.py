"""``python -m mclease_dev.sim``: run seeds, print a summary table, exit 1 on any violation.

Seeds run in ``--jobs`` worker processes (each seed is independent and deterministic, so the
split changes nothing but the wall time). A failing seed prints its violations, its schedule and
the one command that replays it; ``--trace`` adds the event trace (faults, starts and stops,
the product's own log lines, each stamped with true time).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .mutants import MUTANTS
from .run import Result, combined, product_patches, run_seed
from .scenario import FAULT_KINDS, describe
from .scenarios import MIRRORS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mclease_dev.sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="the first seed")
    parser.add_argument("--seed", type=int, help="run only this seed")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--trace", action="store_true", help="print the event trace of failures")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--quiet", action="store_true", help="no table")
    parser.add_argument(
        "--mutant",
        help=f"put known bugs back, comma-separated (sim.mutants): {', '.join(MUTANTS)}",
    )
    parser.add_argument(
        "--kinds", help=f"draw only these faults, comma-separated: {', '.join(FAULT_KINDS)}"
    )
    parser.add_argument(
        "--scenario", choices=sorted(MIRRORS), help="run an end-to-end scenario's world instead"
    )
    parser.add_argument(
        "--survey",
        action="store_true",
        help="run --seeds seeds for every mutant, broad and focused, and table what was found",
    )
    parser.add_argument("--progress", type=int, default=0, help="say so every N seeds")
    parser.add_argument("--stop-at-first", action="store_true", help="stop at the first failure")
    return parser


def _replay(seed: int, args: argparse.Namespace) -> str:
    """The one command that replays ``seed`` exactly, with the options that shaped it."""
    names = ("mutant", "kinds", "scenario")
    extra = [f"--{name} {value}" for name in names if (value := getattr(args, name))]
    return " ".join(["python -m mclease_dev.sim", f"--seed {seed}", *extra, "--trace"])


def _report_failure(result: Result, args: argparse.Namespace) -> None:
    print(f"\nSEED {result.seed} FAILED:", file=sys.stderr)
    for violation in result.violations:
        print(f"  - {violation}", file=sys.stderr)
    print(describe(result.scenario), file=sys.stderr)
    if args.trace:
        print("  trace:", file=sys.stderr)
        for line in result.trace:
            print(f"    {line}", file=sys.stderr)
    print(f"  replay: {_replay(result.seed, args)}", file=sys.stderr)


class _Runner:
    """One seed as the options say; picklable, so worker processes can run it."""

    def __init__(self, args: argparse.Namespace):
        self.trace = args.trace
        self.mutants = tuple(args.mutant.split(",")) if args.mutant else ()
        self.kinds = tuple(args.kinds.split(",")) if args.kinds else FAULT_KINDS
        self.scenario = args.scenario

    def product(self) -> dict[Any, dict[str, Any]]:
        return combined(product_patches(), *(MUTANTS[name].patches() for name in self.mutants))

    def __call__(self, seed: int) -> Result:
        return run_seed(
            seed,
            trace=self.trace,
            product=self.product,
            kinds=self.kinds,
            scenario=MIRRORS[self.scenario].build(seed) if self.scenario else None,
        )


def _results(runner: Callable[[int], Result], seeds: list[int], jobs: int) -> Iterator[Result]:
    if jobs <= 1:
        yield from map(runner, seeds)
        return
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        yield from pool.imap(runner, seeds, chunksize=4)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = [name for name in (args.mutant or "").split(",") if name and name not in MUTANTS]
    if unknown:
        parser.error(f"unknown mutant {unknown[0]!r}; known: {', '.join(MUTANTS)}")
    if args.kinds and any(kind not in FAULT_KINDS for kind in args.kinds.split(",")):
        parser.error(f"unknown fault kind in {args.kinds!r}; known: {', '.join(FAULT_KINDS)}")
    seeds = (
        [args.seed] if args.seed is not None else list(range(args.start, args.start + args.seeds))
    )
    if args.survey:
        return _survey(args, seeds)
    began = time.perf_counter()
    results: list[Result] = []
    failed: list[Result] = []
    kinds: Counter[str] = Counter()
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop.ask)
    signal.signal(signal.SIGINT, stop.ask)
    for result in _results(_Runner(args), seeds, args.jobs):
        if _record(result, results, failed, kinds, args, began) or stop.asked:
            break
    interrupted = stop.asked
    figures = _figures(results, failed, kinds, time.perf_counter() - began, args)
    figures["interrupted"] = interrupted
    if not args.quiet:
        _table(figures)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if failed or interrupted else 0


class _Stop:
    """SIGTERM or SIGINT: finish the seed under way, then report what ran. (Raising from the
    handler would land in whichever simulated thread runs, which reports it as its death.)"""

    asked = False

    def ask(self, signum: int, frame: object) -> None:
        self.asked = True


def _record(
    result: Result,
    results: list[Result],
    failed: list[Result],
    kinds: Counter[str],
    args: argparse.Namespace,
    began: float,
) -> bool:
    """Take in one seed's result; True: stop here."""
    kinds.update(fault.kind for fault in result.scenario.faults)
    results.append(result)
    if args.progress and len(results) % args.progress == 0:
        rate = len(results) / (time.perf_counter() - began)
        print(f"{len(results)} seeds, {len(failed)} failed, {rate:.1f}/s", file=sys.stderr)
    if result.violations:
        failed.append(result)
        _report_failure(result, args)
        return bool(args.stop_at_first)
    if args.seed is not None and args.trace:
        print(describe(result.scenario))
        print("\n".join(result.trace))
    return False


def _survey(args: argparse.Namespace, seeds: list[int]) -> int:
    """Every mutant, over ``seeds`` drawn with every fault kind and with its focus kinds: how
    many seeds find it, and the first (some are masked by another defense: docs/reliability.md)."""
    rows = []
    for mutant in MUTANTS.values():
        names = ",".join((mutant.name, *mutant.with_))
        for kinds in dict.fromkeys([None, ",".join(mutant.focus) or None]):
            options = argparse.Namespace(**{**vars(args), "mutant": names, "kinds": kinds})
            found = [r.seed for r in _results(_Runner(options), seeds, args.jobs) if r.violations]
            rows.append((names, mutant.rule, kinds or "all", len(seeds), found))
    print(f"\n{'mutant':<40} {'rule':>4}  {'faults drawn':<34} {'seeds':>5} {'found':>5}  first")
    for names, rule, kinds, count, found in rows:
        first = found[0] if found else "-"
        print(f"{names:<40} {rule:>4}  {kinds:<34} {count:>5} {len(found):>5}  {first}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        table = [
            {"mutants": n, "rule": r, "kinds": k, "seeds": c, "found": f} for n, r, k, c, f in rows
        ]
        args.json.write_text(json.dumps(table, indent=2) + "\n")
    return 0


def _figures(
    results: list[Result],
    failed: list[Result],
    kinds: Counter[str],
    elapsed: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    walls = [r.wall for r in results] or [0.0]
    after_heal = [
        r.first_leader_after_heal for r in results if r.first_leader_after_heal is not None
    ]
    return {
        "seeds": len(results),
        "first_seed": results[0].seed if results else None,
        "jobs": args.jobs,
        "mutant": args.mutant,
        "kinds": args.kinds,
        "failed_seeds": [r.seed for r in failed],
        "violations": sum(len(r.violations) for r in results),
        "elapsed_s": round(elapsed, 1),
        "schedules_per_second": round(len(results) / elapsed, 2) if elapsed else 0.0,
        "ms_per_seed_median": round(1000 * statistics.median(walls), 1),
        "simulated_seconds": round(sum(r.simulated for r in results)),
        "faults_per_schedule": round(sum(r.faults for r in results) / max(1, len(results)), 2),
        "faults_by_kind": dict(sorted(kinds.items())),
        "terms": sum(r.terms for r in results),
        "lock_calls": sum(r.calls for r in results),
        "leader_after_heal_max_s": round(max(after_heal), 2) if after_heal else None,
    }


def _table(figures: dict[str, Any]) -> None:
    rows = [
        ("seeds run", figures["seeds"]),
        ("seeds with a violation", len(figures["failed_seeds"])),
        ("violations", figures["violations"]),
        ("schedules per second", figures["schedules_per_second"]),
        ("ms per seed (median, one core)", figures["ms_per_seed_median"]),
        ("simulated seconds", figures["simulated_seconds"]),
        ("faults per schedule", figures["faults_per_schedule"]),
        ("leader terms", figures["terms"]),
        ("lock calls", figures["lock_calls"]),
        ("slowest election after heal (s)", figures["leader_after_heal_max_s"]),
    ]
    rows += [(f"  faults: {kind}", count) for kind, count in figures["faults_by_kind"].items()]
    width = max(len(name) for name, _ in rows)
    print(f"\n{'simulation':<{width}}  value")
    print(f"{'-' * width}  -----")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
