"""mclease's development harness: what the tests, the demos and the benchmarks share.

Not part of any release: it reads ``hack/`` from this checkout and starts this repository's test
servers. Modules:

- :mod:`mclease_dev.servers`: ``redis-server``, ``etcd`` and ``fake-gcs-server`` on loopback, as
  the plugins' tests, the end-to-end tests and the benchmarks use them.

What a third-party backend author needs (ports, a server-process base, wait helpers, the
outage and fault checks) is in :mod:`mclease_core.testing` instead, shipped with the core.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout this harness is installed from (editable)."""
