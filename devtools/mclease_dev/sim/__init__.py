"""Deterministic simulation of the whole protocol: the real product classes on simulated time.

``python -m mclease_dev.sim --seeds N`` (``make simulate SEEDS=N``) runs N seeds; each seed draws
a world (:mod:`.scenario`: 2-3 clusters, 1-3 controller replicas each, candidates on both
electors, timings, a fault schedule), runs the product's own ``MultiClusterLeaseLock``,
``CandidateElector``, the standard ``kubernetes.leaderelection`` elector, the controller
(``Controller`` with its watch, queue, reconciler, replica election) and the global
``LeaderElector`` in one OS thread on one simulated clock (:mod:`.runtime`), against simulated API
servers (:mod:`.apiserver`) and a store over a simulated network (:mod:`.network`,
:mod:`.store`), and judges it (:mod:`.checks`). A failing seed prints its schedule, its trace and
the one command that replays it exactly.

What is simulated and what is real: every product class is real and unchanged; the module
attributes it reads time, threads and randomness through, and its Kubernetes client classes, are
pointed at the simulation for the run (:func:`.run.product_patches`). The API server keeps the
rules the protocol depends on, not all of Kubernetes (no admission, no CRD schema validation).
"""

from .run import Result, run_seed
from .scenario import Scenario, describe, draw

__all__ = ["Result", "Scenario", "describe", "draw", "run_seed"]
