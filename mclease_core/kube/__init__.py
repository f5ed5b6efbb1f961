"""The candidate side in Kubernetes: the MultiClusterLease lock and resource helpers.

Needs the ``kube`` extra (``pip install "mclease-core[kube]"``): the Kubernetes client only, no
cloud SDK. Use :class:`MultiClusterLeaseLock` as the lock of ``kubernetes.leaderelection``, or
:class:`CandidateElector` for release on stop, fencing tokens and re-campaigning.
"""

from ._candidate import CandidateElector
from ._lease_storage import CoordinationLeaseStorage
from ._lock import Confirmation, MultiClusterLeaseLock, confirmation_bound, safety_margin
from ._resource import (
    API_VERSION,
    CONDITION_BACKEND_HEALTHY,
    CONDITION_LOCK_ACQUIRED,
    FINALIZER,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    InvalidLeaseError,
    LeaseView,
)

__all__ = [
    "API_VERSION",
    "CONDITION_BACKEND_HEALTHY",
    "CONDITION_LOCK_ACQUIRED",
    "FINALIZER",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "CandidateElector",
    "Confirmation",
    "CoordinationLeaseStorage",
    "InvalidLeaseError",
    "LeaseView",
    "MultiClusterLeaseLock",
    "confirmation_bound",
    "safety_margin",
]
