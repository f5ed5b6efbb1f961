"""mclease-redis: a Redis backend for mclease's global lease store.

Install it next to ``mclease-core`` and open a store with ``open_storage("redis://host:6379/0")``
(``rediss://`` for TLS). The design note is in :mod:`mclease_redis._storage`; the README lists the
URL options, the capabilities and the caveats (asynchronous replication can lose writes).
"""

from ._storage import RedisStorage

__all__ = ["RedisStorage"]
