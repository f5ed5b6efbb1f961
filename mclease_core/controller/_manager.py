"""The election controller process: watch, queue, workers, replica election, health, metrics.

``Controller.run()`` lists and watches MultiClusterLease objects (all namespaces, or a watch per
given namespace), queues a lease when its spec generation changes or it is being deleted, and
reconciles it at once; each reconcile asks to be queued again after a (jittered) retry period. An
object the watch reports as created after the controller started is a signal (its candidate's
create), unlike one it finds in its first list.

A watch that goes silent (a proxy or load balancer dropping the connection without closing it) is
noticed: the server ends every watch after ``watch_timeout`` and sends bookmarks, so a read that
waits longer than that plus a grace is a dead connection; TCP keepalive probes it too. ``/healthz``
fails while no list, event, bookmark or clean end of a watch arrived for that long.

With ``leader_elect`` only the replica holding a ``coordination.k8s.io`` Lease reconciles; a
replica that loses it stops and exits non-zero, as controller-runtime does, so it restarts clean.
Every reconcile checks the replica's term before it is started and before each write, on the
monotonic clock: a replica paused past its term and resumed writes nothing.

Observability follows controller-runtime (names and labels in ``_metrics``): each reconcile is
counted by result, the work queue counts itself, ``leader_election_master_status`` tells the
active replica. A lease deleted, or missing from a fresh list (its DELETED event was missed while
no watch ran), is forgotten with its per-lease series. Events name the object's uid, as
``kubectl describe`` looks them up.

Not here: what a reconcile does (``_reconciler``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import logging
import os
import random
import socket
import threading
import time
from typing import Any
from wsgiref.simple_server import WSGIServer

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from prometheus_client import start_http_server

from .._changes import ChangeTracker
from .._decisions import LeaseTiming
from .._elector import ElectorCallbacks, LeaderElector, LeadershipTerm
from .._storage import Storage
from ..kube._client import Deadline, describe_error, raw_watch, single_attempt_client
from ..kube._lease_storage import CoordinationLeaseStorage
from ..kube._resource import GROUP, KIND, PLURAL, VERSION, LeaseView
from ._metrics import MeteredWorkQueue, Metrics
from ._reconciler import NotActive, Reconciler, StaleCopy

log = logging.getLogger("mclease.controller")

WATCH_TIMEOUT = 60.0


def watch_grace(watch_timeout: float) -> float:
    """How much longer than ``watch_timeout`` a watch may stay silent before it is presumed
    dead: a quarter of it, between 1 and 10 seconds."""
    return min(10.0, max(1.0, watch_timeout / 4))


JITTER = 0.2
EVENT_TIMEOUT = 2.0
"""An Event is best effort: a worker waits at most this long for one."""


@dataclasses.dataclass(frozen=True)
class _Copy:
    obj: dict[str, Any]
    delivered: float
    """When the watch delivered this copy's generation (monotonic)."""


@dataclasses.dataclass
class ControllerConfig:
    cluster: str
    namespaces: list[str] = dataclasses.field(default_factory=list)
    """Namespaces to watch; empty means all."""
    retry_period: float = 2.0
    workers: int = 4
    metrics_address: tuple[str, int] | None = ("0.0.0.0", 8080)  # noqa: S104
    health_address: tuple[str, int] | None = ("0.0.0.0", 8081)  # noqa: S104
    leader_elect: bool = False
    leader_elect_namespace: str = "default"
    leader_elect_timing: LeaseTiming = dataclasses.field(default_factory=LeaseTiming)
    watch_timeout: float = WATCH_TIMEOUT
    watch_store: bool = True
    """Follow the global store's change feed when it has one: a follower lease reads the record
    only after it changed, and another cluster's release is acted on at once (else at the next
    signal). Off: read on every reconcile, as with a store that cannot watch."""
    """Seconds after which the API server ends each watch (a new one starts at once)."""
    identity: str = dataclasses.field(
        default_factory=lambda: f"{socket.gethostname()}_{os.getpid()}"
    )


