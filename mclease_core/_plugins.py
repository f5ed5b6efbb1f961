"""Plugin discovery and backend selection by URL scheme.

:func:`load_backends` is the one place plugins are loaded: the built-in backends and every entry
point of the ``mclease`` group, each through the ``mclease_backends`` hook. It is an explicit call;
importing :mod:`mclease_core` loads nothing. A plugin that fails to import or to answer the hook is
recorded in :attr:`BackendRegistry.failures` with its name and error and does not take the others
down. :func:`open_storage` picks the backend by the URL's scheme.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import threading
import urllib.parse
from collections.abc import Iterable
from typing import Any, cast

import pluggy

from ._errors import ConfigurationError, UnknownBackendError
from ._hooks import ENTRY_POINT_GROUP, PROJECT_NAME, Backend, HookSpecs
from ._storage import Storage
from ._urls import redact
from .backends import _builtin

CORE_DISTRIBUTION = "mclease-core"

KNOWN_DISTRIBUTIONS = {
    "gs": "mclease-gcs",
    "etcd": "mclease-etcd",
    "etcds": "mclease-etcd",
    "redis": "mclease-redis",
    "rediss": "mclease-redis",
}
"""Schemes served by the project's own plugin distributions, for the install hint."""


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    """A loaded backend and where it came from."""

    backend: Backend
    plugin: str
    distribution: str
    version: str

    @property
    def scheme(self) -> str:
        return self.backend.scheme


@dataclasses.dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, or a backend that could not be registered."""

    plugin: str
    distribution: str
    error: BaseException

    def __str__(self) -> str:
        return (
            f"plugin {self.plugin!r} from {self.distribution} failed: "
            f"{type(self.error).__name__}: {self.error}"
        )


class BackendRegistry:
    """The backends one :func:`load_backends` call found, by URL scheme."""

    def __init__(
        self,
        backends: dict[str, BackendInfo],
        failures: list[PluginFailure],
        plugin_manager: pluggy.PluginManager,
    ):
        self._backends = backends
        self.failures = failures
        self.plugin_manager = plugin_manager

    def schemes(self) -> list[str]:
        return sorted(self._backends)

    def backends(self) -> list[BackendInfo]:
        return [self._backends[scheme] for scheme in self.schemes()]

    def get(self, scheme: str) -> BackendInfo:
        try:
            return self._backends[scheme]
        except KeyError:
            raise UnknownBackendError(scheme, self.schemes(), self._install_hint(scheme)) from None

    def open(self, url: str) -> Storage:
        """Open the store ``url`` names with the backend that serves its scheme."""
        return self.get(url_scheme(url)).backend.open(url)

    def _install_hint(self, scheme: str) -> str | None:
        hints = []
        if scheme in KNOWN_DISTRIBUTIONS:
            hints.append(f"install it with: pip install {KNOWN_DISTRIBUTIONS[scheme]}")
        failed = [str(failure) for failure in self.failures]
        if failed:
            hints.append("plugins that failed to load: " + "; ".join(failed))
        return "; ".join(hints) or None


def url_scheme(url: str) -> str:
    """The scheme of a storage URL, or :class:`ConfigurationError` if it has none."""
    if not isinstance(url, str):
        raise ConfigurationError(f"a storage URL must be a str, got {type(url).__name__}")
    scheme = urllib.parse.urlsplit(url).scheme
    if not scheme:
        raise ConfigurationError(
            f"{redact(url)!r} is not a storage URL; expected SCHEME://..., "
            "for example sqlite:///var/lib/mclease/leases.db or redis://localhost:6379/0"
        )
    return scheme


def load_backends(*, entry_points: bool = True, plugins: Iterable[Any] = ()) -> BackendRegistry:
    """Load the built-in backends, the ``mclease`` entry points and ``plugins``.

    ``plugins`` are extra plugin objects registered after the entry points (useful in tests and
    for applications that ship a private backend without packaging it).
    """
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(HookSpecs)
    failures: list[PluginFailure] = []
    sources = {"builtin": _core_distribution()}

    manager.register(_builtin, name="builtin")
    if entry_points:
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            distribution = _distribution_of(entry_point)
            try:
                manager.register(entry_point.load(), name=entry_point.name)
            except Exception as exc:
                failures.append(PluginFailure(entry_point.name, distribution[0], exc))
                continue
            sources[entry_point.name] = distribution
    for index, plugin in enumerate(plugins):
        name = getattr(plugin, "__name__", f"plugin-{index}")
        try:
            manager.register(plugin, name=name)
        except Exception as exc:
            failures.append(PluginFailure(name, "(registered in code)", exc))
            continue
        sources[name] = ("(registered in code)", "")

    backends = _collect_backends(manager, sources, failures)
    return BackendRegistry(backends, failures, manager)


def _collect_backends(
    manager: pluggy.PluginManager,
    sources: dict[str, tuple[str, str]],
    failures: list[PluginFailure],
) -> dict[str, BackendInfo]:
    """Ask each plugin for its backends on its own, so one failing plugin spoils nothing else."""
    backends: dict[str, BackendInfo] = {}
    # get_hookimpls() lists plugins in registration order, built-ins first: they win clashes.
    for impl in manager.hook.mclease_backends.get_hookimpls():
        distribution, version = sources.get(impl.plugin_name, ("unknown", ""))
        try:
            provided = list(cast("Iterable[object]", impl.function()))
            for backend in provided:
                if not isinstance(backend, Backend):
                    raise TypeError(f"mclease_backends returned {backend!r}, not a Backend")
        except Exception as exc:
            failures.append(PluginFailure(impl.plugin_name, distribution, exc))
            continue
        for backend in provided:
            assert isinstance(backend, Backend)
            if backend.scheme in backends:
                clash = ConfigurationError(
                    f"URL scheme {backend.scheme!r} is already served by plugin "
                    f"{backends[backend.scheme].plugin!r}; this one is ignored"
                )
                failures.append(PluginFailure(impl.plugin_name, distribution, clash))
                continue
            backends[backend.scheme] = BackendInfo(backend, impl.plugin_name, distribution, version)
    return backends


def _core_distribution() -> tuple[str, str]:
    try:
        return CORE_DISTRIBUTION, importlib.metadata.version(CORE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return CORE_DISTRIBUTION, "(not installed)"


def _distribution_of(entry_point: importlib.metadata.EntryPoint) -> tuple[str, str]:
    dist = entry_point.dist
    if dist is None:
        return "unknown", ""
    return dist.name, dist.version


_default_registry: BackendRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> BackendRegistry:
    """The registry :func:`open_storage` uses, loaded on first use and then kept."""
    global _default_registry
    with _default_lock:
        if _default_registry is None:
            _default_registry = load_backends()
        return _default_registry


def open_storage(url: str, *, registry: BackendRegistry | None = None) -> Storage:
    """Open the store named by ``url`` with the backend that serves its scheme.

    >>> storage = open_storage("sqlite:///tmp/leases.db")  # doctest: +SKIP

    Raises :class:`UnknownBackendError` (naming the installed schemes) when no plugin serves the
    scheme, and :class:`ConfigurationError` for a malformed URL.
    """
    return (registry or default_registry()).open(url)
