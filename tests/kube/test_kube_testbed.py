"""The test bed itself: binary lookup, start-up errors, and no processes left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from mclease_dev.kube import (
    AssetsMissingError,
    ClusterStartError,
    KubeAssets,
    find_assets,
    start_cluster,
)
from mclease_dev.processes import pid_exists

pytestmark = pytest.mark.kube


def test_missing_binaries_name_the_build_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    with pytest.raises(AssetsMissingError, match=r"kube-apiserver, etcd not found") as excinfo:
        find_assets()
    assert "hack/kube-assets.sh" in str(excinfo.value)
    assert "make kube-assets" in str(excinfo.value)


def test_a_failing_apiserver_reports_its_log(kube_assets: KubeAssets, tmp_path: Path) -> None:
    broken = tmp_path / "kube-apiserver"
    broken.write_text("#!/bin/sh\necho 'E0101 boom: cannot start' >&2\nexit 3\n")
    broken.chmod(0o755)
    assets = KubeAssets(broken, kube_assets.etcd, kube_assets.kubectl)
    with pytest.raises(ClusterStartError) as excinfo:
        start_cluster("broken", tmp_path / "cluster", assets)
    message = str(excinfo.value)
    assert "kube-apiserver exited" in message
    assert "exit code 3" in message
    assert "boom: cannot start" in message


def test_stop_leaves_no_process(kube_assets: KubeAssets, tmp_path: Path) -> None:
    cluster = start_cluster("short-lived", tmp_path / "cluster", kube_assets)
    pids = cluster.pids
    assert len(pids) == 2
    assert all(pid_exists(pid) for pid in pids)
    assert cluster.readyz()
    cluster.stop()
    assert not any(pid_exists(pid) for pid in pids)
    assert not cluster.running
    cluster.stop()  # idempotent


def test_context_manager_stops_on_error(kube_assets: KubeAssets, tmp_path: Path) -> None:
    pids: list[int] = []

    def failing_test() -> None:
        with start_cluster("ctx", tmp_path / "cluster", kube_assets) as cluster:
            pids.extend(cluster.pids)
            raise RuntimeError("test failed")

    with pytest.raises(RuntimeError, match="test failed"):
        failing_test()
    assert len(pids) == 2
    assert not any(pid_exists(pid) for pid in pids)