class Controller:
    def __init__(self, api_client: k8s.ApiClient, storage: Storage, config: ControllerConfig):
        self.config = config
        self.api_client = api_client
        self.custom = k8s.CustomObjectsApi(single_attempt_client(api_client, keep_alive=True))
        self.core = k8s.CoreV1Api(single_attempt_client(api_client))
        self._requests = Deadline()
        self.metrics = Metrics()
        self.metrics.max_workers.set(config.workers)
        self.queue = MeteredWorkQueue(self.metrics)
        self.changes = ChangeTracker.of(storage) if config.watch_store else None
        self.reconciler = Reconciler(
            self.custom,
            storage,
            cluster=config.cluster,
            retry_period=config.retry_period,
            metrics=self.metrics,
            events=self._event,
            may_act=self.may_act,
            changes=self.changes,
        )
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._ready = threading.Event()
        self._watchers: list[threading.Thread] = []
        self._workers: list[threading.Thread] = []
        self._progress: dict[str | None, float] = {}
        """Per watched namespace: monotonic time of the last sign of life of its watch."""
        self._listed: set[str | None] = set()
        self._created: set[str] = set()
        """Keys the watch reported as created after the controller started (a signal)."""
        self._generations: dict[str, tuple[int, bool]] = {}
        self._objects: dict[str, _Copy] = {}
        """The latest copy of each lease the watch delivered: reconciles read no object."""
        self._replica: LeaderElector | None = None
        self._health_server: http.server.ThreadingHTTPServer | None = None
        self._metrics_server: WSGIServer | None = None

    # ----- lifecycle -----------------------------------------------------------------------------

    def run(self) -> int:
        """Run until :meth:`stop`; returns the exit code: 1 when replica leadership was lost,
        2 when the replica election was refused for good (see :meth:`_check_replica_election`)."""
        self._serve_health()
        if self.changes is not None:
            changes = self.changes
            self.metrics.store_watch_connected.set_function(
                lambda: 1.0 if changes.connected else 0.0
            )
            changes.subscribe(self._store_changed)
            changes.start()
        if self.config.metrics_address is not None:
            host, port = self.config.metrics_address
            self._metrics_server, _ = start_http_server(port, host, registry=self.metrics.registry)
        if self.config.leader_elect:
            self._campaign()
        else:
            self._start_reconciling()
        while not self._stop.wait(0.5):
            self._check_replica_election()
        self.queue.close()
        for worker in self._workers:  # not the watch thread: a daemon that may sit in a
            worker.join(5)  # blocking read of the stream, and holds nothing to clean up
        if self._replica is not None:
            self._replica.stop(timeout=5)
        servers = (self._health_server, self._metrics_server)
        for server in (server for server in servers if server is not None):
            server.shutdown()
            server.server_close()
        if self.changes is not None:
            self.changes.close()
        if self._replica is not None and self._replica.fatal_error is not None:
            return 2
        return 1 if self._lost.is_set() else 0

    def _check_replica_election(self) -> None:
        """A replica election the API server refuses (RBAC, credentials) cannot recover by
        retrying: say why and exit, so the pod restarts visibly instead of idling as a standby
        that looks healthy."""
        error = self._replica.fatal_error if self._replica is not None else None
        if error is not None:
            log.error("cannot elect the active replica: %s", error)
            self._stop.set()

    def stop(self) -> None:
        self._stop.set()

    def ready(self) -> bool:
        return self._ready.is_set() or (self.config.leader_elect and not self._leading())

    def healthy(self) -> bool:
        threads = [*self._workers, *self._watchers]
        alive = all(thread.is_alive() for thread in threads) or self._stop.is_set()
        replica = self._replica
        replica_ok = replica is None or (replica.healthy() and replica.fatal_error is None)
        return alive and replica_ok and self.watching()

    def watching(self) -> bool:
        """False while a watch has shown no sign of life for longer than it may."""
        limit = self.config.watch_timeout + watch_grace(self.config.watch_timeout)
        now = time.monotonic()
        return all(now - moment <= limit for moment in list(self._progress.values()))

    def may_act(self) -> bool:
        """Whether this replica may write: always without ``leader_elect``, else only within
        its term (monotonic clock)."""
        return not self.config.leader_elect or self._leading()

    def _leading(self) -> bool:
        return self._replica is not None and self._replica.is_leader()

    def _campaign(self) -> None:
        storage = CoordinationLeaseStorage(self.api_client, self.config.leader_elect_namespace)
        lease_name = f"mclease-controller-{self.config.cluster}"
        self.metrics.watch_replica(lease_name, self._leading)
        self._replica = LeaderElector(
            storage,
            lease_name,
            self.config.identity,
            cluster=self.config.cluster,
            timing=self.config.leader_elect_timing,
            callbacks=ElectorCallbacks(
                on_started_leading=self._on_replica_started,
                on_stopped_leading=self._on_replica_stopped,
            ),
        )
        self._replica.start()
        log.info("waiting to become the active replica (identity %s)", self.config.identity)

    def _on_replica_started(self, term: LeadershipTerm) -> None:
        log.info("became the active replica (fencing token %d)", term.fencing_token)
        self._start_reconciling()

    def _on_replica_stopped(self, term: LeadershipTerm, reason: str) -> None:
        if self._stop.is_set():
            return
        log.error("lost the active-replica lease (%s); exiting", reason)
        self._lost.set()
        self._stop.set()

    def _start_reconciling(self) -> None:
        namespaces: list[str | None] = [*dict.fromkeys(self.config.namespaces)] or [None]
        for namespace in namespaces:
            self._progress[namespace] = time.monotonic()
            watcher = threading.Thread(
                target=self._watch,
                args=(namespace,),
                name=f"mclease-watch-{namespace or 'all'}",
                daemon=True,
            )
            watcher.start()
            self._watchers.append(watcher)
        for index in range(self.config.workers):
            worker = threading.Thread(
                target=self._work, name=f"mclease-worker-{index}", daemon=True
            )
            worker.start()
            self._workers.append(worker)

    # ----- watching ------------------------------------------------------------------------------

    def _watch(self, namespace: str | None) -> None:
        backoff = 0.2
        where = namespace or "all namespaces"
        while not self._stop.is_set():
            try:
                self._list_and_watch(namespace)
                backoff = 0.2
            except Exception as exc:
                log.warning(
                    "watch of %s in %s failed: %s; retrying in %.1fs",
                    PLURAL,
                    where,
                    describe_error(exc),
                    backoff,
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _list_and_watch(self, namespace: str | None) -> None:
        listing = self._list(namespace)
        self._progress[namespace] = time.monotonic()
        items = listing.get("items", [])
        self._forget_unlisted(namespace, {_key(obj) for obj in items})
        for obj in items:
            self._offer(obj, "SYNC")
        self._listed.add(namespace)
        if len(self._listed) >= len(self._progress):
            self._ready.set()
        resource_version = listing["metadata"]["resourceVersion"]
        stream = raw_watch()
        timeout = self.config.watch_timeout
        kwargs: dict[str, Any] = {
            "resource_version": resource_version,
            "timeout_seconds": max(1, int(timeout)),
            "allow_watch_bookmarks": True,
            "_request_timeout": (10.0, timeout + watch_grace(timeout)),
        }
        method, args = self._list_call(namespace)
        while not self._stop.is_set():
            for event in stream.stream(method, *args, **kwargs):
                self._progress[namespace] = time.monotonic()
                obj = event["object"]
                if event["type"] == "ERROR":
                    raise ApiException(
                        status=obj.get("code", 0), reason=obj.get("message", "watch error")
                    )
                kwargs["resource_version"] = obj["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    self._offer(obj, event["type"])
                if self._stop.is_set():
                    stream.stop()
                    return
            self._progress[namespace] = time.monotonic()  # the server ended it: alive

    def _list(self, namespace: str | None) -> dict[str, Any]:
        method, args = self._list_call(namespace)
        result: dict[str, Any] = method(*args, _request_timeout=(10.0, 30.0))
        return result

    def _list_call(self, namespace: str | None) -> tuple[Any, tuple[Any, ...]]:
        if namespace is None:
            return self.custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL)
        return self.custom.list_namespaced_custom_object, (GROUP, VERSION, namespace, PLURAL)

    def _forget_unlisted(self, namespace: str | None, listed: set[str]) -> None:
        """Forget the leases of ``namespace`` (``None``: all) a fresh list no longer has: their
        DELETED events were missed while no watch ran (a watch too old to resume, say)."""
        prefix = "" if namespace is None else f"{namespace}/"
        for key in list(self._generations):
            if key.startswith(prefix) and key not in listed:
                self._forget(key)

    def _forget(self, key: str) -> None:
        self._generations.pop(key, None)
        self._objects.pop(key, None)
        self._created.discard(key)
        self.reconciler.forget(key)

    def _offer(self, obj: dict[str, Any], kind: str) -> None:
        """Queue a lease when its spec generation changed or it is being deleted (status-only
        changes, our own writes included, are ignored; timers cover the rest)."""
        metadata = obj.get("metadata", {})
        key = _key(obj)
        if kind == "DELETED":
            self._forget(key)
            return
        if kind == "ADDED" and key not in self._generations:
            self._created.add(key)
        seen = (int(metadata.get("generation") or 0), bool(metadata.get("deletionTimestamp")))
        previous = self._objects.get(key)
        same_generation = self._generations.get(key, (None,))[0] == seen[0]
        delivered = previous.delivered if previous and same_generation else time.monotonic()
        self._objects[key] = _Copy(obj, delivered)  # one assignment: never a mismatched pair
        if self._generations.get(key) == seen and kind != "SYNC":
            return
        self._generations[key] = seen
        self.queue.add(key)

    def _store_changed(self, key: str) -> None:
        """Another writer changed a global record: reconcile its lease now, if this cluster has
        it (a release or takeover elsewhere is acted on at once, not at the next timer)."""
        if key in self._objects and self._ready.is_set():
            self.metrics.store_changes.inc()
            self.queue.add(key)

    # ----- working -------------------------------------------------------------------------------

    def _work(self) -> None:
        failures: dict[str, int] = {}
        while not self._stop.is_set():
            item = self.queue.get(timeout=1.0)
            if item is None:
                continue
            key, _ = item
            try:
                if not self.may_act():  # a paused replica that resumed past its term, or one not
                    self.queue.add(key, self.config.retry_period)  # yet active: touch nothing
                    continue
                self._reconcile_metered(key, failures)
            finally:
                self.queue.done(key)

    def _reconcile_metered(self, key: str, failures: dict[str, int]) -> None:
        started = time.monotonic()
        self.metrics.active_workers.inc()
        try:
            result = self._reconcile(key, failures)
        finally:
            self.metrics.active_workers.dec()
        self.metrics.record_reconcile(result, time.monotonic() - started)

    def _reconcile(self, key: str, failures: dict[str, int]) -> str:
        """Reconcile one lease and queue it again as it asks; the result, as
        ``controller_runtime_reconcile_total`` counts it."""
        namespace, name = key.split("/", 1)
        created = key in self._created
        self._created.discard(key)
        try:
            copy = self._objects.get(key)
            result = self.reconciler.reconcile(
                namespace,
                name,
                copy.obj if copy else None,
                created=created,
                seen_at=copy.delivered if copy else None,
            )
            failures.pop(key, None)
            if result.requeue_after is None:
                return "success"
            self.queue.add(key, self._spread(result.requeue_after))
            return "requeue_after"
        except NotActive:
            log.info("%s: not the active replica any more; nothing written", key)
            self.queue.add(key, self.config.retry_period)
            return "requeue"
        except StaleCopy:
            self._objects.pop(key, None)  # read it afresh, at once
            self.queue.add(key)
            return "requeue"
        except Exception as exc:
            self._objects.pop(key, None)  # the retry reads the object afresh
            count = failures[key] = failures.get(key, 0) + 1
            delay = min(self.config.retry_period, 0.05 * 2**count)
            log.warning(
                "%s: reconcile failed (%s); retrying in %.2fs", key, describe_error(exc), delay
            )
            self.queue.add(key, delay)
            return "error"

    def _spread(self, delay: float) -> float:
        """Jitter periodic requeues so leases do not reconcile in lockstep: only ever earlier, so
        a reconcile the decisions asked for by a moment (a window closing, a candidate turning
        stale) is never late; earlier ones are exact."""
        return _jittered(delay) if delay >= self.config.retry_period else delay

    # ----- events, health ------------------------------------------------------------------------

    def _event(self, view: LeaseView, kind: str, reason: str, message: str) -> None:
        now = dt.datetime.now(dt.UTC)
        body = k8s.CoreV1Event(
            metadata=k8s.V1ObjectMeta(generate_name=f"{view.name}.", namespace=view.namespace),
            involved_object=k8s.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind=KIND,
                name=view.name,
                namespace=view.namespace,
                uid=view.uid or None,  # kubectl describe finds Events by it
                resource_version=view.resource_version or None,
            ),
            reason=reason,
            message=message[:1024],
            type=kind,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=k8s.V1EventSource(component=f"mclease-controller-{self.config.cluster}"),
        )
        try:
            self._requests.call(
                self.core.create_namespaced_event,
                view.namespace,
                body,
                until=time.monotonic() + EVENT_TIMEOUT,
            )
        except Exception as exc:
            log.debug("could not record event %s on %s: %s", reason, view.key, exc)

    def _serve_health(self) -> None:
        if self.config.health_address is None:
            return
        controller = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                checks = {"/healthz": controller.healthy, "/readyz": controller.ready}
                check = checks.get(self.path)
                if check is None:
                    self.send_error(404)
                    return
                ok = check()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok\n" if ok else b"not ok\n")

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = _HealthServer(self.config.health_address, Handler)
        thread = threading.Thread(target=server.serve_forever, name="mclease-health", daemon=True)
        thread.start()
        self._health_server = server


class _HealthServer(http.server.ThreadingHTTPServer):
    """Listens on an IPv6 address as well as an IPv4 one (the standard server is IPv4 only)."""

    def __init__(self, address: tuple[str, int], handler: type[http.server.BaseHTTPRequestHandler]):
        host, port = address
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        self.address_family = info[0][0]
        super().__init__(address, handler)


def _key(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata", {})
    return f"{metadata.get('namespace')}/{metadata.get('name')}"


def _jittered(delay: float) -> float:
    return delay * (1.0 - JITTER * random.random())


__all__ = ["Controller", "ControllerConfig"]
