"""Registers the built-in backends through the same hook third-party plugins use."""

from __future__ import annotations

from .._hooks import Backend, hookimpl
from .memory import MemoryStorage
from .sqlite import SQLiteStorage


@hookimpl
def mclease_backends() -> list[Backend]:
    return [
        Backend(
            scheme="memory",
            open=MemoryStorage.from_url,
            description="in-process store for tests and demos; lost when the process exits",
            url_example="memory://[name][/prefix]",
        ),
        Backend(
            scheme="sqlite",
            open=SQLiteStorage.from_url,
            description="embedded default: one SQLite file, safe across processes of one machine",
            url_example="sqlite:///var/lib/mclease/leases.db?prefix=team-a",
        ),
    ]
