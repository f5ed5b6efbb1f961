"""``mclease crd | kubectl apply -f -`` works against a real API server."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.kube


def test_the_printed_crd_is_accepted_by_the_api_server(kube_cluster: Any) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "mclease_core._cli", "crd"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = kube_cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=printed)
    assert "multiclusterleases.multicluster.core.cnrm.cloud.google.com" in result.stdout
