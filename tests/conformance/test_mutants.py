"""The conformance suite catches the fault bugs of issue 10: each planted in the redis backend
(``redis_mutants.py``), the suite run against each in one pytest subprocess.

Every mutant must fail the test written to catch it (other tests may fail too: they are listed
in the failure message and the printed summary); the unmutated backend must pass everything.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SUITE = Path(__file__).with_name("redis_mutants.py")
ROOT = Path(__file__).resolve().parents[2]

CAUGHT_BY = {
    "TestLostWriteIsConflict": "test_a_lost_answer_to_a_committed_write_is_never_a_conflict",
    "TestLostWriteIsSuccess": (
        "test_a_frozen_server_makes_writes_outcome_unknown_within_the_declared_timeout"
    ),
    "TestNoTimeouts": (
        "test_a_frozen_server_makes_writes_outcome_unknown_within_the_declared_timeout"
    ),
    "TestStaleConnectionUnchecked": (
        "test_a_write_after_the_server_restarted_is_unavailable_or_succeeds"
    ),
    "TestUpdateInTwoSteps": "test_concurrent_updaters_in_threads_have_one_winner",
}
"""Each mutant's test class in ``redis_mutants.py`` and the conformance test meant to catch it."""


@dataclass
class ClassRun:
    """What the suite did against one backend: the tests that failed, the seconds it took."""

    failed: set[str] = field(default_factory=set)
    passed: int = 0
    seconds: float = 0.0


@pytest.fixture(scope="module")
def suite_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ClassRun]:
    report = tmp_path_factory.mktemp("mutants") / "junit.xml"
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", str(SUITE), "-q", f"--junitxml={report}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    output = f"{finished.stdout[-3000:]}\n{finished.stderr[-2000:]}"
    assert report.is_file(), f"the mutant suite did not run:\n{output}"
    runs: dict[str, ClassRun] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        run = runs.setdefault(case.get("classname", "").rsplit(".", 1)[-1], ClassRun())
        run.seconds += float(case.get("time", "0"))
        name = case.get("name", "").split("[", 1)[0]
        if case.find("failure") is not None or case.find("error") is not None:
            run.failed.add(name)
        elif case.find("skipped") is None:
            run.passed += 1
    summary = "\n".join(
        f"{name}: {run.seconds:.1f}s, {run.passed} passed, failed: {sorted(run.failed)}"
        for name, run in runs.items()
    )
    print(f"\nconformance suite against the redis mutants:\n{summary}")
    missing = {"TestUnmutated", *CAUGHT_BY} - set(runs)
    assert not missing, f"the suite did not run against {sorted(missing)}:\n{output}"
    return runs


def test_the_unmutated_backend_passes_the_whole_suite(suite_runs: dict[str, ClassRun]) -> None:
    run = suite_runs["TestUnmutated"]
    assert run.passed > 40, f"the suite hardly ran: {run}"
    assert not run.failed, f"the unmutated redis backend failed {sorted(run.failed)}"


@pytest.mark.parametrize(("mutant", "catcher"), CAUGHT_BY.items(), ids=list(CAUGHT_BY))
def test_the_suite_catches_the_planted_bug(
    suite_runs: dict[str, ClassRun], mutant: str, catcher: str
) -> None:
    run = suite_runs[mutant]
    assert run.passed > 0, f"the suite did not run against {mutant}: {run}"
    assert catcher in run.failed, (
        f"{mutant} was not caught by {catcher}; the tests that failed: {sorted(run.failed)}"
    )
