"""One check of the controller's cluster name, the same from the command line and in the
reconciler: blank, ``/`` (status writes another cluster's holder ``cluster/identity``), too long
for a record, or control characters are refused before anything connects."""

from __future__ import annotations

import pytest

from mclease_core import ConfigurationError
from mclease_core._cli import controller_config, parse
from mclease_core._limits import MAX_CLUSTER_LENGTH, cluster_name_problem
from mclease_core.backends import MemoryStorage
from mclease_core.controller import Reconciler

REFUSED = ["", "   ", "east/1", "e" * (MAX_CLUSTER_LENGTH + 1), "east\nwest", "east\u202e"]
ACCEPTED = ["east", "eu-west-1", "e" * MAX_CLUSTER_LENGTH]


@pytest.mark.parametrize("name", REFUSED)
def test_the_cli_and_the_reconciler_refuse_the_same_names(name: str) -> None:
    problem = cluster_name_problem(name)
    assert problem
    args = parse(["controller", "--storage", "memory://", "--cluster-name", name], {})
    with pytest.raises(ConfigurationError) as from_cli:
        controller_config(args)
    assert str(from_cli.value).startswith(f"{problem}: set --cluster-name")
    with pytest.raises(ConfigurationError, match="cluster name") as from_reconciler:
        Reconciler(None, MemoryStorage(), cluster=name)  # type: ignore[arg-type]
    assert str(from_reconciler.value) == problem


@pytest.mark.parametrize("name", ACCEPTED)
def test_a_plain_cluster_name_is_accepted_by_both(name: str) -> None:
    assert cluster_name_problem(name) == ""
    args = parse(["controller", "--storage", "memory://", "--cluster-name", name], {})
    assert controller_config(args).cluster == name
    assert Reconciler(None, MemoryStorage(), cluster=name).cluster == name  # type: ignore[arg-type]
