"""The ``mclease`` command line: ``backends``, ``crd``, ``elect``, ``controller``.

Conventions, so it reads like other Kubernetes controllers and Unix tools:

* Controller flags are named as in controller-runtime's manager: ``--metrics-bind-address``,
  ``--health-probe-bind-address``, ``--leader-elect``, ``--leader-elect-namespace``. The older
  ``--metrics-address`` and ``--health-address`` still work (hidden aliases).
* Every long flag can also be set by the environment variable ``MCLEASE_`` + the flag's name in
  upper case with underscores (``--cluster-name`` is ``MCLEASE_CLUSTER_NAME``). A flag beats its
  variable, which beats the default; ``--help`` shows each variable and each default. Switches take
  ``true/false/1/0/yes/no/on/off`` (and have a ``--no-`` form to override a variable); the
  repeatable ``--namespace`` takes a comma-separated list. A bad value names its variable.
  The machinery and the value syntax (durations, addresses) are ``_options``'.
* ``--log-level``, ``--log-format`` and ``-v`` go before or after the command (``_logging``).
* Bad input is one line on stderr, ``mclease: error: ...``, and exit code 2; never a traceback.
  A store that refuses the configuration (no credentials, say) is found by one read before
  ``elect`` campaigns or the controller starts, so it is exit 2 too, not a failure later.

``--leader-elect-namespace`` defaults to the pod's namespace: ``$POD_NAMESPACE``, else the
service account's namespace file; outside a pod ``--leader-elect`` needs the flag (never a silent
``default``).

Exit codes: 0 success (``elect``: the command's own code when it exits by itself); 1 not elected
(``elect --timeout`` or ``--try``) or an unexpected error; 2 usage or configuration error; 3
leadership lost while the command ran; 126 the command is not executable; 127 the command was not
found; 128 + N stopped by signal N.

Not here: flags bound to environment variables and value parsers (``_options``), logging setup
(``_logging``), running the command (``_runner``), the controller (``controller``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, _options
from ._changes import ChangeTracker, TrackedStorage
from ._crd import crd_manifest
from ._decisions import LeaseTiming, safety_margin
from ._elector import LeaderElector
from ._errors import ConfigurationError, MCLeaseError, StorageError
from ._limits import MAX_DURATION, MIN_DURATION, cluster_name_problem, excerpt
from ._logging import LOG_LEVELS, configure_logging
from ._options import (
    Options,
    Parser,
    UsageError,
    bind_address,
    duration_between,
    namespace_name,
    one_of,
    positive_int,
    timing_duration,
)
from ._plugins import load_backends
from ._runner import CommandNotRunnable, ElectedCommand, check_runnable
from ._storage import Storage
from ._urls import redact_text

if TYPE_CHECKING:
    from .controller import ControllerConfig

EXIT_USAGE = 2
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
"""Where Kubernetes mounts the pod's namespace (a module attribute, so tests can point it
elsewhere)."""
MAX_WAIT = 366 * 86400.0
"""The longest ``elect --timeout``: long enough for any wait, short enough for every timer."""
PROBE_KEY = "mclease-startup-probe"
"""The key the controller reads once at start to find a store that refuses its configuration."""

log = logging.getLogger("mclease.cli")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else argv, os.environ)
        configure_logging(args)
        code: int = args.handler(args)
    except CommandNotRunnable as exc:
        return _fail(exc, exc.exit_code)
    except (UsageError, ConfigurationError, ValueError) as exc:
        return _fail(exc, EXIT_USAGE)
    except MCLeaseError as exc:
        return _fail(exc, 1)
    return code


def _fail(exc: Exception, code: int) -> int:
    """One line on stderr; any URL in it redacted (argparse quotes what was typed)."""
    print(f"mclease: error: {redact_text(str(exc))}", file=sys.stderr)
    return code


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> argparse.Namespace:
    """The ``mclease`` command line ``argv``, each flag not given filled from its ``MCLEASE_*``
    variable in ``environ``, else its default (see :func:`_options.parse`)."""
    return _options.parse(_parser(), argv, environ)


# ----- the commands and their flags ------------------------------------------------------------


def _parser() -> Parser:
    parser = Parser(prog="mclease", description="Multi-cluster leader election.")
    parser.add_argument("--version", action="version", version=f"mclease {__version__}")
    top = Options(parser, top=True)
    _add_logging_flags(top, first=True)
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    backends = Options(commands.add_parser("backends", help="list installed storage backends"))
    backends.switch("--json", "print JSON instead of a table")
    _add_logging_flags(backends)
    backends.parser.set_defaults(handler=_backends)

    crd = Options(
        commands.add_parser(
            "crd", help="print the MultiClusterLease CRD (pipe to kubectl apply -f -)"
        )
    )
    _add_logging_flags(crd)
    crd.parser.set_defaults(handler=lambda args: _print(crd_manifest()))

    _add_elect(commands)
    _add_controller(commands)
    return parser


def _add_logging_flags(options: Options, *, first: bool = False) -> None:
    """The same logging flags before (``first``) and after the command; a value after the
    command wins, and only the first ones read the environment."""
    options.value(
        "--log-level",
        one_of(LOG_LEVELS),
        "log verbosity on stderr",
        default="info",
        metavar="{" + ",".join(LOG_LEVELS) + "}",
        bound=first,
    )
    options.value(
        "--log-format",
        one_of(("text", "json")),
        "log lines as text, or as one JSON object each",
        default="text",
        metavar="{text,json}",
        bound=first,
    )
    options.parser.add_argument(
        "-v",
        action="count",
        default=0,
        dest="verbose" if first else "verbose_after",
        help="more verbose, repeatable: -v turns info into debug",
    )


def _add_elect(commands: Any) -> None:
    elect = Options(
        commands.add_parser(
            "elect",
            help="run a command only while holding a global lease",
            description=ELECT_DESCRIPTION,
            epilog=ELECT_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    elect.value(
        "--storage",
        str,
        "the store, e.g. sqlite:///var/lib/mclease.db",
        metavar="URL",
        required=True,
    )
    elect.value("--name", str, "the lease name", required=True)
    # No environment variable for the identity: one value shared by several processes (a
    # Deployment's env, or MCLEASE_IDENTITY that an outer elect gives its command) would make
    # them all the same holder, each renewing the others' term: two leaders.
    elect.parser.add_argument(
        "--identity",
        default=f"{socket.gethostname()}-{os.getpid()}",
        help="this candidate's identity, unique per process (default: HOSTNAME-PID; no "
        "environment variable, so that processes never share one by accident)",
    )
    elect.value("--cluster", str, "qualifies the identity", default="", shown="none")
    timing = LeaseTiming()
    elect.value(
        "--lease-duration",
        timing_duration,
        "how long others wait before taking over a lease they saw unchanged",
        default=timing.lease_duration,
        metavar="DURATION",
    )
    elect.value(
        "--renew-deadline",
        timing_duration,
        "how long a leader keeps leading without a successful renewal",
        default=timing.renew_deadline,
        metavar="DURATION",
    )
    elect.value(
        "--retry-period",
        timing_duration,
        "the pause between attempts",
        default=timing.retry_period,
        metavar="DURATION",
    )
    elect.value(
        "--kill-grace",
        duration_between(0.0, MAX_DURATION),
        "time between SIGTERM and SIGKILL when leadership ends",
        default=None,
        metavar="DURATION",
        shown="a third of lease-duration minus renew-deadline, within the margin",
    )
    elect.value(
        "--timeout",
        duration_between(MIN_DURATION, MAX_WAIT),
        "give up (exit 1) if not elected within DURATION; it does not limit the command",
        default=None,
        metavar="DURATION",
        shown="wait for ever",
    )
    elect.switch(
        "--try",
        "make one attempt: exit 1 at once unless it elects this candidate",
        dest="single_attempt",
    )
    _add_logging_flags(elect)
    elect.parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    elect.parser.set_defaults(handler=_elect)


ELECT_DESCRIPTION = """\
Campaign for the lease NAME in the store at URL; run COMMAND while leading, and stop it
(SIGTERM, then SIGKILL after --kill-grace) when leadership ends. COMMAND gets
MCLEASE_FENCING_TOKEN, MCLEASE_LEASE_NAME and MCLEASE_IDENTITY in its environment, and
none of the MCLEASE_* settings of this command (the store URL and password stay here).
A DURATION is 15s, 1m30s, 500ms, 1h or a number of seconds.
"""

ELECT_EPILOG = """\
--timeout and --try follow consul lock -timeout and flock -n: they bound the wait to be elected,
never the command. One attempt (--try) cannot take over from a holder that died, since expiry is
seen by watching the record stay unchanged for a lease duration: to wait for that, use a
--timeout longer than --lease-duration.

