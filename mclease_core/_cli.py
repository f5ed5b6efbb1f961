"""The ``mclease`` command line: ``backends``, ``elect``, ``crd``.

Exit codes: 0 success (``elect``: the command's own code when it exits by itself); 1 unexpected
error; 2 usage or configuration error (bad URL, unknown backend, invalid timings); 3 leadership
lost while the command ran; 128 + N stopped by signal N.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from ._crd import crd_manifest
from ._decisions import LeaseTiming, safety_margin
from ._elector import LeaderElector
from ._errors import ConfigurationError, MCLeaseError
from ._limits import excerpt
from ._plugins import load_backends
from ._runner import ElectedCommand

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.handler(args)
    except (ConfigurationError, ValueError) as exc:
        print(f"mclease: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MCLeaseError as exc:
        print(f"mclease: error: {exc}", file=sys.stderr)
        return 1
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mclease", description="Multi-cluster leader election.")
    parser.add_argument("--version", action="version", version=f"mclease {__version__}")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity on stderr (default: info)",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    backends = commands.add_parser("backends", help="list installed storage backends")
    backends.add_argument("--json", action="store_true", help="print JSON instead of a table")
    backends.set_defaults(handler=_backends)

    crd = commands.add_parser(
        "crd", help="print the MultiClusterLease CRD (pipe to kubectl apply -f -)"
    )
    crd.set_defaults(handler=lambda args: _print(crd_manifest()))

    elect = commands.add_parser(
        "elect",
        help="run a command only while holding a global lease",
        description="Campaign for the lease NAME in the store at URL; run COMMAND while leading. "
        "COMMAND gets MCLEASE_FENCING_TOKEN, MCLEASE_LEASE_NAME and MCLEASE_IDENTITY.",
    )
    elect.add_argument(
        "--storage", required=True, metavar="URL", help="e.g. sqlite:///var/lib/mclease.db"
    )
    elect.add_argument("--name", required=True, help="the lease name")
    elect.add_argument(
        "--identity",
        default=f"{socket.gethostname()}-{os.getpid()}",
        help="this candidate's identity (default: HOSTNAME-PID)",
    )
    elect.add_argument("--cluster", default="", help="qualifies the identity (default: none)")
    elect.add_argument("--lease-duration", type=float, default=15.0, metavar="SECONDS")
    elect.add_argument("--renew-deadline", type=float, default=10.0, metavar="SECONDS")
    elect.add_argument("--retry-period", type=float, default=2.0, metavar="SECONDS")
    elect.add_argument(
        "--kill-grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="time between SIGTERM and SIGKILL when leadership ends "
        "(default: a third of lease-duration minus renew-deadline, within the margin)",
    )
    elect.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    elect.set_defaults(handler=_elect)
    _add_controller(commands)
    return parser


def _add_controller(commands: Any) -> None:
    controller = commands.add_parser(
        "controller",
        help="run the election controller of one cluster",
        description="Watch MultiClusterLease objects and contend for their global leases in the "
        "store at URL on behalf of this cluster's candidates.",
    )
    controller.add_argument(
        "--cluster-name",
        required=True,
        help="this cluster's name, unique among the clusters sharing the store",
    )
    controller.add_argument("--storage", required=True, metavar="URL")
    controller.add_argument(
        "--kubeconfig",
        default=None,
        help="default: in-cluster config, else $KUBECONFIG or ~/.kube/config",
    )
    controller.add_argument("--context", default=None, help="kubeconfig context")
    controller.add_argument(
        "--namespace",
        action="append",
        default=[],
        dest="namespaces",
        help="watch only this namespace (repeatable; default: all)",
    )
    controller.add_argument(
        "--retry-period",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often each lease is reconciled without a change (default 2)",
    )
    controller.add_argument("--workers", type=int, default=4)
    controller.add_argument(
        "--metrics-address",
        default=":8080",
        metavar="[HOST]:PORT",
        help="Prometheus metrics; '0' disables (default :8080)",
    )
    controller.add_argument(
        "--health-address",
        default=":8081",
        metavar="[HOST]:PORT",
        help="/healthz and /readyz; '0' disables (default :8081)",
    )
    controller.add_argument(
        "--leader-elect",
        action="store_true",
        help="elect one active replica with a coordination.k8s.io Lease",
    )
    controller.add_argument("--leader-elect-namespace", default="default")
    controller.add_argument(
        "--leader-elect-lease-duration", type=float, default=15.0, metavar="SECONDS"
    )
    controller.add_argument(
        "--leader-elect-renew-deadline", type=float, default=10.0, metavar="SECONDS"
    )
    controller.add_argument(
        "--leader-elect-retry-period", type=float, default=2.0, metavar="SECONDS"
    )
    controller.add_argument("--log-format", choices=["text", "json"], default="text")
    controller.set_defaults(handler=_controller)


def _print(text: str) -> int:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _backends(args: argparse.Namespace) -> int:
    registry = load_backends()
    rows = [
        {
            "scheme": info.scheme,
            "distribution": info.distribution,
            "version": info.version,
            "example": info.backend.url_example,
            "description": info.backend.description,
        }
        for info in registry.backends()
    ]
    for failure in registry.failures:
        print(f"mclease: warning: {failure}", file=sys.stderr)
    if args.json:
        return _print(json.dumps(rows, indent=2))
    headers = ["SCHEME", "DISTRIBUTION", "VERSION", "URL"]
    table = [[r["scheme"], r["distribution"], r["version"], r["example"]] for r in rows]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *table, strict=False)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip()
        for row in [headers, *table]
    ]
    return _print("\n".join(lines))


def _elect(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ConfigurationError(
            "elect needs a command to run: mclease elect ... -- COMMAND [ARGS...]"
        )
    timing = LeaseTiming(args.lease_duration, args.renew_deadline, args.retry_period)
    kill_grace = args.kill_grace
    if kill_grace is None:  # a third of the room, leaving the margin ElectedCommand requires
        spare = timing.lease_duration - timing.renew_deadline
        kill_grace = max(0.0, min(spare / 3, spare - safety_margin(timing.lease_duration)))
    registry = load_backends()
    storage = registry.open(args.storage)
    elector = LeaderElector(storage, args.name, args.identity, cluster=args.cluster, timing=timing)
    try:
        return ElectedCommand(elector, command, kill_grace=kill_grace).run()
    finally:
        storage.close()


def _controller(args: argparse.Namespace) -> int:
    try:
        from kubernetes import client as k8s
        from kubernetes import config as kube_config

        from .controller import Controller, ControllerConfig
    except ImportError as exc:
        raise ConfigurationError(
            f"the controller needs the Kubernetes client and prometheus-client ({exc}); "
            'install them with: pip install "mclease-core[controller]"'
        ) from exc
    if args.log_format == "json":
        _use_json_logs()
    storage = load_backends().open(args.storage)
    config = ControllerConfig(
        cluster=args.cluster_name,
        namespaces=args.namespaces,
        retry_period=args.retry_period,
        workers=args.workers,
        metrics_address=_address(args.metrics_address),
        health_address=_address(args.health_address),
        leader_elect=args.leader_elect,
        leader_elect_namespace=args.leader_elect_namespace,
        leader_elect_timing=LeaseTiming(
            args.leader_elect_lease_duration,
            args.leader_elect_renew_deadline,
            args.leader_elect_retry_period,
        ),
    )
    try:
        if args.kubeconfig is None and args.context is None and _in_cluster():
            kube_config.load_incluster_config()
            api_client = k8s.ApiClient()
        else:
            api_client = kube_config.new_client_from_config(
                config_file=args.kubeconfig, context=args.context
            )
    except Exception as exc:  # the client raises ConfigException, OSError, YAML and type errors
        where = args.kubeconfig or "the default kubeconfig ($KUBECONFIG or ~/.kube/config)"
        raise ConfigurationError(
            f"cannot load {where}: {type(exc).__name__}: {excerpt(str(exc))}; pass a valid "
            "--kubeconfig (and --context), or run in a pod with a service account"
        ) from exc
    controller = Controller(api_client, storage, config)
    signal.signal(signal.SIGTERM, lambda signum, frame: controller.stop())
    signal.signal(signal.SIGINT, lambda signum, frame: controller.stop())
    try:
        return controller.run()
    finally:
        storage.close()


def _address(text: str) -> tuple[str, int] | None:
    if text in ("0", ""):
        return None
    host, _, port = text.rpartition(":")
    try:
        return (host or "0.0.0.0", int(port))  # noqa: S104 - the documented default
    except ValueError as exc:
        raise ConfigurationError(f"invalid address {text!r}: expected [HOST]:PORT or 0") from exc


def _in_cluster() -> bool:
    return "KUBERNETES_SERVICE_HOST" in os.environ


def _use_json_logs() -> None:
    class JsonFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return json.dumps(
                {
                    "time": self.formatTime(record),
                    "level": record.levelname.lower(),
                    "logger": record.name,
                    "message": record.getMessage(),
                }
            )

    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter())


if __name__ == "__main__":
    sys.exit(main())
