"""Benchmark 3 of ``bench/controller.py``: crash failover and graceful handoff.

Clusters east and west, a controller each (``--retry-period 0.5``) and a candidate each
(``mclease_dev.candidate``: ``kubernetes.leaderelection`` with our lock, R=3, P=1 and the shortest
whole D the lock accepts). Crash: kill -9 of the leader, at a random moment of the candidates'
poll cycle, to the other candidate's ``onstarted_leading``, against D + 2P. Graceful: the old
leader's pod comes back and follows; then the new leader gets SIGTERM, stops its work and calls
``lock.release()``; from the release written to the other's ``onstarted_leading``, against P.
Watches on both clusters' objects time the steps in between (medians over the runs).

Each run is done once per elector: ``standard`` (``kubernetes.leaderelection``: a follower polls
every P, so a handoff takes up to P plus the round trips) and ``candidate`` (``CandidateElector``,
``python -m mclease_dev.chaos candidate``: it tries again the moment status says the lease was
freed; its handoff goal is 0.3 s with a store that has a change feed).
"""

from __future__ import annotations

import dataclasses
import math
import random
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from _common import Row
from _controller_bed import (
    FAILOVER_TIMING,
    LeaseStatus,
    LeaseWatch,
    admin_site,
    load_average,
    metered_controller,
    ms,
    new_name,
    wait_for_found,
)

from mclease_core.testing import wait_until
from mclease_dev.kube import KubeCluster
from mclease_dev.multicluster import CandidateProcess, ControllerProcess

LEASE = "singleton"
ELECTORS = {
    "standard": (sys.executable, "-m", "mclease_dev.candidate"),
    "candidate": (sys.executable, "-m", "mclease_dev.chaos", "candidate"),
}
"""The candidate program of each elector."""
HANDOFF_GOALS = {"standard": None, "candidate": 0.3}
"""The handoff goal of each elector (None: P + 0.2 s, the standard elector's poll)."""
WHOLE_SECONDS = (
    int(FAILOVER_TIMING.lease_duration),
    int(FAILOVER_TIMING.renew_deadline),
    int(FAILOVER_TIMING.retry_period),
)
"""(D, R, P) of :data:`FAILOVER_TIMING` in whole seconds, as the candidate's command line takes
them."""


@dataclasses.dataclass(frozen=True)
class FailoverRun:
    """One run's times in seconds: from the kill -9 (``crash_*``) and from the release written
    (``handoff_*``). NaN: the step was not seen on a watch."""

    crash: float
    """Kill -9 of the leader to the other candidate's ``onstarted_leading``."""
    crash_since_last_signal: float
    """The leader's last confirmed renewal to the kill (negative: before it)."""
    crash_old_side_released: float
    crash_new_side_free: float
    crash_new_signal: float
    handoff: float
    """Release written to the other candidate's ``onstarted_leading``."""
    handoff_from_sigterm: float
    handoff_release_ok: bool
    handoff_old_side_released: float
    handoff_new_side_free: float
    handoff_new_signal: float