exit codes:
  N      the command's own code, when it exits by itself (the lease is released)
  1      not elected within --timeout, or at the first attempt with --try; an unexpected error
  2      usage or configuration error (bad flag, URL or timings; a store refusing credentials)
  3      leadership lost while the command ran (the command was stopped)
  126    the command was found but is not executable
  127    the command was not found on PATH
  128+N  stopped by signal N (SIGTERM, SIGINT): the command was stopped and the lease released
"""


def _add_controller(commands: Any) -> None:
    controller = Options(
        commands.add_parser(
            "controller",
            help="run the election controller of one cluster",
            description="Watch MultiClusterLease objects and contend for their global leases in "
            "the store at URL on behalf of this cluster's candidates. A DURATION is 15s, "
            "1m30s, 500ms, 1h or a number of seconds.",
            epilog="exit codes: 0 stopped by SIGTERM or SIGINT; 1 lost the active-replica lease "
            "(restart to campaign again) or an unexpected error; 2 usage or configuration error",
        )
    )
    controller.value(
        "--cluster-name",
        str,
        "this cluster's name, unique among the clusters sharing the store",
        required=True,
        metavar="NAME",
    )
    controller.value(
        "--storage", str, "the shared store, e.g. redis://host:6379/0", metavar="URL", required=True
    )
    controller.value(
        "--kubeconfig",
        str,
        "the kubeconfig file",
        default=None,
        metavar="PATH",
        shown="in-cluster config, else $KUBECONFIG or ~/.kube/config",
    )
    controller.value("--context", str, "kubeconfig context", default=None, shown="the current")
    controller.listing(
        "--namespace",
        namespace_name,
        "watch only this namespace (repeatable)",
        dest="namespaces",
        shown="all namespaces",
        metavar="NAMESPACE",
    )
    controller.value(
        "--retry-period",
        timing_duration,
        "how often each lease is reconciled without a change",
        default=2.0,
        metavar="DURATION",
    )
    controller.value("--workers", positive_int, "reconciles run at once", default=4, metavar="N")
    controller.value(
        "--metrics-bind-address",
        bind_address,
        "Prometheus metrics; 0 turns them off",
        default=":8080",
        metavar="[HOST]:PORT",
        aliases=("--metrics-address",),
    )
    controller.value(
        "--health-probe-bind-address",
        bind_address,
        "/healthz and /readyz; 0 turns them off",
        default=":8081",
        metavar="[HOST]:PORT",
        aliases=("--health-address",),
    )
    controller.switch(
        "--poll-store",
        "read each lease's global record on every reconcile even when the store has a change "
        "feed (etcd, Redis, SQLite): more store reads, and another cluster's release is seen at "
        "the next signal instead of at once",
    )
    controller.switch("--leader-elect", "elect one active replica with a coordination.k8s.io Lease")
    controller.value(
        "--leader-elect-namespace",
        namespace_name,
        "the namespace of that Lease",
        default=None,
        metavar="NAMESPACE",
        shown="$POD_NAMESPACE, else the service account's namespace; outside a pod "
        "--leader-elect needs this flag",
    )
    timing = LeaseTiming()
    controller.value(
        "--leader-elect-lease-duration",
        timing_duration,
        "the replica Lease's duration",
        default=timing.lease_duration,
        metavar="DURATION",
    )
    controller.value(
        "--leader-elect-renew-deadline",
        timing_duration,
        "the replica Lease's renew deadline",
        default=timing.renew_deadline,
        metavar="DURATION",
    )
    controller.value(
        "--leader-elect-retry-period",
        timing_duration,
        "the replica Lease's retry period",
        default=timing.retry_period,
        metavar="DURATION",
    )
    _add_logging_flags(controller)
    controller.parser.set_defaults(handler=_controller)


# ----- backends, elect -----------------------------------------------------------------------


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
    if args.single_attempt and args.timeout is not None:
        raise ConfigurationError("use --try (one attempt) or --timeout (a wait), not both")
    timing = LeaseTiming(args.lease_duration, args.renew_deadline, args.retry_period)
    kill_grace = args.kill_grace
    if kill_grace is None:  # a third of the room, leaving the margin ElectedCommand requires
        spare = timing.lease_duration - timing.renew_deadline
        kill_grace = max(0.0, min(spare / 3, spare - safety_margin(timing.lease_duration)))
    check_runnable(command[0], os.environ)  # the command's environment adds only MCLEASE_*
    # The command is forked while the change feed's thread may be in a gRPC call (etcd); gRPC's
    # fork handlers would then print a line of their own to stderr, and the child execs at once
    # anyway: they are of no use here. Read when grpc is first imported, by the backend.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    storage = load_backends().open(args.storage)
    changes: ChangeTracker | None = None
    try:
        if not args.single_attempt:  # one attempt: nothing to wake up for
            changes = ChangeTracker.of(storage, name="mclease-elect-changes")
        elector = LeaderElector(
            storage if changes is None else TrackedStorage(storage, changes),
            args.name,
            args.identity,
            cluster=args.cluster,
            timing=timing,
            changes=changes,  # a follower takes a released lease at once, not a period later
        )
        runner = ElectedCommand(
            elector,
            command,
            kill_grace=kill_grace,
            timeout=args.timeout,
            single_attempt=args.single_attempt,
        )
        _check_store(storage, args.name)
        if changes is not None:
            changes.start()
        return runner.run()
    finally:
        if changes is not None:
            changes.close()
        storage.close()


def _check_store(storage: Storage, key: str) -> None:
    """One read: raises :class:`ConfigurationError` when the store refuses the configuration
    (no credentials, say), which no retry can mend. A store that is merely unreachable now is
    retried later by whoever uses it."""
    try:
        storage.read(key)
    except ConfigurationError:
        raise
    except StorageError as exc:
        log.debug("startup read of %r: %s", key, exc)
    except Exception as exc:  # a backend that raised what it should have mapped: retried later
        log.debug("startup read of %r: %s: %s", key, type(exc).__name__, exc)


# ----- controller ----------------------------------------------------------------------------


def _controller(args: argparse.Namespace) -> int:
    try:
        from .controller import Controller
    except ImportError as exc:
        raise ConfigurationError(
            f"the controller needs the Kubernetes client and prometheus-client ({exc}); "
            'install them with: pip install "mclease-core[controller]"'
        ) from exc
    config = controller_config(args)
    api_client = _kube_client(args.kubeconfig, args.context)
    _check_listening("--metrics-bind-address", config.metrics_address)
    _check_listening("--health-probe-bind-address", config.health_address)
    storage = load_backends().open(args.storage)
    try:
        _check_store(storage, PROBE_KEY)
        controller = Controller(api_client, storage, config)
        signal.signal(signal.SIGTERM, lambda signum, frame: controller.stop())
        signal.signal(signal.SIGINT, lambda signum, frame: controller.stop())
        code = controller.run()
    except BaseException:
        storage.close()
        raise
    return exit_controller(code, storage)


def exit_controller(
    code: int,
    storage: Storage,
    *,
    others: Sequence[threading.Thread] | None = None,
    end: Callable[[int], object] = os._exit,
) -> int:
    """Close the store and return the controller's exit code, or, when threads outlived the
    controller's bounded joins, end the process with that code at once (``end``).

    Such threads are there by design: the watch sits in a blocking read, and a call that
    trickles or hangs is abandoned to its thread once its deadline passed. Left running into
    interpreter shutdown, a thread inside a C extension can abort the process: the chaos runner
    saw ``mclease controller`` on etcd die of SIGABRT (exit -6, not 1) in grpc after it lost its
    replica lease while its API server trickled. Closing the store under such a thread is no
    safer, and nothing is lost by skipping it: the term is over, the store's connections end
    with the process. Logs are flushed first.
    """
    if others is None:
        others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    if not any(thread.is_alive() for thread in others):
        storage.close()
        return code
    log.debug("%d threads still running at exit; ending the process", len(others))
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    end(code)
    return code


def controller_config(args: argparse.Namespace) -> ControllerConfig:
    """The controller's configuration from the parsed flags (needs the ``controller`` extra)."""
    from .controller import ControllerConfig

    problem = cluster_name_problem(args.cluster_name)
    if problem:
        raise ConfigurationError(
            f"{problem}: set --cluster-name (or MCLEASE_CLUSTER_NAME; in config/, CLUSTER_NAME "
            "of the mclease-controller-config ConfigMap) to this cluster's name, unique among "
            "the clusters sharing the store"
        )
    namespace = args.leader_elect_namespace or pod_namespace(os.environ, SERVICE_ACCOUNT_NAMESPACE)
    if args.leader_elect and not namespace:
        raise ConfigurationError(
            "--leader-elect needs a namespace for its Lease and this is not a pod (no "
            "$POD_NAMESPACE, no service account namespace file): pass --leader-elect-namespace"
        )
    return ControllerConfig(
        cluster=args.cluster_name,
        namespaces=args.namespaces,
        retry_period=args.retry_period,
        workers=args.workers,
        metrics_address=args.metrics_bind_address,
        health_address=args.health_probe_bind_address,
        watch_store=not args.poll_store,
        leader_elect=args.leader_elect,
        leader_elect_namespace=namespace or "",  # unused without --leader-elect
        leader_elect_timing=LeaseTiming(
            args.leader_elect_lease_duration,
            args.leader_elect_renew_deadline,
            args.leader_elect_retry_period,
        ),
    )


