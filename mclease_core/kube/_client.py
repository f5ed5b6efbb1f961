"""Kubernetes API clients whose every request is one attempt, bounded by its own timeout."""

from __future__ import annotations

import copy

from kubernetes import client as k8s


def single_attempt_client(api_client: k8s.ApiClient | None) -> k8s.ApiClient:
    """A client like ``api_client`` whose requests are never retried.

    The Kubernetes client retries a timed-out request three times by default (urllib3's Retry), so
    a call with a timeout of ``t`` can last ``4t``: that would break the lock's call bound and stall
    the controller's workers on a hung API server. Both make their own attempts instead, each
    bounded. The caller's client is not changed.
    """
    base = api_client or k8s.ApiClient()
    configuration = copy.deepcopy(base.configuration)
    configuration.retries = False
    return k8s.ApiClient(configuration)
