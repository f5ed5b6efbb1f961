"""Known bugs, put back for one run: does the simulator find them?

Each mutant reverts one fix of a safety rule (docs/safety.md) by editing the source of the product
function that holds it and compiling the edit in that function's module, for the duration of a
simulated run only (``python -m mclease_dev.sim --mutant NAME``). Main never changes; the edit
must apply exactly, so a mutant whose code moved fails loudly instead of testing nothing.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import textwrap
from collections.abc import Callable
from typing import Any

from mclease_core import _elector, _watchdog
from mclease_core.controller import _decisions as controller_decisions
from mclease_core.controller import _manager, _reconciler
from mclease_core.kube import _candidate, _lock


@dataclasses.dataclass(frozen=True)
class Edit:
    owner: Any
    """The class or module the function lives on."""
    name: str
    old: str
    new: str


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    rule: str
    what: str
    edits: tuple[Edit, ...]
    focus: tuple[str, ...] = ()
    """The fault kinds of a focused search for it (empty: every kind)."""
    with_: tuple[str, ...] = ()
    """Other mutants it is surveyed together with (one fix had two halves)."""

    def patches(self) -> dict[Any, dict[str, Any]]:
        """The edited functions, also where a module imported one by name."""
        patches: dict[Any, dict[str, Any]] = {}
        for edit in self.edits:
            original = getattr(edit.owner, edit.name)
            edited = _edited(edit)
            patches.setdefault(edit.owner, {})[edit.name] = edited
            if inspect.ismodule(edit.owner):
                for module in list(sys.modules.values()):
                    name = getattr(module, "__name__", "")
                    if name.startswith("mclease_core") and module is not edit.owner:
                        for attribute, value in list(vars(module).items()):
                            if value is original:
                                patches.setdefault(module, {})[attribute] = edited
        return patches


def _edited(edit: Edit) -> Callable[..., Any]:
    function = inspect.unwrap(getattr(edit.owner, edit.name))
    source = textwrap.dedent(inspect.getsource(function))
    if edit.old not in source:
        raise ValueError(f"mutant edit of {edit.name} no longer applies: {edit.old!r} not found")
    namespace: dict[str, Any] = {}
    module = inspect.getmodule(function)
    assert module is not None
    exec(  # noqa: S102 - the product's own source, edited as the mutant says
        compile(source.replace(edit.old, edit.new, 1), module.__file__ or "?", "exec"),
        module.__dict__,
        namespace,
    )
    return namespace[function.__name__]  # type: ignore[no-any-return]


MUTANTS = {
    mutant.name: mutant
    for mutant in (
        Mutant(
            "term-revived",
            "2",
            "a renewal sent after the term's deadline extends it (a paused process revives its "
            "term) and no attempt ends an expired term first",
            (
                Edit(
                    _watchdog.TermKeeper,
                    "extend",
                    "if self._term is not term or sent >= term.deadline:",
                    "if self._term is not term:",
                ),
                Edit(
                    _candidate.CandidateElector,
                    "try_acquire_or_renew",
                    "self.check_deadline()  #",
                    "pass  #",
                ),
                Edit(_elector.LeaderElector, "step", "self.check_deadline()", "pass"),
            ),
            focus=("pause",),
        ),
        Mutant(
            "replica-unchecked",
            "14",
            "every replica may write, whether or not it holds the replica lease",
            (
                Edit(
                    _manager.Controller,
                    "may_act",
                    "return not self.config.leader_elect or self._leading()",
                    "return True",
                ),
            ),
            focus=("pause",),
            with_=("release-fresh-read",),
        ),
        Mutant(
            "bare-identity",
            "12",
            "status names another cluster's holder by its bare identity",
            (
                Edit(
                    controller_decisions,
                    "build_status",
                    "holder = qualified(holder_cluster, identity)",
                    "holder = identity",
                ),
            ),
        ),
        Mutant(
            "stale-status-confirms",
            "8",
            "the lock takes a status written before its signal as a confirmation",
            (
                Edit(
                    _lock,
                    "_judge",
                    "if view.observed_generation is None or view.observed_generation < generation:",
                    "if False:",
                ),
            ),
        ),
        Mutant(
            "deletion-confirms-last-signal",
            "13",
            "the status of a deleted object names its holder at the generation below the "
            "deletion, which is its last signal (found by this simulator on main)",
            (
                Edit(
                    controller_decisions,
                    "build_status",
                    "elif own and not findings.deleting:",
                    "elif own:",
                ),
            ),
            focus=("delete-object", "store-down"),
        ),
        Mutant(
            "no-confirm-window",
            "11",
            "the controller confirms a signal however long after its window",
            (
                Edit(
                    _reconciler.Reconciler,
                    "_write_status",
                    "if left < CONFIRM_SLACK:",
                    "if lease_windows is None:",
                ),
            ),
            focus=("api-slow", "pause", "lost-answer-api"),
        ),
        Mutant(
            "release-fresh-read",
            "3",
            "a release compares against a fresh read instead of the version judged",
            (
                Edit(
                    _elector,
                    "release_observed",
                    "version=record.version",
                    "version=storage.read(name).version",
                ),
            ),
            focus=("pause",),
        ),
        Mutant(
            "status-without-version",
            "14",
            "status and finalizer patches carry no resourceVersion precondition",
            (
                Edit(
                    _reconciler.Reconciler,
                    "_patch",
                    '"resourceVersion": view.resource_version}',
                    "}",
                ),
            ),
            focus=("pause", "api-slow"),
        ),
        Mutant(
            "unbounded-lock-calls",
            "10",
            "a lock call waits for the API server with a per-read timeout only (as the client "
            "does), not to its deadline",
            (
                Edit(
                    _lock.MultiClusterLeaseLock,
                    "_call",
                    "return self._deadline.call(method, *args, until=until)",
                    "return method(*args, _request_timeout=max(0.01, until - "
                    "self.clock.monotonic()))",
                ),
            ),
            focus=("trickle-api", "api-slow"),
        ),
        Mutant(
            "watch-without-read-timeout",
            "14",
            "the controller's watch waits for events forever (a watch dropped silently blinds it)",
            (
                Edit(
                    _manager.Controller,
                    "_list_and_watch",
                    '"_request_timeout": (10.0, timeout + watch_grace(timeout)),',
                    "",
                ),
            ),
            focus=("watch-drop", "delete-object"),
        ),
        Mutant(
            "renews-late-signals",
            "11",
            "the controller keeps renewing for signals its candidate's lock no longer waits for",
            (
                Edit(
                    controller_decisions,
                    "plan",
                    "too_slow = missed >= MISSED_LIMIT and held_for == identity",
                    "too_slow = False",
                ),
            ),
            focus=("api-slow", "trickle-api"),
        ),
        Mutant(
            "status-ahead-confirms",
            "8",
            "a status written for a generation that did not exist yet confirms the signal that "
            "reaches it (found by this simulator on main, with forged statuses)",
            (
                Edit(
                    _lock.MultiClusterLeaseLock,
                    "_await_confirmation",
                    "and view.status == found_at_signal:",
                    "and False:",
                ),
            ),
            focus=("forge-status",),
        ),
        Mutant(
            "refusal-counts-as-late",
            "11",
            "the lock takes the controller's refusal of its new signal (the status of the one "
            "before) as a late confirmation of the one before (found by this simulator on main)",
            (
                Edit(
                    _lock.MultiClusterLeaseLock,
                    "_note_late_confirmation",
                    "and (reconciled is None or reconciled == confirmed)",
                    "",
                ),
            ),
            focus=("store-down", "partition-store"),
            with_=("retries-pending-signal",),
        ),
        Mutant(
            "retries-pending-signal",
            "11",
            "once the lease ran out for a candidate too slow to confirm, the controller retries "
            "for the signal then pending, which its candidate may be about to give up on (found "
            "by this simulator on main)",
            (
                Edit(
                    controller_decisions,
                    "plan",
                    "renewed_ago - age < windows.hold",
                    "renewed_ago < windows.hold",
                ),
            ),
            focus=("store-down", "partition-store"),
            with_=("refusal-counts-as-late",),
        ),
    )
}
