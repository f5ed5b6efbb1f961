"""The multi-cluster demo: one leader across two Kubernetes clusters, and a crash failover.

What it runs, all on this machine: two independent Kubernetes control planes ("east" and "west",
each its own etcd and kube-apiserver, from the test bed :mod:`mclease_dev.kube`), the
MultiClusterLease CRD and the controller's RBAC in both, one ``mclease controller`` per cluster
sharing one SQLite file as the global store, and in each cluster a candidate pod named ``app-0``
(:mod:`mclease_dev.candidate`: the standard Python elector with ``MultiClusterLeaseLock``). It waits
until one leads, kills that pod with SIGKILL (no goodbye, no release), and prints the takeover as a
timeline against the bound ``leaseDuration + 2 x retryPeriod``. Everything it started is stopped
at the end.

Not for: production set-up (see the README and ``config/``), nor a test: ``tests/e2e`` asserts
the same and more. Needs the Kubernetes binaries (``hack/kube-assets.sh``; ``make demo`` runs it).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

from mclease_core.testing import wait_until
from mclease_dev import multicluster
from mclease_dev.kube import AssetsMissingError, find_assets, start_clusters
from mclease_dev.processes import pid_exists

NAMESPACE = "demo"
BOUND = multicluster.LEASE_DURATION + 2 * multicluster.RETRY_PERIOD
START = time.monotonic()
PRINT_LOCK = threading.Lock()


def say(who: str, what: str, at: float | None = None) -> None:
    moment = time.monotonic() if at is None else at
    with PRINT_LOCK:
        print(f"  t={moment - START:6.2f}s  {who:<11} {what}", flush=True)


def show(text: str) -> None:
    with PRINT_LOCK:
        print(text, flush=True)


class Timeline(threading.Thread):
    """Prints who starts and stops leading (from heartbeats) and what each cluster's status says."""

    def __init__(
        self, candidates: list[multicluster.CandidateProcess], sites: list[multicluster.Site]
    ):
        super().__init__(name="timeline", daemon=True)
        self.candidates = candidates
        self.sites = sites
        self.stop = threading.Event()
        self._terms: dict[str, int] = {}
        self._leading: dict[str, bool] = {}
        self._status: dict[str, str] = {}

    def run(self) -> None:
        while not self.stop.wait(0.05):
            for candidate in self.candidates:
                self._follow(candidate)
            for site in self.sites:
                self._status_of(site)

    def _follow(self, candidate: multicluster.CandidateProcess) -> None:
        beats = candidate.beats()
        if not beats:
            return
        last, term = beats[-1]
        if term != self._terms.get(candidate.label):
            self._terms[candidate.label] = term
            first = next(t for t, n in beats if n == term)
            say(candidate.label, "LEADS: onstarted_leading ran, its work heartbeats", first)
            self._leading[candidate.label] = True
        elif self._leading.get(candidate.label) and time.monotonic() - last > 0.3:
            self._leading[candidate.label] = False
            say(candidate.label, "stopped leading (last heartbeat)", last)

    def _status_of(self, site: multicluster.Site) -> None:
        try:
            view = site.view()
        except Exception:
            return
        holder = view.global_holder_identity if view is not None else ""
        if holder == self._status.get(site.name, None):
            return
        self._status[site.name] = holder
        if not holder:
            text = "no global holder"
        elif "/" in holder:
            text = f"{holder!r} (held by another cluster: confirms nobody here)"
        else:
            text = f"{holder!r} (confirmed: this cluster's controller holds the global lease)"
        say(f"{site.name} status", f"globalHolderIdentity = {text}")


def kubectl_table(sites: list[multicluster.Site]) -> None:
    for site in sites:
        if site.cluster.assets.kubectl is None:
            return
        result = site.cluster.kubectl(
            "get", "multiclusterleases", "-n", site.namespace, check=False
        )
        lines = (result.stdout or result.stderr).rstrip().splitlines()
        show(f"\n  $ kubectl --context {site.name} -n {site.namespace} get multiclusterleases")
        show("\n".join(f"    {line}" for line in lines))
    show("")