class Sides:
    """One failover run: both clusters' controllers, candidates and watches in one namespace."""

    def __init__(
        self, clusters: dict[str, KubeCluster], url: str, workdir: Path, elector: str
    ) -> None:
        self.clusters = clusters
        self.program = ELECTORS[elector]
        self.workdir = workdir
        self.namespace = new_name("fo")
        self.controllers: list[ControllerProcess] = []
        self.candidates: list[CandidateProcess] = []
        self.watches: dict[str, LeaseWatch] = {}
        for cluster in clusters.values():
            cluster.ensure_namespace(self.namespace)
            controller = metered_controller(cluster, url, self.namespace, workdir)
            self.controllers.append(controller)
            controller.start()
        for controller in self.controllers:
            controller.wait_ready()
        for name, cluster in clusters.items():
            self.watches[name] = LeaseWatch(cluster.api_client(), self.namespace).start()

    def candidate(self, cluster: str, identity: str) -> CandidateProcess:
        """The recording candidate without heartbeats (it leads while ``in_term``)."""
        site = admin_site(self.clusters[cluster], self.namespace)
        child = CandidateProcess(
            site,
            identity,
            self.workdir,
            label=f"{site.name}-{identity}-{self.namespace}",
            lease_name=LEASE,
            timing=WHOLE_SECONDS,
            heartbeats=False,
            program=self.program,
        )
        self.candidates.append(child)
        child.start()
        return child

    def released_at(self, candidate: CandidateProcess, after: float) -> float | None:
        """First status in ``candidate``'s cluster after ``after`` that names no global holder."""
        for arrived, obj in list(self.watches[candidate.site.name].seen):
            if arrived > after and obj.get("status") and not LeaseStatus.of(obj).global_holder:
                return arrived
        return None

    def close(self) -> None:
        for child in [*reversed(self.candidates), *reversed(self.controllers)]:
            child.terminate()
        for watch in self.watches.values():
            watch.stop()


def confirmed_signal(candidate: CandidateProcess, started: float) -> float | None:
    """Start of the confirmed lock call that made ``candidate`` lead at ``started``."""
    writes = [call for call in candidate.calls() if call.ok and call.kind in ("create", "update")]
    return max((call.start for call in writes if call.end <= started + 0.05), default=None)


def settled(leader: CandidateProcess, follower: CandidateProcess, since: float) -> bool:
    """The leader renewed twice and the follower polled twice since ``since``."""
    renewals = [
        call for call in leader.calls() if call.ok and call.kind == "update" and call.start > since
    ]
    polls = [call for call in follower.calls() if call.kind == "get" and call.start > since]
    return len(renewals) >= 2 and len(polls) >= 2


def failover_run(
    clusters: dict[str, KubeCluster], url: str, workdir: Path, elector: str
) -> FailoverRun:
    d, _, p = WHOLE_SECONDS
    sides = Sides(clusters, url, workdir, elector)
    try:
        candidates = [sides.candidate("east", "app-0"), sides.candidate("west", "app-1")]
        leader = wait_for_found(
            lambda: next((c for c in candidates if c.leading()), None), 40, "a first leader"
        )
        (follower,) = [c for c in candidates if c is not leader]
        led_from = leader.first("started") or time.monotonic()
        wait_until(
            lambda: settled(leader, follower, led_from),
            timeout=20,
            message="leader and follower to settle",
        )

        # Crash: kill -9 of the leader's process (no handler runs), at a random moment of the
        # candidates' poll cycle (settling ends right after a poll, which would bias the times).
        time.sleep(random.uniform(0, p))
        last_signal = max(
            call.start for call in leader.calls() if call.ok and call.kind == "update"
        )
        killed = leader.kill()
        took_over = wait_for_found(
            lambda: follower.first("started", killed),
            d + 2 * p + 15,
            "the other candidate to lead after kill -9",
        )

        # The killed pod comes back (same identity) and follows; then a graceful stop.
        restarted = sides.candidate(leader.site.name, leader.identity)
        wait_until(
            lambda: settled(follower, restarted, took_over),
            timeout=20,
            message="the new leader and the restarted follower to settle",
        )
        time.sleep(random.uniform(0, p))
        terminated = follower.signal(signal.SIGTERM)
        released = wait_for_found(
            lambda: follower.first("released", terminated), 10, "the leader to release"
        )
        handed = wait_for_found(
            lambda: restarted.first("started", released),
            d + 15,
            "the restarted candidate to lead after the release",
        )
        return FailoverRun(
            crash=took_over - killed,
            crash_since_last_signal=killed - last_signal,
            crash_old_side_released=_since(sides.released_at(leader, killed), killed),
            crash_new_side_free=_since(sides.released_at(follower, killed), killed),
            crash_new_signal=_since(confirmed_signal(follower, took_over), killed),
            handoff=handed - released,
            handoff_from_sigterm=handed - terminated,
            handoff_release_ok=bool(follower.released()),
            handoff_old_side_released=_since(sides.released_at(follower, released), released),
            handoff_new_side_free=_since(sides.released_at(restarted, released), released),
            handoff_new_signal=_since(confirmed_signal(restarted, handed), released),
        )
    finally:
        sides.close()


