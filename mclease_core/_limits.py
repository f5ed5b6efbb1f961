"""The values mclease accepts, in one place: durations, identities, counters, and log-safe text.

Every entry point (``LeaseTiming``, the record decoder, storage URL options, the CLI, the
controller reading a MultiClusterLease, the CRD schema) checks against these limits, so a value one
part accepts is never one another part cannot hold: a duration of 50 years is refused before it
makes an object undeletable, a fencing token the status schema cannot store is a corrupt record,
not an endless loop of refused status writes.

Strings that come from other people (identities, cluster names, stored records, API answers) go
through :func:`printable` before they reach a log line or an Event, so they cannot forge lines.
"""

from __future__ import annotations

import math
import unicodedata

MIN_DURATION = 0.05
MAX_DURATION = 3600.0
"""Every duration is a finite number of seconds in ``[MIN_DURATION, MAX_DURATION]``: shorter
busy-loops; longer makes a lease, and the deletion of its object, wait for hours. The CRD's
whole-second fields share the maximum."""

MAX_IDENTITY_LENGTH = 1024
"""Longest holder identity, in characters (the CRD's ``spec.holderIdentity`` maxLength)."""
MAX_CLUSTER_LENGTH = 253
"""Longest cluster name, in characters (the CRD's ``status.globalHolderCluster`` maxLength)."""
MAX_FENCING_TOKEN = 2**63 - 1
"""``status.fencingToken`` is an int64 >= 0."""
MAX_TRANSITIONS = 2**31 - 1
"""``status.globalLeaseTransitions`` is an int32 >= 0."""

_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode categories never allowed in identities and escaped in logs: control and format
characters (newline, NUL, tab, right-to-left marks), surrogates, private and unassigned code
points, line and paragraph separators."""

_EXCERPT = 200


def check_duration(name: str, value: object) -> float:
    """``value`` in seconds if it is a finite number in the accepted range, else
    :class:`ValueError` naming ``name`` and the range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {excerpt(repr(value))}")
    seconds = float(value)
    if not (math.isfinite(seconds) and MIN_DURATION <= seconds <= MAX_DURATION):
        raise ValueError(
            f"{name} must be between {MIN_DURATION:g} and {MAX_DURATION:g} seconds, "
            f"got {excerpt(repr(value))}"
        )
    return seconds


def identity_problem(value: str, *, what: str = "identity", allow_slash: bool = True) -> str:
    """Why ``value`` cannot be a holder identity or cluster name, or ``""`` when it can.

    Empty is allowed (it means "nobody"); ``allow_slash=False`` is for names that appear in
    ``status.globalHolderIdentity``, where ``cluster/identity`` marks another cluster's holder.
    """
    limit = MAX_CLUSTER_LENGTH if what == "cluster name" else MAX_IDENTITY_LENGTH
    if len(value) > limit:
        return f"{what} is {len(value)} characters long, the limit is {limit}"
    if not allow_slash and "/" in value:
        return f"{what} {printable(value)} contains '/', which marks another cluster's holder"
    bad = next((char for char in value if unicodedata.category(char) in _UNPRINTABLE), None)
    if bad is not None:
        return (
            f"{what} {printable(value)} contains the control or format character U+{ord(bad):04X}"
        )
    return ""


def cluster_name_problem(name: str) -> str:
    """Why ``name`` cannot be a controller's cluster name, or ``""`` when it can: not blank,
    no ``/`` (status writes another cluster's holder ``cluster/identity``), and within the limits
    of a cluster name in a record. The one check, for the CLI and the reconciler alike."""
    if not name.strip():
        return "the cluster name is empty"
    return identity_problem(name, what="cluster name", allow_slash=False)


def printable(value: object, limit: int = _EXCERPT) -> str:
    """``value`` quoted for a log line or an Event: unprintable characters escaped, at most
    ``limit`` characters of it kept."""
    text = str(value)
    suffix = f"... ({len(text)} characters)" if len(text) > limit else ""
    return f"'{excerpt(text[:limit])}'{suffix}"


def excerpt(text: str, limit: int = _EXCERPT) -> str:
    """``text`` with unprintable characters escaped and cut to ``limit`` characters (unquoted,
    for messages that embed an error or a stored value)."""
    shown = "".join(
        char if unicodedata.category(char) not in _UNPRINTABLE else _escape(char)
        for char in text[:limit]
    )
    return shown + (f"... ({len(text)} characters)" if len(text) > limit else "")


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
