"""A simulated Kubernetes API server: the rules of the real one that the protocol relies on.

Kept: one resourceVersion counter per server; ``metadata.generation`` that grows only with the
spec (and when a deletion starts); the status subresource (a write of the object ignores status,
a status write changes nothing else); optimistic concurrency (an update or a merge patch naming a
resourceVersion that is not current is 409, an update must name one); 404 and 409 AlreadyExists;
finalizers (a delete only marks the object, the last finalizer removed deletes it); lists with a
resourceVersion and watches from it (ADDED/MODIFIED/DELETED, ``timeout_seconds`` ending them,
410 Gone for a version older than the history kept), delivered over the simulated network so they
arrive late, or never when a watch is dropped silently. Coordination Leases keep the same rules
for the controller's replica election.

The clients here stand in for the ``kubernetes`` client's ``CustomObjectsApi``,
``CoordinationV1Api``, ``CoreV1Api`` and the controller's ``raw_watch`` inside one simulated
process: a call is a request on the simulated network with the client's ``_request_timeout``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TypeVar, cast

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from .network import Refused, Server, TimedOut, request
from .runtime import _TIMEOUT, SimProcess, Wakeup, _switch_out, current_process, current_thread

_T = TypeVar("_T")

HISTORY = 200
"""Watch events kept; a watch from an older resourceVersion gets 410 Gone."""

_DESERIALIZER = k8s.ApiClient()


def clone(value: _T) -> _T:
    """A deep copy of a JSON-shaped value (much cheaper than ``copy.deepcopy``)."""
    return cast(_T, _clone(value))


def _clone(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {key: _clone(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [_clone(item) for item in value]
    return value


def api_error(status: int, reason: str, message: str = "") -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps(
        {
            "kind": "Status",
            "status": "Failure",
            "code": status,
            "reason": reason,
            "message": message,
        }
    )
    return exc


def merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = clone(value)
    return result


class _Watch:
    def __init__(self, namespace: str | None, process: SimProcess):
        self.namespace = namespace
        self.process = process
        self.queue: list[dict[str, Any]] = []
        self.waiting: Wakeup | None = None
        self.open = True
        self.silent = False
        self.last_arrival = 0.0
        """Events of one watch arrive in order (one stream), each after its own latency."""


class ApiServer(Server):
    def __init__(self, cluster: str, latency: float):
        super().__init__(f"apiserver-{cluster}", latency)
        self.cluster = cluster
        self.rv = 100
        self.uid = 0
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.history: list[tuple[int, str, dict[str, Any]]] = []
        self.compacted_to = 0
        """The resourceVersion of the newest event no longer kept."""
        self.watches: list[_Watch] = []
        self.events = 0
        self.world: Any = None
        self.deletions: dict[str, list[float | None]] = {}
        """Per uid: when its deletion was asked for, and when the object went."""

    # ----- MultiClusterLease objects ------------------------------------------------------------

    def _bump(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _missing(self, name: str) -> ApiException:
        return api_error(404, "Not Found", f'multiclusterleases "{name}" not found')

    def _conflict(self, name: str) -> ApiException:
        return api_error(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on multiclusterleases "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
        )

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.objects.get((namespace, name))
        if found is None:
            raise self._missing(name)
        return clone(found)

    def list(self, namespace: str | None) -> dict[str, Any]:
        items = [
            clone(obj)
            for (ns, _), obj in sorted(self.objects.items())
            if namespace is None or ns == namespace
        ]
        return {"items": items, "metadata": {"resourceVersion": str(self.rv)}}

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        metadata = body.get("metadata") or {}
        name = metadata["name"]
        if (namespace, name) in self.objects:
            raise api_error(409, "AlreadyExists", f'multiclusterleases "{name}" already exists')
        self.uid += 1
        obj = {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": f"uid-{self.cluster}-{self.uid}",
                "generation": 1,
                "resourceVersion": self._bump(),
                "annotations": dict(metadata.get("annotations") or {}),
                "finalizers": list(metadata.get("finalizers") or []),
            },
            "spec": clone(body.get("spec") or {}),
        }
        self.objects[(namespace, name)] = obj
        self._emit("ADDED", obj)
        return clone(obj)

    def replace(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        old = self.objects.get((namespace, name))
        if old is None:
            raise self._missing(name)
        version = (body.get("metadata") or {}).get("resourceVersion")
        if not version:
            raise api_error(422, "Invalid", "metadata.resourceVersion: must be specified")
        if version != old["metadata"]["resourceVersion"]:
            raise self._conflict(name)
        metadata = body.get("metadata") or {}
        changes = {
            "annotations": dict(metadata.get("annotations") or {}),
            "finalizers": list(metadata.get("finalizers") or []),
        }
        return self._update(old, changes, body.get("spec") or {}, replace_spec=True)

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        old = self.objects.get((namespace, name))
        if old is None:
            raise self._missing(name)
        metadata = dict(body.get("metadata") or {})
        version = metadata.pop("resourceVersion", None)
        if version is not None and version != old["metadata"]["resourceVersion"]:
            raise self._conflict(name)
        changes = merge(
            {k: old["metadata"].get(k) for k in ("annotations", "finalizers")}, metadata
        )
        spec = merge(old.get("spec") or {}, body.get("spec") or {})
        return self._update(old, changes, spec, replace_spec=True)

    def patch_status(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        old = self.objects.get((namespace, name))
        if old is None:
            raise self._missing(name)
        version = (body.get("metadata") or {}).get("resourceVersion")
        if version is not None and version != old["metadata"]["resourceVersion"]:
            raise self._conflict(name)
        obj = clone(old)
        obj["status"] = merge(old.get("status") or {}, body.get("status") or {})
        if obj == old:
            return clone(old)  # a no-op write changes no resourceVersion, sends no event
        obj["metadata"]["resourceVersion"] = self._bump()
        self.objects[(namespace, name)] = obj
        self._emit("MODIFIED", obj)
        return clone(obj)

    def delete(self, namespace: str, name: str) -> None:
        old = self.objects.get((namespace, name))
        if old is None:
            raise self._missing(name)
        self.deletions.setdefault(old["metadata"]["uid"], [self.world.now, None])
        if not old["metadata"].get("finalizers"):
            self._remove(old)
            return
        if old["metadata"].get("deletionTimestamp"):
            return
        obj = clone(old)
        obj["metadata"]["deletionTimestamp"] = "2026-06-01T00:00:00Z"
        obj["metadata"]["generation"] += 1
        obj["metadata"]["resourceVersion"] = self._bump()
        self.objects[(namespace, name)] = obj
        self._emit("MODIFIED", obj)

    def _update(
        self,
        old: dict[str, Any],
        metadata: dict[str, Any],
        spec: dict[str, Any],
        *,
        replace_spec: bool,
    ) -> dict[str, Any]:
        obj = clone(old)
        deleting = bool(old["metadata"].get("deletionTimestamp"))
        finalizers = list(metadata.get("finalizers") or [])
        if deleting:  # no finalizer may be added to an object being deleted
            finalizers = [f for f in finalizers if f in (old["metadata"].get("finalizers") or [])]
        obj["metadata"]["annotations"] = dict(metadata.get("annotations") or {})
        obj["metadata"]["finalizers"] = finalizers
        if replace_spec and spec != old.get("spec"):
            obj["spec"] = clone(spec)
            obj["metadata"]["generation"] += 1
        if obj == old:
            return clone(old)  # a no-op write changes no resourceVersion
        obj["metadata"]["resourceVersion"] = self._bump()
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if deleting and not finalizers:
            self._remove(obj)
            return clone(obj)
        self.objects[key] = obj
        self._emit("MODIFIED", obj)
        return clone(obj)

    def _remove(self, obj: dict[str, Any]) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        self.objects.pop(key, None)
        asked = self.deletions.get(obj["metadata"]["uid"])
        if asked is not None:
            asked[1] = self.world.now
        gone = clone(obj)
        gone["metadata"]["resourceVersion"] = self._bump()
        self._emit("DELETED", gone)

    # ----- watches ------------------------------------------------------------------------------

    def _emit(self, kind: str, obj: dict[str, Any]) -> None:
        rv = int(obj["metadata"]["resourceVersion"])
        self.history.append((rv, kind, clone(obj)))
        if len(self.history) > HISTORY:
            self.compacted_to = self.history[-HISTORY - 1][0]
            del self.history[:-HISTORY]
        for watch in list(self.watches):
            if watch.namespace in (None, obj["metadata"]["namespace"]) and not watch.silent:
                self._deliver(watch, {"type": kind, "object": clone(obj)})

    def _deliver(self, watch: _Watch, event: dict[str, Any]) -> None:
        world = self.world
        delay = self.latency * (0.5 + world.rng.random())

        def arrive() -> None:
            if not watch.open or watch.silent:
                return
            if self.cut_off(watch.process.name):
                watch.silent = True  # the connection is gone, nobody told the client
                return
            watch.queue.append(event)
            if watch.waiting is not None:
                watch.waiting.fire(True)

        watch.last_arrival = max(world.now + delay, watch.last_arrival)
        world.at(watch.last_arrival, arrive)

    def cut_off(self, process: str) -> bool:
        """A partition stands between ``process`` and this server now."""
        now: float = self.world.now
        return self.link(process).partitioned_until > now or self.link("*").partitioned_until > now

    def open_watch(self, namespace: str | None, since: int, process: SimProcess) -> _Watch:
        watch = _Watch(namespace, process)
        if since < self.compacted_to:
            watch.queue.append(
                {"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}}
            )
        else:
            for rv, kind, obj in self.history:
                if rv > since and namespace in (None, obj["metadata"]["namespace"]):
                    watch.queue.append({"type": kind, "object": clone(obj)})
        self.watches.append(watch)
        return watch

    def close_watches(self) -> None:
        """A restart: every watch ends (the client sees the stream close)."""
        for watch in self.watches:
            watch.open = False
            if watch.waiting is not None:
                watch.waiting.fire(True)
        self.watches.clear()

    def drop_watches(self) -> None:
        """Every open watch stops delivering, silently (a NAT dropped the connection)."""
        for watch in self.watches:
            watch.silent = True

    # ----- coordination Leases ------------------------------------------------------------------

    def read_lease(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.leases.get((namespace, name))
        if found is None:
            raise api_error(404, "Not Found", f'leases.coordination.k8s.io "{name}" not found')
        return clone(found)

    def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if (namespace, name) in self.leases:
            raise api_error(409, "AlreadyExists", f'leases "{name}" already exists')
        lease = clone(body)
        lease["metadata"]["namespace"] = namespace
        lease["metadata"]["resourceVersion"] = self._bump()
        self.leases[(namespace, name)] = lease
        return clone(lease)

    def patch_lease(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        old = self.read_lease(namespace, name)
        metadata = dict(body.get("metadata") or {})
        version = metadata.pop("resourceVersion", None)
        if version is not None and version != old["metadata"]["resourceVersion"]:
            raise api_error(409, "Conflict", f'leases "{name}": the object has been modified')
        lease = merge(old, {**body, "metadata": metadata})
        lease["metadata"]["resourceVersion"] = self._bump()
        self.leases[(namespace, name)] = lease
        return clone(lease)

    def delete_lease(self, namespace: str, name: str, version: str | None) -> None:
        old = self.read_lease(namespace, name)
        if version is not None and version != old["metadata"]["resourceVersion"]:
            raise api_error(409, "Conflict", f'leases "{name}": precondition failed')
        del self.leases[(namespace, name)]


# ----- the client side ------------------------------------------------------------------------


class SimApiClient:
    """Stands in for ``kubernetes.client.ApiClient``: names the cluster's API server."""

    def __init__(self, server: ApiServer):
        self.server = server


