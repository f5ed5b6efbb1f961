"""Registers the ``example`` URL scheme with mclease (entry point ``mclease``)."""

from __future__ import annotations

from mclease_core.plugin import Backend, hookimpl

from ._storage import ExampleStorage


@hookimpl
def mclease_backends() -> list[Backend]:
    return [
        Backend(
            scheme="example",
            open=ExampleStorage.from_url,
            description="TODO: the store, and its one most important caveat",
            url_example="example://host:1234/mclease?timeout=10",
        )
    ]
