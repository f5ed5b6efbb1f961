"""mclease's development harness: what the tests, the demos and the benchmarks share.

Not part of any release: it reads ``hack/`` from this checkout and starts this repository's test
servers. Modules:

- :mod:`mclease_dev.servers`: ``redis-server``, ``etcd`` and ``fake-gcs-server`` on loopback, as
  the plugins' tests, the end-to-end tests and the benchmarks use them.
- :mod:`mclease_dev.kube`: the Kubernetes test bed, real etcd + kube-apiserver control planes.
- :mod:`mclease_dev.leases`: MultiClusterLease bodies and API calls, to poke the API server.
- :mod:`mclease_dev.multicluster`: mclease on several test-bed clusters: the CRD and RBAC,
  controller and candidate processes, judging the candidates' leadership intervals.
- :mod:`mclease_dev.processes`: :class:`~mclease_dev.processes.ManagedProcess`, the one child
  process class (own session, log file, always stopped).
- :mod:`mclease_dev.candidate`: the recording candidate program (``python -m
  mclease_dev.candidate``); :mod:`mclease_dev.records` reads what it recorded.
- :mod:`mclease_dev.netproxy`: a TCP proxy that trickles or blackholes a real server's answers.

Polling waits are :func:`mclease_core.testing.wait_until` throughout; nothing here imports from
``tests/``, and nothing edits ``sys.path``.

What a third-party backend author needs (ports, a server-process base, wait helpers, the
outage and fault checks) is in :mod:`mclease_core.testing` instead, shipped with the core.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout this harness is installed from (editable)."""
