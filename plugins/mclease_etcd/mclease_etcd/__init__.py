"""mclease-etcd: an etcd v3 backend for mclease's global lease store.

Install it next to ``mclease-core`` and open a store with ``open_storage("etcd://host:2379/prefix")``
(``etcds://`` for TLS). The design note is in :mod:`mclease_etcd._storage`; the README lists the
URL options, the client library chosen and why, the capabilities and the caveats.
"""

from ._config import EtcdConfig
from ._storage import EtcdStorage

__all__ = ["EtcdConfig", "EtcdStorage"]
