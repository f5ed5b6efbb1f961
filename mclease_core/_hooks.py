"""The plugin hook: how a distribution contributes storage backends.

A plugin is a module (or object) with a function decorated ``@hookimpl`` named
``mclease_backends`` that returns :class:`Backend` descriptions, exposed through an entry point in
the ``mclease`` group::

    [project.entry-points.mclease]
    redis = "mclease_redis._plugin"

The entry point's name names the *plugin* (in ``mclease backends`` and in load failures); the
URL schemes are the ``Backend`` objects' own: one plugin may serve several (``redis`` and
``rediss``). Backend authors import all of this from :mod:`mclease_core.plugin`.

Not here: loading plugins and picking a backend by URL (see ``_plugins``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import pluggy

from ._storage import Storage

PROJECT_NAME = "mclease"
ENTRY_POINT_GROUP = "mclease"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@dataclasses.dataclass(frozen=True)
class Backend:
    """A storage backend: the URL scheme it serves and how to open a store from a URL.

    ``open`` receives the whole URL and returns a :class:`Storage`; it raises
    :class:`ConfigurationError` for a malformed URL and should not contact the store (connect
    lazily, so that an unreachable store gives :class:`StorageUnavailableError` on first use).
    """

    scheme: str
    open: Callable[[str], Storage]
    description: str = ""
    url_example: str = ""


class HookSpecs:
    """The hooks mclease calls on plugins."""

    @hookspec
    def mclease_backends(self) -> Sequence[Backend]:  # type: ignore[empty-body]
        """Return the storage backends this plugin provides."""
