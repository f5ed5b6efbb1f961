"""The election controller: one per cluster, contends for global leases for local candidates.

Needs the ``controller`` extra (``pip install "mclease-core[controller]"``): the Kubernetes client
and prometheus-client. Run it with ``mclease controller``.
"""

from ._decisions import (
    CandidateState,
    Plan,
    ReconcileAction,
    ReconcileFindings,
    build_status,
    plan,
    track_candidate,
)
from ._manager import Controller, ControllerConfig
from ._metrics import Metrics
from ._queue import WorkQueue
from ._reconciler import Reconciler, ReconcileResult

__all__ = [
    "CandidateState",
    "Controller",
    "ControllerConfig",
    "Metrics",
    "Plan",
    "ReconcileAction",
    "ReconcileFindings",
    "ReconcileResult",
    "Reconciler",
    "WorkQueue",
    "build_status",
    "plan",
    "track_candidate",
]
