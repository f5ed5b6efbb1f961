"""mclease-gcs: a Google Cloud Storage backend for mclease's global lease store.

Install it next to ``mclease-core`` and open a store with ``open_storage("gs://bucket/prefix")``.
The design note is in :mod:`mclease_gcs._storage` (and the retry policy in
:mod:`mclease_gcs._retry`); the README lists the URL options, credentials, capabilities and
caveats (about one write per second per lease).
"""

from ._storage import GCSStorage

__all__ = ["GCSStorage"]