def _read_timeout(kwargs: dict[str, Any]) -> float | None:
    timeout = kwargs.get("_request_timeout")
    if isinstance(timeout, tuple):
        return float(timeout[1])
    return None if timeout is None else float(timeout)


def _call(server: ApiServer, apply: Any, kwargs: dict[str, Any], *, write: bool) -> Any:
    process = current_process()
    try:
        return request(process, server, apply, timeout=_read_timeout(kwargs), write=write)
    except Refused as exc:
        raise ProtocolError("Connection aborted.", ConnectionResetError(str(exc))) from None
    except TimedOut as exc:
        raise ReadTimeoutError(None, server.name, str(exc)) from None  # type: ignore[arg-type]


class SimCustomObjects:
    """``CustomObjectsApi`` for MultiClusterLeases."""

    def __init__(self, api_client: SimApiClient):
        self.server = api_client.server

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **kw: Any
    ) -> Any:
        return _call(self.server, lambda: self.server.get(namespace, name), kw, write=False)

    def create_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, body: Any, **kw: Any
    ) -> Any:
        body = clone(body)
        return _call(self.server, lambda: self.server.create(namespace, body), kw, write=True)

    def replace_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: Any, **kw: Any
    ) -> Any:
        body = clone(body)
        return _call(
            self.server, lambda: self.server.replace(namespace, name, body), kw, write=True
        )

    def patch_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: Any, **kw: Any
    ) -> Any:
        body = clone(body)
        return _call(self.server, lambda: self.server.patch(namespace, name, body), kw, write=True)

    def patch_namespaced_custom_object_status(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: Any, **kw: Any
    ) -> Any:
        body = clone(body)
        return _call(
            self.server, lambda: self.server.patch_status(namespace, name, body), kw, write=True
        )

    def delete_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **kw: Any
    ) -> Any:
        return _call(self.server, lambda: self.server.delete(namespace, name), kw, write=True)

    def list_cluster_custom_object(self, group: str, version: str, plural: str, **kw: Any) -> Any:
        return self._list(None, kw)

    def list_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, **kw: Any
    ) -> Any:
        return self._list(namespace, kw)

    def _list(self, namespace: str | None, kw: dict[str, Any]) -> Any:
        if kw.get("watch"):
            return self._watch(namespace, kw)
        return _call(self.server, lambda: self.server.list(namespace), kw, write=False)

    def _watch(self, namespace: str | None, kw: dict[str, Any]) -> Iterator[dict[str, Any]]:
        server = self.server
        process = current_process()
        since = int(kw.get("resource_version") or 0)
        watch = _call(server, lambda: server.open_watch(namespace, since, process), kw, write=False)
        ends = process.true_after(float(kw.get("timeout_seconds") or 60))
        read_timeout = _read_timeout(kw)
        try:
            while True:
                while watch.queue:
                    yield watch.queue.pop(0)
                world = process.world
                if not watch.open:
                    raise ProtocolError("Connection broken: the API server closed the watch")
                if server.cut_off(process.name):
                    watch.silent = True  # its end, like any byte, does not cross a partition
                if world.now >= ends and not watch.silent:
                    return  # the server ends the watch after timeout_seconds
                limits = [] if watch.silent else [ends]  # a dropped watch never ends
                if read_timeout is not None:
                    limits.append(process.true_after(read_timeout))  # reset by every event
                thread = current_thread()
                ticket = watch.waiting = thread.ticket = Wakeup(thread)
                got = _switch_out(thread, ticket, min(limits) if limits else None)
                watch.waiting = None
                if got is _TIMEOUT and not watch.queue and watch.open:
                    if server.cut_off(process.name):
                        watch.silent = True
                    if not watch.silent and world.now >= ends:
                        return
                    raise ReadTimeoutError(None, server.name, "Read timed out.")  # type: ignore[arg-type]
        finally:
            watch.open = False
            if watch in server.watches:
                server.watches.remove(watch)


