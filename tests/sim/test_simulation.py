"""The deterministic simulator (``mclease_dev.sim``): a fixed set of seeds, the end-to-end
scenarios' worlds, exact replay, and the known bugs it must find.

Runs the real product classes on simulated time in this process, no servers and no sleeps:
the whole file takes seconds. ``make simulate SEEDS=N`` runs the broad search.
"""

from __future__ import annotations

import pytest

from mclease_dev.sim import draw, run_seed
from mclease_dev.sim.actors import Call, Records, Term
from mclease_dev.sim.checks import check
from mclease_dev.sim.mutants import MUTANTS
from mclease_dev.sim.run import combined, product_patches
from mclease_dev.sim.runtime import SimProcess, World
from mclease_dev.sim.scenario import FIRST_FAULT_KINDS
from mclease_dev.sim.scenarios import MIRRORS

FIXED_SEEDS = [*range(12), 1327, 7037, 10649, 17650]
"""In the worlds of :data:`FIRST_FAULT_KINDS`, where they were found: 1327 found the lock counting
a controller's refusals as late confirmations (see ``tests/kube/test_lock.py::test_a_status_that_
does_not_renew_the_latest_signal_is_no_late_confirmation``); 7037, 10649 and 17650 nobody leading
again after a store outage (``::test_the_refusal_of_a_new_signal_is_no_late_confirmation_of_the_
one_before``, ``tests/controller/test_decisions.py::TestTooSlowToConfirm``)."""


@pytest.mark.parametrize("seed", FIXED_SEEDS)
def test_a_fixed_seed_has_no_violation(seed: int) -> None:
    result = run_seed(seed, kinds=FIRST_FAULT_KINDS)
    assert result.violations == [], "\n".join(result.violations)
    assert result.terms >= 1


@pytest.mark.parametrize("seed", range(6))
def test_a_seed_with_every_fault_kind_has_no_violation(seed: int) -> None:
    result = run_seed(seed)
    assert result.violations == [], "\n".join(result.violations)


def test_a_forged_status_confirms_nobody() -> None:
    """Rule 8 against a status nobody's controller wrote: old generations and ones that do not
    exist yet, naming a local candidate, again and again."""
    result = run_seed(3, kinds=("forge-status",), trace=True)
    assert any("FORGED" in line for line in result.trace)
    assert result.violations == [], "\n".join(result.violations)


@pytest.mark.parametrize("name", sorted(MIRRORS))
def test_an_end_to_end_scenario_reaches_the_same_verdict(name: str) -> None:
    """``tests/e2e`` passes these (one leader at a time, every bound kept): so must the
    simulator's world of the same scenario."""
    mirror = MIRRORS[name]
    result = run_seed(1, scenario=mirror.build(1))
    assert result.violations == [], f"{mirror.e2e_test}:\n" + "\n".join(result.violations)
    assert result.terms >= 1


def test_a_seed_replays_exactly() -> None:
    first, second = run_seed(3, trace=True), run_seed(3, trace=True)
    assert first.trace == second.trace
    assert first.steps == second.steps
    assert len(first.trace) > 20


def test_seeds_draw_different_worlds() -> None:
    drawn = {str(draw(seed)) for seed in range(20)}
    assert len(drawn) == 20


# ----- the simulator finds known bugs --------------------------------------------------------

