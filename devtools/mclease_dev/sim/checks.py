"""The checkers every simulated run passes through, on the true timeline.

- **One leader at a time.** A candidate acts from its started callback to the first of its stopped
  callback, its crash, and the bound its elector documents after the start ``t0`` of its last
  accepted confirmation (docs/safety.md, the bound table): ``t0 + R`` for ``CandidateElector``,
  ``t0 + 3C + 2P + R`` for the standard elector, converted to true time with its machine's clock.
  No two terms of different candidates (or incarnations) may overlap.
- **Fencing tokens** grow: a term starts with a token above every token any earlier term held.
- **Every lock call ends by its bound** ``C`` on its own clock, not counting the time its process
  was paused; a call still open at the end of the run counts with the time it has taken.
- **Liveness**: once every fault healed, some candidate acts within the derived bound.
- **Deletion completes** within the liveness bound after it was asked for (or the heal, if later).
- **No lease held for nobody longer than D**, but for the designed allowance: the global record
  is not renewed for a holder that acts nowhere near it (see :func:`check_renewals`).
- **No product thread dies** of an unexpected exception.
"""

from __future__ import annotations

import dataclasses

from mclease_core.controller._decisions import MISSED_LIMIT

from .actors import Records, Term
from .scenario import Scenario, liveness_bound_for
from .store import OPERATION_TIMEOUT

EPSILON = 1e-6


@dataclasses.dataclass
class Verdict:
    violations: list[str]
    terms: int
    first_leader_after_heal: float | None
    calls: int


def acting_end(term: Term, scenario: Scenario, run_end: float) -> float:
    t = scenario.timing
    bound = (
        t.renew_deadline
        if term.elector == "candidate-elector"
        else 3 * scenario.call_bound + 2 * t.retry_period + t.renew_deadline
    )
    end = term.stopped if term.stopped is not None else run_end
    accepted = [c for c in term.confirmations if c[0] <= end + EPSILON]
    if accepted:
        last_start = max(c[1] for c in accepted)
        end = min(end, term.process.true_of(last_start + bound))
    return end


def check(
    scenario: Scenario, records: Records, run_end: float, thread_errors: list[str]
) -> Verdict:
    violations: list[str] = []
    spans = [(term, term.started, acting_end(term, scenario, run_end)) for term in records.terms]
    spans = [s for s in spans if s[2] > s[1] + EPSILON]
    spans.sort(key=lambda span: span[1])
    for i, (a, a_start, a_end) in enumerate(spans):
        for b, b_start, b_end in spans[i + 1 :]:
            if b_start >= a_end - EPSILON:
                continue
            if (a.actor, a.incarnation) == (b.actor, b.incarnation):
                continue
            violations.append(
                f"two leaders: {a.actor}#{a.incarnation} ({a.elector}) acted "
                f"{a_start:.3f}-{a_end:.3f} and {b.actor}#{b.incarnation} ({b.elector}) "
                f"{b_start:.3f}-{b_end:.3f}: overlap {min(a_end, b_end) - b_start:.3f}s"
            )
    violations += _tokens(spans)
    violations += _calls(scenario, records, run_end)
    violations += _late_stops(scenario, records, run_end)
    bound = liveness_bound_for(
        scenario.timing, scenario.controller_retry, scenario.replica_timing, scenario.watch_timeout
    )
    first = _first_leader_after(spans, scenario.heal_at)
    if first is None or first > scenario.heal_at + bound:
        seen = "none" if first is None else f"{first - scenario.heal_at:.2f}s"
        violations.append(
            f"liveness: no leader within {bound:.2f}s after every fault healed at "
            f"{scenario.heal_at:.3f} (first: {seen})"
        )
    violations += [f"a product thread died: {error}" for error in thread_errors]
    return Verdict(
        violations,
        len(spans),
        None if first is None else first - scenario.heal_at,
        len(records.calls),
    )


def _tokens(spans: list[tuple[Term, float, float]]) -> list[str]:
    """A term starts with a token above every token another holder's earlier term held (the
    same holder may start a new local term inside the global term it still holds)."""
    problems = []
    for i, (term, start, _) in enumerate(spans):
        if term.token is None:
            problems.append(f"{term.actor}#{term.incarnation} started leading without a token")
            continue
        holder = (term.cluster, term.identity)
        for other, _, _ in spans[:i]:
            tokens = [c[2] for c in other.confirmations if c[2] is not None and c[0] <= start]
            if not tokens:
                continue
            same = (other.cluster, other.identity) == holder
            if term.token < max(tokens) or (not same and term.token == max(tokens)):
                problems.append(
                    f"fencing token did not grow: {term.actor}#{term.incarnation} started at "
                    f"{start:.3f} with {term.token}, the earlier term of {other.actor}#"
                    f"{other.incarnation} held {max(tokens)}"
                )
                break
    return problems


