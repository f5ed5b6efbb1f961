"""The shipped manifests' store settings (issue 8 item 16).

The default was SQLite on an emptyDir: every cluster applying config/default as-is elected its
own "global" leader, and a pod restart started the versions, and so the fencing tokens, over.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mclease_core import UnknownBackendError, load_backends

CONFIG = Path(__file__).resolve().parents[2] / "config"


def literals() -> dict[str, str]:
    kustomization = yaml.safe_load((CONFIG / "manager" / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    return dict(item.split("=", 1) for item in generator["literals"])


def test_there_is_no_default_store_and_the_placeholder_is_refused_at_start() -> None:
    url = literals()["STORAGE_URL"]
    assert not url.startswith(("sqlite:", "memory:"))
    with pytest.raises(UnknownBackendError, match="installed schemes"):
        load_backends().open(url)


def test_the_controller_keeps_no_state_on_the_pods_disk() -> None:
    documents = list(yaml.safe_load_all((CONFIG / "manager" / "manager.yaml").read_text()))
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    mounts = deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert [v["name"] for v in volumes] == ["tmp"]
    assert [m["mountPath"] for m in mounts] == ["/tmp"]