def _since(moment: float | None, origin: float) -> float:
    return math.nan if moment is None else moment - origin


def bench_failover(
    clusters: dict[str, KubeCluster], store: str, url: str, workdir: Path, runs: int, budget: float
) -> list[Row]:
    """Per elector, up to ``runs`` runs within ``budget`` seconds: a crash and a handoff row."""
    rows: list[Row] = []
    for elector in ELECTORS:
        rows += _bench_elector(clusters, store, url, workdir, runs, budget, elector)
    return rows


def _bench_elector(
    clusters: dict[str, KubeCluster],
    store: str,
    url: str,
    workdir: Path,
    runs: int,
    budget: float,
    elector: str,
) -> list[Row]:
    d, _, p = WHOLE_SECONDS
    results: list[FailoverRun] = []
    load_before = load_average()
    started = time.monotonic()
    errors = []
    for _ in range(runs):
        if time.monotonic() - started > budget:
            break
        try:
            results.append(failover_run(clusters, url, workdir, elector))
        except Exception as exc:  # a run that failed is reported, not hidden
            errors.append(f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
    context: dict[str, object] = {
        "runs": len(results),
        "load": f"{load_before} -> {load_average()}",
    }
    if errors:
        context["failed_runs"] = len(errors)
        context["first_error"] = errors[0][:200]
    if not results:
        return [Row("crash failover", f"{store}, {elector}: no run completed", extra=context)]

    def median_ms(step: Callable[[FailoverRun], float]) -> float | None:
        values = [value for run in results if not math.isnan(value := step(run))]
        return ms(statistics.median(values)) if values else None

    def bounded(
        benchmark: str, subject: str, times: list[float], bound: float, **steps: object
    ) -> Row:
        """A row of ``times`` against ``bound`` (p99: the worst run, there are few)."""
        return Row(
            benchmark,
            f"{store}, {elector} elector: {subject} -> other cluster's onstarted_leading",
            p50_ms=ms(statistics.median(times)),
            p99_ms=ms(max(times)),
            ratio=max(times) / bound,
            extra={
                "bound_ms": ms(bound),
                "within": f"{sum(v <= bound for v in times)}/{len(times)}",
                "runs_ms": [ms(v) for v in times],
                **steps,
                **context,
            },
        )

    handoff = [run.handoff for run in results]
    goal = HANDOFF_GOALS[elector]
    return [
        bounded(
            "crash failover",
            "kill -9 leader",
            [run.crash for run in results],
            d + 2 * p,
            kill_after_last_signal_ms=median_ms(lambda run: run.crash_since_last_signal),
            old_side_released_ms=median_ms(lambda run: run.crash_old_side_released),
            new_side_status_free_ms=median_ms(lambda run: run.crash_new_side_free),
            new_signal_ms=median_ms(lambda run: run.crash_new_signal),
        ),
        bounded(
            "graceful handoff",
            "release written",
            handoff,
            p + 0.2 if goal is None else goal,
            from_sigterm_ms=median_ms(lambda run: run.handoff_from_sigterm),
            releases_ok=f"{sum(run.handoff_release_ok for run in results)}/{len(handoff)}",
            old_side_released_ms=median_ms(lambda run: run.handoff_old_side_released),
            new_side_status_free_ms=median_ms(lambda run: run.handoff_new_side_free),
            new_signal_ms=median_ms(lambda run: run.handoff_new_signal),
        ),
    ]
