"""What mclease accepts (issue 8 items 17-21): one range for every duration, identities that
cannot forge log lines, counters the status schema can hold, and log-safe text."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mclease_core import CorruptRecordError, LeaseData, LeaseTiming
from mclease_core._limits import MAX_DURATION, identity_problem, printable
from mclease_core.plugin import decode_lease_data
from tests.support import raw_record

WALL = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "fields",
    [
        {"leaseDurationSeconds": float("inf")},
        {"leaseDurationSeconds": 1e308},
        {"leaseDurationSeconds": 2**31 - 1},
        {"leaseDurationSeconds": 0},
        {"fencingToken": -5},
        {"fencingToken": 2**70},
        {"leaseTransitions": 2**31},
        {"holderIdentity": "x" * 2**20},
        {"holderIdentity": "a\nb"},
        {"holderCluster": "east\u202e"},
    ],
    ids=repr,
)
def test_the_decoder_refuses_values_no_status_can_hold(fields: dict[str, Any]) -> None:
    with pytest.raises(CorruptRecordError) as info:
        decode_lease_data(raw_record(**fields), key="k", backend="test")
    assert len(str(info.value)) < 600, "a 1 MiB value must not become a 1 MiB message"
    assert "\n" not in str(info.value)


def test_the_decoder_keeps_valid_extremes() -> None:
    data = decode_lease_data(
        raw_record(
            leaseDurationSeconds=MAX_DURATION, fencingToken=2**63 - 1, leaseTransitions=2**31 - 1
        )
    )
    assert data.fencing_token == 2**63 - 1


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview, lambda raw: raw.decode()])
def test_the_decoder_takes_any_bytes_a_backend_has_and_remembers_none_it_refuses(
    kind: Any,
) -> None:
    """Decoded records are cached by their bytes; a bytearray or memoryview (unhashable) from a
    third-party backend is decoded too (the cache made it a TypeError, found in review), and a
    refused record is refused every time."""
    raw = raw_record()
    assert decode_lease_data(kind(raw)) == decode_lease_data(raw)
    bad = raw_record(holderIdentity="a\nb")
    for _ in range(2):
        with pytest.raises(CorruptRecordError):
            decode_lease_data(kind(bad), key="k", backend="test")


@pytest.mark.parametrize(
    ("duration", "deadline", "period"),
    [
        (float("inf"), 10, 2),
        (1e308, 10, 2),
        (50 * 365 * 86400, 10, 2),
        (float("nan"), 10, 2),
        (15, 10, 1e-9),
        (15, 10, -1),
    ],
)
def test_every_timing_is_within_one_range(duration: float, deadline: float, period: float) -> None:
    with pytest.raises(ValueError, match=r"between 0\.05 and 3600 seconds"):
        LeaseTiming(duration, deadline, period)


@pytest.mark.parametrize("identity", ["a\nb", "a\x00", "tab\there", "rtl\u200f", "ls\u2028"])
def test_identities_with_control_or_format_characters_are_refused(identity: str) -> None:
    assert identity_problem(identity)
    with pytest.raises(ValueError, match="control or format character"):
        LeaseData(identity, 15, WALL, WALL)


def test_a_slash_is_refused_only_where_it_marks_another_cluster() -> None:
    assert identity_problem("east/app-0") == ""
    assert "another cluster" in identity_problem("east/app-0", allow_slash=False)


def test_printable_escapes_and_cuts() -> None:
    text = printable("line\nforged INFO\u202eevil" * 50, limit=40)
    assert "\n" not in text
    assert "\\x0a" in text
    assert "\\u202e" in text
    assert text.endswith("(1050 characters)")
