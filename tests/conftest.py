"""Shared test configuration of the core's tests.

``kube_assets`` (session scope) is the Kubernetes test bed's binaries for every test folder that
starts control planes (``tests/kube``, ``tests/e2e``, ``tests/deploy``): missing binaries FAIL
those tests (never skip them) with how to build them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from mclease_dev.kube import KubeAssets

# The third-party plugin distributions are installed into a fresh venv and tested there
# (tests/plugins/test_third_party.py); their own tests must not run in the dev venv.
collect_ignore = ["thirdparty"]


@pytest.fixture(scope="session")
def kube_assets() -> KubeAssets:
    """The kube-apiserver / etcd / kubectl binaries; fails the test when they are missing."""
    # Imported here: the test bed needs the kube extras, which a minimal install has not.
    from mclease_dev.kube import AssetsMissingError, find_assets

    try:
        return find_assets()
    except AssetsMissingError as exc:
        pytest.fail(str(exc), pytrace=False)