def _calls(scenario: Scenario, records: Records, run_end: float) -> list[str]:
    """Each call's time on its own clock, less the time its process was paused, is within the
    bound; a call that has not returned by the end of the run (its process alive) is judged by
    the time it has taken so far."""
    problems = []
    limit = scenario.call_bound + 0.001
    for call in records.calls:
        process = call.process
        if call.took is None and not process.alive:
            continue  # crashed inside it: nothing returns
        end = run_end if call.took is None else call.started + call.took / process.rate
        paused = sum(
            max(0.0, min(resumed, end) - max(began, call.started))
            for began, resumed in records.pauses.get(id(process), [])
        )
        if process.paused and call.took is None:
            continue  # paused to the end: it cannot return
        took = (end - call.started - paused) * process.rate
        if took <= limit:
            continue
        problems.append(
            f"lock call {call.method} of {call.actor} at {call.started:.3f} "
            + ("has not returned after" if call.took is None else "took")
            + f" {took:.3f}s unpaused, bound {scenario.call_bound:.3f}s"
        )
    return problems[:5]


STOP_SLACK = 0.05
"""How long after its bound ``CandidateElector``'s watchdog may call the stopped callback: the
watchdog wakes on a timer, and the callback runs after a thread switch."""


def _late_stops(scenario: Scenario, records: Records, run_end: float) -> list[str]:
    """The overlap check takes a ``CandidateElector`` term to end by ``t0 + R`` (its watchdog's
    promise, docs/safety.md); this checks the promise: the stopped callback comes by then, or its
    process was paused (it can do nothing until it resumes, and then the watchdog fires first)."""
    problems = []
    r = scenario.timing.renew_deadline
    for term in records.terms:
        if term.elector != "candidate-elector" or not term.confirmations:
            continue
        stopped = term.stopped if term.stopped is not None else run_end
        accepted = [c for c in term.confirmations if c[0] <= stopped + EPSILON]
        if not accepted:
            continue
        due = term.process.true_of(max(c[1] for c in accepted) + r)
        if stopped <= due + STOP_SLACK:
            continue
        paused = any(
            began < stopped and resumed > due
            for began, resumed in records.pauses.get(id(term.process), [])
        )
        if paused or (term.stopped is None and term.process.paused):
            continue
        problems.append(
            f"{term.actor}#{term.incarnation} (candidate-elector) stopped leading at "
            f"{stopped:.3f}, {stopped - due:.3f}s after its bound t0 + R"
        )
    return problems


def _first_leader_after(spans: list[tuple[Term, float, float]], moment: float) -> float | None:
    times = [max(start, moment) for _, start, end in spans if end > moment]
    return min(times) if times else None


def check_deletions(
    deletions: dict[str, list[float | None]], heal_at: float, bound: float, run_end: float
) -> list[str]:
    problems = []
    for uid, (asked, removed) in deletions.items():
        assert asked is not None
        start = max(asked, heal_at)
        if start + bound > run_end:
            continue
        if removed is None or removed > start + bound:
            took = "never" if removed is None else f"after {removed - asked:.2f}s"
            problems.append(f"deletion of {uid} asked at {asked:.3f} did not complete ({took})")
    return problems


RETRY_SLACK = 0.9
"""A write for nobody this far (in lease durations) after the last one is a new try after the
lease ran out (``plan``'s back-off waits ``hold >= D`` on its own clock), not a renewal."""


def nobody_allowance(scenario: Scenario) -> float:
    """How much longer than ``D`` the design may hold a lease for a candidate that never takes
    it: the controller renews up to ``MISSED_LIMIT`` signals in a row before it learns that their
    confirmations come too late (one period ``P + C`` each), and resolves a write whose answer was
    lost by writing again (the store's operation timeout and a read)."""
    t = scenario.timing
    return MISSED_LIMIT * (t.retry_period + scenario.call_bound) + OPERATION_TIMEOUT + 1.0


def check_renewals(
    writes: list[tuple[float, str, str, int]],
    spans: list[tuple[Term, float, float]],
    scenario: Scenario,
) -> list[str]:
    """No lease held for nobody much longer than ``D``: renewals (a write before the previous
    one ran out) of the global record for a holder that acts nowhere within ``D`` of them may
    extend it past ``D`` only by :func:`nobody_allowance`."""
    d = scenario.timing.lease_duration
    allowance = nobody_allowance(scenario)
    problems = []
    chain: dict[tuple[str, str], tuple[float, float]] = {}
    """Per holder: first and latest write of the current run of renewals for nobody."""
    for when, cluster, identity, _ in writes:
        holder = (cluster, identity)
        near = any(
            (t.cluster, t.identity) == holder and start - d <= when <= end + d
            for t, start, end in spans
        )
        if not identity or near:
            chain.pop(holder, None)
            continue
        first, latest = chain.get(holder, (when, when))
        if when - latest >= RETRY_SLACK * d:
            first = when  # the lease ran out in between: a new try
        chain[holder] = (first, when)
        if when - first > allowance:
            problems.append(
                f"the global lease was held for {cluster}/{identity}, who did not act, from "
                f"{first:.3f} to {when + d:.3f}: {when - first:.2f}s longer than D={d:g}s "
                f"(allowed {allowance:.2f}s)"
            )
            break
    return problems
