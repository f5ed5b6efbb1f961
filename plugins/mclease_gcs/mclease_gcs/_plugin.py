"""Registers the ``gs`` URL scheme with mclease (entry point ``mclease``)."""

from __future__ import annotations

from mclease_core.plugin import Backend, hookimpl

from ._storage import GCSStorage


@hookimpl
def mclease_backends() -> list[Backend]:
    return [
        Backend(
            scheme="gs",
            open=GCSStorage.from_url,
            description="Google Cloud Storage: one object per lease, generation preconditions; "
            "at most one write per second per lease",
            url_example="gs://my-bucket/mclease?timeout=5&deadline=15",
        )
    ]
