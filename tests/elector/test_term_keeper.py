"""The term bookkeeping both electors share (``_watchdog.TermKeeper``), by itself on a fake clock:
a term ends at its deadline and only once, is never extended backwards, and is never revived
once it ended (safety rule 2). The watchdog thread is not started: ``expire_if_due`` is what it
calls."""

from __future__ import annotations

import threading

from mclease_core import FakeClock, LeadershipTerm
from mclease_core._watchdog import Term, TermKeeper

PUBLIC = LeadershipTerm("job", "pod-a", "east", 7, 1000.0)


class Keeper:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.ended: list[tuple[Term, str, bool]] = []
        self.in_callback: list[bool] = []
        self.terms = TermKeeper(
            self.clock,
            threading.RLock(),
            on_ended=self.on_ended,
            expire=lambda: self.terms.expire_if_due("deadline passed"),
            watchdog_name="test-watchdog",
        )

    def on_ended(self, term: Term, reason: str, deliberate: bool) -> None:
        self.ended.append((term, reason, deliberate))
        self.in_callback.append(self.terms.in_callback())


def test_a_term_leads_until_its_deadline_and_ends_once() -> None:
    keeper = Keeper()
    term = keeper.terms.start(PUBLIC, keeper.clock.monotonic() + 5.0)
    keeper.clock.advance(4.99)
    keeper.terms.expire_if_due("deadline passed")
    assert keeper.terms.leading()
    assert keeper.terms.public() == PUBLIC
    keeper.clock.advance(0.01)
    assert not keeper.terms.leading()
    assert keeper.terms.public() is None
    keeper.terms.expire_if_due("deadline passed")
    keeper.terms.expire_if_due("deadline passed")
    keeper.terms.end(term, "stopped", deliberate=True)
    assert keeper.ended == [(term, "deadline passed", False)]
    assert keeper.in_callback == [True]
    assert keeper.terms.current() is None
    assert keeper.terms.deadline() is None
    assert not keeper.terms.in_callback()


def test_an_extension_never_moves_the_deadline_earlier() -> None:
    keeper = Keeper()
    start = keeper.clock.monotonic()
    term = keeper.terms.start(PUBLIC, start + 5.0)
    assert keeper.terms.extend(term, start + 8.0, sent=start + 2.0)
    assert keeper.terms.extend(term, start + 6.0, sent=start)  # a confirmation of an older call
    assert keeper.terms.deadline() == start + 8.0


def test_a_call_sent_after_the_deadline_never_extends_the_term() -> None:
    """A process paused past its deadline (no watchdog ran) must not resume the old term with a
    call it sent after the gap: the term ends, and only a new one (with its callbacks) follows."""
    keeper = Keeper()
    start = keeper.clock.monotonic()
    term = keeper.terms.start(PUBLIC, start + 5.0)
    keeper.clock.advance(7.0)
    assert not keeper.terms.extend(term, start + 7.0 + 5.0, sent=start + 7.0)
    assert keeper.terms.deadline() == start + 5.0
    assert not keeper.terms.leading()
    assert keeper.terms.extend(term, start + 9.0, sent=start + 4.0)  # sent in time: covered


def test_an_ended_term_is_never_revived_by_a_late_extension() -> None:
    keeper = Keeper()
    term = keeper.terms.start(PUBLIC, keeper.clock.monotonic() + 5.0)
    keeper.terms.end_current("another candidate leads")
    now = keeper.clock.monotonic()
    assert not keeper.terms.extend(term, now + 60.0, sent=now)
    assert not keeper.terms.leading()
    assert keeper.terms.current() is None
    assert [reason for _, reason, _ in keeper.ended] == ["another candidate leads"]


def test_a_new_term_after_an_ended_one_is_a_new_object() -> None:
    keeper = Keeper()
    first = keeper.terms.start(PUBLIC, keeper.clock.monotonic() + 5.0)
    keeper.terms.end(first, "released", deliberate=True)
    second = keeper.terms.start(PUBLIC, keeper.clock.monotonic() + 5.0)
    keeper.terms.end(first, "late end of the old term")  # ends nothing: it is over
    assert keeper.terms.current() is second
    assert keeper.ended == [(first, "released", True)]