class SimWatch:
    """``kubernetes.watch.Watch``: streams the events a simulated list-with-watch returns."""

    def __init__(self) -> None:
        self._stream: Iterator[dict[str, Any]] | None = None

    def stream(self, method: Any, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self._stream = method(*args, watch=True, **kwargs)
        return self._stream

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.close()  # type: ignore[attr-defined]


class SimCoordination:
    """``CoordinationV1Api`` for the controller's replica election."""

    def __init__(self, api_client: SimApiClient | None):
        assert api_client is not None
        self.server = api_client.server

    @staticmethod
    def _model(data: dict[str, Any]) -> Any:
        return _DESERIALIZER._ApiClient__deserialize(data, "V1Lease")  # type: ignore[attr-defined]

    def read_namespaced_lease(self, name: str, namespace: str, **kw: Any) -> Any:
        found = _call(self.server, lambda: self.server.read_lease(namespace, name), kw, write=False)
        return self._model(found)

    def create_namespaced_lease(self, namespace: str, body: Any, **kw: Any) -> Any:
        data = _DESERIALIZER.sanitize_for_serialization(body)
        made = _call(self.server, lambda: self.server.create_lease(namespace, data), kw, write=True)
        return self._model(made)

    def patch_namespaced_lease(self, name: str, namespace: str, body: Any, **kw: Any) -> Any:
        body = clone(body)
        done = _call(
            self.server, lambda: self.server.patch_lease(namespace, name, body), kw, write=True
        )
        return self._model(done)

    def delete_namespaced_lease(self, name: str, namespace: str, **kw: Any) -> Any:
        options = kw.pop("body", None)
        version = None
        if options is not None and options.preconditions is not None:
            version = options.preconditions.resource_version
        return _call(
            self.server, lambda: self.server.delete_lease(namespace, name, version), kw, write=True
        )


class SimCore:
    """``CoreV1Api``: Events are accepted and counted."""

    def __init__(self, api_client: SimApiClient):
        self.server = api_client.server

    def create_namespaced_event(self, namespace: str, body: Any, **kw: Any) -> Any:
        def record() -> None:
            self.server.events += 1

        return _call(self.server, record, kw, write=True)


class K8sShim:
    """The ``kubernetes.client`` module as product modules see it in a simulated run."""

    CustomObjectsApi = SimCustomObjects
    CoordinationV1Api = SimCoordination
    CoreV1Api = SimCore

    def __getattr__(self, name: str) -> Any:
        return getattr(k8s, name)
