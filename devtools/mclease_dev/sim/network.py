"""The simulated network: every request from a process to a server is two messages in true time.

A request leaves its process after a moment of CPU (a process paused in that moment sends it
after it resumes: the instant between "may I act" and the send), reaches the server after the
link's latency unless the link is partitioned, is applied there at that instant, and its answer
comes back after another latency unless the link drops it, the answer was chosen to be lost
(the write committed, nobody hears of it), or the link trickles it (once an answer trickles, the
client's read timeout no longer fires, as a byte every few seconds resets it; a server that sends
nothing still times out). The caller waits for the answer until its own
timeout, on its own clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .runtime import _TIMEOUT, SimProcess, Wakeup, _switch_out, current_thread, park

CPU = 0.0003
"""True seconds a process spends before a request leaves it."""


class Refused(Exception):
    """The server is down: the connection was refused or reset."""


class TimedOut(Exception):
    """No answer within the caller's timeout."""


@dataclasses.dataclass
class LinkFaults:
    """Faults on the links between one process (or every process, ``"*"``) and one server."""

    partitioned_until: float = -1.0
    slow_until: float = -1.0
    slow_extra: float = 0.0
    trickle_until: float = -1.0
    trickle_delay: float = 0.0
    lose_next_answer: bool = False


class Server:
    """Anything requests go to: an API server or the store. ``down``: refuses at once;
    ``hung``: accepts and never answers."""

    def __init__(self, name: str, latency: float):
        self.name = name
        self.latency = latency
        self.down_until = -1.0
        self.hung_until = -1.0
        self.faults: dict[str, LinkFaults] = {}

    def link(self, process: str) -> LinkFaults:
        return self.faults.setdefault(process, LinkFaults())


def request(
    process: SimProcess,
    server: Server,
    apply: Callable[[], Any],
    *,
    timeout: float | None,
    write: bool,
) -> Any:
    """Send ``apply`` to ``server`` from ``process``; its result, or raise what it raised,
    :class:`Refused` or :class:`TimedOut` (``timeout`` on the caller's clock, ``None``: none)."""
    world = process.world
    park(world.now + CPU)  # a pause in this instant delays the send itself
    thread = current_thread()
    ticket = thread.ticket = Wakeup(thread)
    link = server.link(process.name)
    every = server.link("*")
    until = None if timeout is None else process.true_after(timeout)
    trickling = [False]
    """Set once an answer trickles: its bytes reset the read timeout, so it no longer fires."""
    rng = world.rng

    def latency() -> float:
        base = server.latency * (0.5 + rng.random())
        for faults in (link, every):
            if faults.slow_until > world.now:
                base += faults.slow_extra * rng.random()
        return base

    def cut(faults: LinkFaults) -> bool:
        return faults.partitioned_until > world.now

    def arrive() -> None:
        if cut(link) or cut(every):
            return
        if server.down_until > world.now:
            answer(False, Refused(f"{server.name} refused the connection"), refused=True)
            return
        if server.hung_until > world.now:
            return
        try:
            outcome = (True, apply())
        except Exception as exc:
            outcome = (False, exc)
        lost = write and (link.lose_next_answer or every.lose_next_answer)
        if lost:
            link.lose_next_answer = every.lose_next_answer = False
            world.note(f"{server.name}: answer to {process.name} lost after the write committed")
            return
        answer(*outcome)

    def answer(ok: bool, value: Any, refused: bool = False) -> None:
        delay = 0.0 if refused else latency()
        slow = [f for f in (link, every) if f.trickle_until > world.now]
        if slow and not refused:
            delay += max(f.trickle_delay for f in slow)
            trickling[0] = True

        def deliver() -> None:
            if (cut(link) or cut(every)) and not refused:
                return
            ticket.fire((ok, value))

        world.after(delay, deliver)

    def read_timeout() -> None:
        if not trickling[0]:
            ticket.fire(_TIMEOUT)

    world.after(latency(), arrive)
    if until is not None:
        world.at(until, read_timeout)
    got = _switch_out(thread, ticket, None)
    if got is _TIMEOUT:
        raise TimedOut(f"{server.name} did not answer within {timeout:.2f}s")
    ok, value = got
    if ok:
        return value
    raise value
