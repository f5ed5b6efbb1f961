"""Backend-specific tests: URLs, layout, corruption, outages, the elector end to end."""

from __future__ import annotations

from mclease_example import ExampleStorage

from mclease_core import LeaseTiming
from mclease_core.testing import ServerProcess, check_elector_takeover, check_outage_and_recovery


def test_a_stopped_server_is_unavailable_then_recovers(example_server: ServerProcess) -> None:
    # TODO: use a server of this test's own, as the stop disturbs the others
    with ExampleStorage.from_url(f"example://{example_server.address}/outage?timeout=1") as store:
        check_outage_and_recovery(store, example_server, unavailable_within=3.0)


def test_two_electors_elect_one_leader_and_fail_over(example_server: ServerProcess) -> None:
    check_elector_takeover(
        lambda: ExampleStorage.from_url(f"example://{example_server.address}/elector"),
        timing=LeaseTiming(lease_duration=2.0, renew_deadline=1.5, retry_period=0.5),
    )
