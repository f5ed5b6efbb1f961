"""Two rounds of ``mclease_dev.chaos`` (``make chaos``) on the session's clusters: one on a SQLite
file, one on Redis, each with one seeded random fault (kill -9, SIGSTOP, a proxy fault or a store
restart) among two controller replicas per cluster and four candidates (standard elector and
CandidateElector). No overlap, a leader within D + 2P of the heal, every lock call within its
bound, every term ended in time. Then one ``mclease elect`` round (``--mode elect``, no
Kubernetes): two ``mclease elect`` processes on Redis, the leader's elector killed -9 alone; no
overlap, growing fencing tokens, its command gone with it, a takeover within D + 2P. A failing
round keeps its files and prints its replay command.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mclease_dev import chaos
from tests.e2e.conftest import PreparedCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.kube]

SEED = 20261202


def test_two_chaos_rounds_find_no_violation(
    e2e_clusters: dict[str, PreparedCluster], tmp_path: Path
) -> None:
    clusters = {n: (p.cluster, p.controller_kubeconfig) for n, p in e2e_clusters.items()}
    summary = chaos.run(
        2,
        seed=SEED,
        stores=("sqlite", "redis"),
        keep=tmp_path,
        clusters=clusters,
        mode="controllers",
    )
    assert [r.store for r in summary.rounds] == ["sqlite", "redis"]
    assert all(r.failover is not None for r in summary.rounds), summary.table()
    assert not summary.violations, summary.table()


def test_an_elect_round_finds_no_violation(tmp_path: Path) -> None:
    summary = chaos.run(
        1,
        seed=SEED,
        stores=("redis",),
        keep=tmp_path,
        mode="elect",
        faults=("kill-elect-leader",),
    )
    (only,) = summary.rounds
    assert (only.mode, only.store, only.fault.kind) == ("elect", "redis", "kill-elect-leader")
    assert only.failover is not None, summary.table()
    assert not summary.violations, summary.table()