def _kube_client(kubeconfig: str | None, context: str | None) -> Any:
    from kubernetes import client as k8s
    from kubernetes import config as kube_config

    try:
        if kubeconfig is None and context is None and _in_cluster():
            kube_config.load_incluster_config()
            return k8s.ApiClient()
        return kube_config.new_client_from_config(config_file=kubeconfig, context=context)
    except Exception as exc:  # the client raises ConfigException, OSError, YAML and type errors
        where = kubeconfig or "the default kubeconfig ($KUBECONFIG or ~/.kube/config)"
        raise ConfigurationError(
            f"cannot load {where}: {type(exc).__name__}: {excerpt(str(exc))}; pass a valid "
            "--kubeconfig (and --context), or run in a pod with a service account"
        ) from exc


def pod_namespace(environ: Mapping[str, str], namespace_file: Path) -> str | None:
    """The namespace this process runs in: ``$POD_NAMESPACE`` (the downward API), else the
    service account's namespace file, else ``None`` (not in a pod)."""
    name = environ.get("POD_NAMESPACE", "").strip()
    if not name:
        try:
            name = namespace_file.read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None
    if not name:
        return None
    try:
        return namespace_name(name)
    except argparse.ArgumentTypeError as exc:
        raise ConfigurationError(f"the pod's namespace: {exc}") from None


def _check_listening(flag: str, address: tuple[str, int] | None) -> None:
    """Bind ``address`` once, as the servers will (``SO_REUSEADDR``), so a port in use or a host
    that is not this machine's is a clear error before anything starts."""
    if address is None:
        return
    host, port = address
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        with socket.socket(family[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(family[0][4])
    except OSError as exc:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ConfigurationError(
            f"cannot listen on {flag} {shown}: {exc.strerror or exc}; choose another address, "
            "or 0 to turn it off"
        ) from exc


def _in_cluster() -> bool:
    return "KUBERNETES_SERVICE_HOST" in os.environ


if __name__ == "__main__":
    sys.exit(main())
