"""Registers the ``redis`` and ``rediss`` URL schemes with mclease (entry point ``mclease``)."""

from __future__ import annotations

from mclease_core.plugin import Backend, hookimpl

from ._storage import RedisStorage


@hookimpl
def mclease_backends() -> list[Backend]:
    return [
        Backend(
            scheme=scheme,
            open=RedisStorage.from_url,
            description=description,
            url_example=example,
        )
        for scheme, description, example in (
            (
                "redis",
                "Redis with Lua compare-and-swap (a failover can lose writes)",
                "redis://redis.example:6379/0?prefix=mclease&password_file=/etc/mclease/password",
            ),
            (
                "rediss",
                "Redis over TLS with Lua compare-and-swap",
                "rediss://redis.example:6380/0?ssl_ca_certs=/etc/ssl/ca.pem"
                "&password_file=/etc/mclease/password",
            ),
        )
    ]
