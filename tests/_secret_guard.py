"""A pytest plugin that fails any test whose output shows a canary password.

Enabled for every run by ``-p tests._secret_guard`` in ``pyproject.toml``'s ``addopts``. After each
phase of a test (setup, call, teardown) it looks at the phase's report: the captured stdout,
stderr and log sections and the failure text. If one of :data:`tests.support.CANARY_PASSWORDS`
appears there, raw or percent-encoded, the report becomes a failure that names the canary (by
index, not value) and where it appeared. Tests that need a password use those canaries, so a
message, log line or repr that leaks a password fails the suite even when the test itself did not
look for it.

What it cannot see: output a test keeps to itself (a subprocess's pipe it never prints), and
passwords that are not canaries. Tests of leaks in subprocess output check that output directly.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Generator

import pytest

from mclease_dev.canaries import CANARY_PASSWORDS


def canary_forms() -> list[tuple[int, str]]:
    """(index, text) of every form a canary can take in output: raw and percent-encoded."""
    forms = []
    for index, canary in enumerate(CANARY_PASSWORDS):
        for form in dict.fromkeys(
            [canary, urllib.parse.quote(canary, safe=""), urllib.parse.quote(canary)]
        ):
            forms.append((index, form))
    return forms


def leaks(report: pytest.TestReport) -> list[str]:
    """Where (section title or "the failure text") each canary appears in ``report``. A report
    carries the sections of the phases before it too: only its own phase's are looked at, so a
    leak fails the phase it happened in, once."""
    texts = [
        (title, content) for title, content in report.sections if title.endswith(f" {report.when}")
    ]
    if report.longrepr is not None:
        texts.append(("the failure text", report.longreprtext))
    return [
        f"canary password #{index} in {title}"
        for title, content in texts
        for index, form in canary_forms()
        if form in content
    ]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    found = sorted(set(leaks(report)))
    if found:
        note = (
            "secret guard: a password leaked into the output ("
            + "; ".join(found)
            + "); redact it (mclease_core._urls.redact) or scrub the client's message"
        )
        previous = f"{report.longreprtext}\n\n" if report.failed else ""
        report.outcome = "failed"
        report.longrepr = previous + note
    return report
