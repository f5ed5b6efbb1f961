"""Registers the ``etcd`` and ``etcds`` URL schemes with mclease (entry point ``mclease``)."""

from __future__ import annotations

from mclease_core.plugin import Backend, hookimpl

from ._storage import EtcdStorage


@hookimpl
def mclease_backends() -> list[Backend]:
    return [
        Backend(
            scheme="etcd",
            open=EtcdStorage.from_url,
            description="etcd v3: one key per lease, compare-and-swap on mod_revision",
            url_example=(
                "etcd://mclease@etcd-0:2379,etcd-1:2379/mclease?timeout=5"
                "&password_file=/etc/mclease/password"
            ),
        ),
        Backend(
            scheme="etcds",
            open=EtcdStorage.from_url,
            description="etcd v3 over TLS",
            url_example=(
                "etcds://mclease@etcd-0:2379/mclease?ca_cert=/etc/etcd/ca.pem"
                "&password_file=/etc/mclease/password"
            ),
        ),
    ]
