"""The MultiClusterLease CustomResourceDefinition, as shipped inside the package.

For: handing the CRD manifest to users and tools without a source checkout, e.g. the
``mclease crd`` subcommand (``mclease crd | kubectl apply -f -``) and test fixtures that install it.

Not for: parsing or validating objects; the API server does that with the schema in the YAML.
The YAML lives in one place, ``config/crd/bases/``; ``_data/multiclusterlease-crd.yaml`` is a
symlink to it that wheel builds resolve into a copy.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["CRD_NAME", "crd_manifest"]

CRD_NAME = "multiclusterleases.multicluster.core.cnrm.cloud.google.com"
_RESOURCE = "multiclusterlease-crd.yaml"


def crd_manifest() -> str:
    """Return the MultiClusterLease CRD manifest as YAML text."""
    return resources.files("mclease_core").joinpath("_data", _RESOURCE).read_text(encoding="utf-8")
