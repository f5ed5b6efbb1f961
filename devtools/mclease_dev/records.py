"""What a recording candidate (:mod:`mclease_dev.candidate`) wrote, read back as typed records.

The candidate writes two files, each line on ``time.monotonic()`` (``CLOCK_MONOTONIC`` is shared
by every process of the machine, so lines of different processes compare):

- heartbeats, while it leads: ``<time> <identity> <term>`` every 20 ms. The span of one term's
  lines is a leadership interval (:class:`Interval`), also when the process is killed with -9.
- events: ``call <start> <end> <ok> <get|create|update>`` per lock call (:class:`LockCall`;
  for create and update, ok means the controller confirmed the signal), ``started <t> <term>``
  and ``stopped <t> <term>`` per callback, ``releasing <t>`` and ``released <t> <ok>`` on a
  graceful stop.

:class:`CandidateRecords` reads both files; files that do not exist yet read as empty, and a line
the candidate is still writing (incomplete) is skipped.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Literal, NamedTuple, cast

__all__ = [
    "HEARTBEAT_FRESH",
    "Beat",
    "CandidateRecords",
    "Interval",
    "LockCall",
    "LockCallKind",
]

HEARTBEAT_FRESH = 0.15
"""A candidate whose last heartbeat is younger than this leads now (it beats every 20 ms)."""

LockCallKind = Literal["get", "create", "update"]
_CALL_KINDS = ("get", "create", "update")


class Beat(NamedTuple):
    """One heartbeat line."""

    at: float
    term: int


class LockCall(NamedTuple):
    """One call of the candidate's lock: when it started and ended, and its answer."""

    start: float
    end: float
    ok: bool
    kind: LockCallKind


@dataclasses.dataclass(frozen=True)
class Interval:
    """One leadership term of one candidate: the span of its heartbeats."""

    candidate: str
    term: int
    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


def _lines(path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]


class CandidateRecords:
    """The records of one candidate (``identity``, shown as ``label``)."""

    def __init__(self, identity: str, label: str, events: Path, heartbeats: Path | None):
        self.identity = identity
        self.label = label
        self.events = events
        self.heartbeats = heartbeats

    # ----- heartbeats ----------------------------------------------------------------------

    def beats(self) -> list[Beat]:
        """Every complete heartbeat line."""
        rows = []
        for line in _lines(self.heartbeats):
            parts = line.split()
            if len(parts) == 3 and parts[1] == self.identity:
                rows.append(Beat(float(parts[0]), int(parts[2])))
        return rows

    def intervals(self) -> list[Interval]:
        terms: dict[int, list[float]] = {}
        for moment, term in self.beats():
            terms.setdefault(term, []).append(moment)
        return [
            Interval(self.label, term, min(times), max(times))
            for term, times in sorted(terms.items())
        ]

    def last_beat(self) -> float | None:
        beats = self.beats()
        return beats[-1].at if beats else None

    def leading(self) -> bool:
        """Heartbeats right now (its last one is younger than :data:`HEARTBEAT_FRESH`); without
        a heartbeat file: :meth:`in_term`."""
        if self.heartbeats is None:
            return self.in_term()
        last = self.last_beat()
        return last is not None and time.monotonic() - last < HEARTBEAT_FRESH

    def first_beat_after(self, moment: float) -> float | None:
        return next((beat.at for beat in self.beats() if beat.at > moment), None)

    # ----- events --------------------------------------------------------------------------

    def event_lines(self) -> list[list[str]]:
        return [line.split() for line in _lines(self.events) if line]

    def first(self, kind: str, after: float = 0.0) -> float | None:
        """The time of the first ``kind`` event (``started``, ``released`` ...) after ``after``."""
        return next(
            (float(f[1]) for f in self.event_lines() if f[0] == kind and float(f[1]) > after),
            None,
        )

    def in_term(self) -> bool:
        """``onstarted_leading`` ran more recently than ``onstopped_leading`` (for candidates
        without heartbeats)."""
        started = [float(f[1]) for f in self.event_lines() if f[0] == "started"]
        stopped = [float(f[1]) for f in self.event_lines() if f[0] == "stopped"]
        return bool(started) and (not stopped or max(started) > max(stopped))

    def released(self) -> bool | None:
        """Whether the graceful stop wrote the empty holder (``None``: no release yet)."""
        return next((f[2] == "1" for f in self.event_lines() if f[0] == "released"), None)

    def calls(self) -> list[LockCall]:
        return [
            LockCall(float(f[1]), float(f[2]), f[3] == "1", cast(LockCallKind, f[4]))
            for f in self.event_lines()
            if f[0] == "call" and len(f) == 5 and f[4] in _CALL_KINDS
        ]

    def confirmations(self) -> list[LockCall]:
        """The create/update calls that returned True: the controller confirmed the signal."""
        return [c for c in self.calls() if c.ok and c.kind in ("create", "update")]