def main() -> int:
    try:
        assets = find_assets()
    except AssetsMissingError as exc:
        print(f"multicluster demo: {exc}", file=sys.stderr)
        return 1
    show("mclease multi-cluster demo: one leader across two Kubernetes clusters")
    show(
        f"  candidates: lease duration {multicluster.LEASE_DURATION}s, renew deadline "
        f"{multicluster.RENEW_DEADLINE}s, retry period {multicluster.RETRY_PERIOD}s; controllers "
        f"reconcile every {multicluster.CONTROLLER_RETRY_PERIOD:g}s\n"
    )
    with tempfile.TemporaryDirectory(prefix="mclease-mc-demo-") as tmp:
        workdir = Path(tmp)
        say("demo", "starting two Kubernetes control planes, east and west (etcd + apiserver)")
        clusters = start_clusters(["east", "west"], workdir / "kube", assets)
        group = multicluster.ProcessGroup(workdir)
        timeline: Timeline | None = None
        try:
            sites = []
            for cluster in clusters.values():
                controller_kubeconfig = multicluster.prepare_cluster(cluster)
                candidate_kubeconfig = multicluster.prepare_namespace(cluster, NAMESPACE)
                sites.append(
                    multicluster.Site(
                        cluster, NAMESPACE, controller_kubeconfig, candidate_kubeconfig
                    )
                )
            say("demo", "both up; MultiClusterLease CRD and RBAC installed in each")
            store = f"sqlite:///{workdir / 'global-leases.db'}"
            controllers = [group.controller(site, store, wait=False) for site in sites]
            for controller in controllers:
                controller.wait_ready()
            say("demo", f"an election controller runs in each cluster; global store {store}")
            candidates = [group.candidate(site, "app-0") for site in sites]
            say("demo", "pod app-0 started in east and in west (same name on purpose)")
            timeline = Timeline(candidates, sites)
            timeline.start()
            leader, first = multicluster.wait_for_leader(candidates, timeout=60)
            (follower,) = [c for c in candidates if c is not leader]
            wait_until(
                lambda: (last := leader.last_beat()) is not None and last - first > 3,
                timeout=20,
                message="three seconds of leadership",
            )
            time.sleep(0.2)  # let the timeline print the statuses first
            kubectl_table(sites)

            killed_at = leader.kill()
            say(
                "demo", f"kill -9 {leader.label} (the leader: no release, its work dies)", killed_at
            )
            last_beat = leader.last_beat() or killed_at
            _, took_over = multicluster.wait_for_leader(
                [follower], timeout=BOUND + 20, after=killed_at
            )
            time.sleep(1.0)  # a second of the new leader's timeline
            kubectl_table(sites)

            gap = took_over - killed_at
            clashes = multicluster.overlaps(multicluster.all_intervals(candidates))
            beats = sum(len(c.beats()) for c in candidates)
            verdict = "within" if gap <= BOUND else "OVER"
            show(
                f"  takeover: {follower.label} led {gap:.2f}s after the kill "
                f"({took_over - last_beat:.2f}s without any leader), {verdict} the bound "
                f"leaseDuration + 2 x retryPeriod = {BOUND}s."
            )
            show(
                "  The old leader's controller released the global lease once its pod had been "
                f"silent for a lease duration ({multicluster.LEASE_DURATION}s); the other "
                "cluster's controller read the release and confirmed its own pod."
            )
            if clashes:
                show(f"  TWO LEADERS AT ONCE: {clashes}")
            else:
                show(
                    f"  Never two leaders at once: {beats} heartbeats checked on the shared "
                    "monotonic clock."
                )
            return 0 if gap <= BOUND and not clashes else 1
        finally:
            if timeline is not None:
                timeline.stop.set()
                timeline.join(2)
            group.stop_all()
            pids = [p.pid for p in group.processes if p.popen is not None]
            for cluster in clusters.values():
                pids += cluster.pids
                cluster.stop()
            left = [pid for pid in pids if pid_exists(pid)]
            show("\n  all processes stopped." if not left else f"\n  STILL RUNNING: {left}")


if __name__ == "__main__":
    sys.exit(main())