TWO_LEADERS = "two leaders"
KNOWN_BUGS = [
    # (mutants, seed, world, what is found): the world is an end-to-end scenario's, or drawn from
    # the seed with only the fault kinds given. Each was found by a search in docs/reliability.md.
    pytest.param(
        ("bare-identity",), 14, FIRST_FAULT_KINDS, TWO_LEADERS, id="rule-12-bare-identity-seed-14"
    ),
    pytest.param(
        ("stale-status-confirms",),
        25,
        FIRST_FAULT_KINDS,
        TWO_LEADERS,
        id="rule-8-stale-status-seed-25",
    ),
    pytest.param(
        ("replica-unchecked", "release-fresh-read"),
        103,
        ("pause",),
        TWO_LEADERS,
        id="rule-14-paused-replica-seed-103-pauses-only",
    ),
    pytest.param(
        ("replica-unchecked", "release-fresh-read"),
        1,
        "paused-replica",
        TWO_LEADERS,
        id="rule-14-the-e2e-paused-replica-scenario",
    ),
    pytest.param(
        ("deletion-confirms-last-signal",),
        5537,
        FIRST_FAULT_KINDS,
        TWO_LEADERS,
        id="rule-13-found-on-main-a-deletion-confirmed-the-last-signal-seed-5537",
    ),
    pytest.param(
        ("status-ahead-confirms",),
        3,
        ("forge-status",),
        TWO_LEADERS,
        id="rule-8-found-on-main-a-status-forged-ahead-confirmed-seed-3-forgeries-only",
    ),
    pytest.param(
        ("refusal-counts-as-late", "retries-pending-signal"),
        7037,
        FIRST_FAULT_KINDS,
        "liveness",
        id="rule-11-found-on-main-nobody-led-again-after-a-store-outage-seed-7037",
    ),
    pytest.param(
        ("unbounded-lock-calls",),
        0,
        ("trickle-api", "api-slow"),
        "took",
        id="rule-10-lock-calls-past-their-bound-seed-0",
    ),
]


@pytest.mark.parametrize(("mutants", "seed", "world_from", "found"), KNOWN_BUGS)
def test_the_simulator_finds_a_reverted_fix(
    mutants: tuple[str, ...], seed: int, world_from: str | tuple[str, ...], found: str
) -> None:
    if isinstance(world_from, str):
        world = MIRRORS[world_from].build(seed)
    else:
        world = draw(seed, kinds=world_from)

    def product() -> dict[object, dict[str, object]]:
        return combined(product_patches(), *(MUTANTS[name].patches() for name in mutants))

    assert run_seed(seed, scenario=world).violations == [], "main itself fails this seed"
    violations = run_seed(seed, scenario=world, product=product).violations
    assert any(found in violation for violation in violations), violations


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_every_mutant_still_applies_to_the_code(name: str) -> None:
    assert MUTANTS[name].patches()


def test_the_overlap_checker_sees_an_overlap() -> None:
    """The checker itself, on two hand-made terms: one candidate's acting ends at its bound
    ``t0 + R``, the other's starts before that."""
    scenario = draw(0)
    world = World(0)
    process = SimProcess(world, "p", mono_origin=0.0)
    records = Records()
    r = scenario.timing.renew_deadline
    first = Term("east/a", 1, "candidate-elector", "east", "a", process, 1.0, 5)
    first.confirmations.append((1.0, 1.0, 5))
    second = Term("west/b", 1, "candidate-elector", "west", "b", process, 1.0 + r - 0.1, 6)
    second.confirmations.append((1.0 + r - 0.1, 1.0 + r - 0.1, 6))
    records.terms += [first, second]
    verdict = check(scenario, records, 100.0, [])
    assert any("two leaders" in v for v in verdict.violations)
    second.started = 1.0 + r + 0.01  # starts after the first one's bound: fine
    verdict = check(scenario, records, 100.0, [])
    assert not any("two leaders" in v for v in verdict.violations)


def test_the_checker_sees_a_late_watchdog_and_a_call_that_never_returns() -> None:
    """The overlap check ends a ``CandidateElector`` term at ``t0 + R``; a second check makes
    sure its stopped callback came by then. A lock call still open at the end of the run is
    judged by the time it has taken, less the time its process was paused."""
    scenario = draw(0)
    world = World(0)
    process = SimProcess(world, "p", mono_origin=0.0)
    records = Records()
    r = scenario.timing.renew_deadline
    term = Term("east/a", 1, "candidate-elector", "east", "a", process, 1.0, 5, stopped=1.0 + r)
    term.confirmations.append((1.0, 1.0, 5))
    records.terms.append(term)
    records.calls.append(Call("east/a", "update", 2.0, None, process))

    def found(what: str) -> bool:
        return any(what in v for v in check(scenario, records, 100.0, []).violations)

    assert not found("after its bound")
    assert found("has not returned")
    term.stopped = 1.0 + r + 1.0
    assert found("after its bound")
    records.pauses[id(process)] = [(1.5, 99.9)]  # paused over both: neither is the product's
    assert not found("after its bound")
    assert not found("has not returned")
