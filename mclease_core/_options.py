"""Flags bound to environment variables, and the parsers of their values.

Design note, for whoever adds a flag:

* **One source order: flag, then variable, then default.** Every long flag added through
  :class:`Options` can also be set by ``MCLEASE_`` + its name in upper case with underscores
  (``--cluster-name`` is ``MCLEASE_CLUSTER_NAME``), as a container's environment or a ConfigMap
  would. argparse parses the command line with a sentinel default (``_UNSET``); :func:`parse`
  then fills each flag not given from its variable, else its default, so a flag always beats its
  variable, which beats the default. ``--help`` shows each variable and each default.
* Switches take ``true/false/1/0/yes/no/on/off`` in their variable and have a ``--no-`` form, so
  the command line can override a variable either way. A repeatable flag's variable holds a
  comma-separated list.
* **One duration syntax** for every duration flag: Go's (``15s``, ``1m30s``, ``500ms``, ``1h``;
  units ``ns us ms s m h``) or a plain number of seconds. Zero, negative, NaN and infinite ones
  are refused; lease timings (:data:`timing_duration`) must also be within 0.05 s and 1 h
  (``_limits``).
* Addresses are ``[HOST]:PORT``, an IPv6 host in brackets (``[::1]:8080``); ``0`` turns it off.
* **Errors are one line.** A bad flag, value or variable raises :class:`UsageError` with a
  message naming the flag or the variable and the accepted forms; the caller prints it and exits
  2, never a traceback. The value parsers raise ``argparse.ArgumentTypeError`` so argparse and
  :func:`parse` word them the same way.

Not here: which flags each command has (``_cli``), logging (``_logging``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from ._limits import MAX_DURATION, MIN_DURATION, printable

ENV_PREFIX = "MCLEASE_"


class UsageError(Exception):
    """A bad flag or environment variable: exit 2 with this one line."""


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()
"""The parsed value of a flag not given on the command line (its variable or default is
filled in afterwards)."""


class Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`UsageError` instead of exiting, and takes no
    abbreviated flags (``--storag`` is an error, not ``--storage``)."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


class _Switch(argparse.Action):
    """``--flag`` sets True, ``--no-flag`` False (to override the environment variable)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any):
        negated = [f"--no-{flag[2:]}" for flag in option_strings]
        super().__init__([*option_strings, *negated], dest, nargs=0, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, not (option_string or "").startswith("--no-"))

    def format_usage(self) -> str:
        return " | ".join(self.option_strings)


@dataclasses.dataclass(frozen=True)
class _Binding:
    """A flag's environment variable and its fallbacks."""

    flag: str
    dest: str
    variable: str
    default: Any
    required: bool
    parse: Callable[[str], Any]
    repeatable: bool = False


class Options:
    """Adds the flags of one (sub)command, each bound to its environment variable.

    ``top=True`` for the parser that holds the subcommands: its bindings are kept apart, since a
    subcommand's defaults replace its parent's in the parsed namespace."""

    def __init__(self, parser: argparse.ArgumentParser, *, top: bool = False):
        self.parser = parser
        self.bindings: list[_Binding] = []
        parser.set_defaults(_bindings=self.bindings)
        if top:
            parser.set_defaults(_top=self.bindings)

    def value(
        self,
        flag: str,
        parse: Callable[[str], Any],
        help: str,
        *,
        default: Any = None,
        required: bool = False,
        metavar: str | None = None,
        shown: str | None = None,
        aliases: Sequence[str] = (),
        bound: bool = True,
    ) -> None:
        """A flag with a value. ``shown`` describes the default in ``--help`` (else its value);
        ``bound=False``: no variable, and no value unless given (a repeated logging flag)."""
        dest = flag[2:].replace("-", "_")
        variable = _variable(flag)
        described = "required" if required else f"default: {shown or _shown(default)}"
        if not bound:
            self.parser.add_argument(
                flag,
                type=parse,
                default=argparse.SUPPRESS,
                metavar=metavar,
                help=_help(f"{help} ({described}; env: {variable}; also before the command)"),
            )
            return
        self._bind(flag, dest, parse(default) if isinstance(default, str) else default, required,
                   parse)  # fmt: skip
        self.parser.add_argument(
            flag,
            type=parse,
            default=_UNSET,
            dest=dest,
            metavar=metavar,
            help=_help(f"{help} ({described}; env: {variable})"),
        )
        for alias in aliases:  # an older name of the flag, kept working, not shown
            self.parser.add_argument(
                alias,
                type=parse,
                default=argparse.SUPPRESS,
                dest=dest,
                metavar=metavar,
                help=argparse.SUPPRESS,
            )

    def switch(self, flag: str, help: str, *, dest: str | None = None) -> None:
        dest = dest or flag[2:].replace("-", "_")
        variable = self._bind(flag, dest, False, False, boolean)
        self.parser.add_argument(
            flag,
            action=_Switch,
            default=_UNSET,
            dest=dest,
            help=_help(f"{help} (default: off; env: {variable}=true)"),
        )

    def listing(
        self,
        flag: str,
        parse: Callable[[str], Any],
        help: str,
        *,
        dest: str,
        shown: str,
        metavar: str,
    ) -> None:
        """A repeatable flag; its variable holds a comma-separated list."""
        variable = self._bind(flag, dest, [], False, parse, repeatable=True)
        self.parser.add_argument(
            flag,
            type=parse,
            action="append",
            default=None,
            dest=dest,
            metavar=metavar,
            help=_help(f"{help} (default: {shown}; env: {variable}, comma-separated)"),
        )

    def _bind(
        self,
        flag: str,
        dest: str,
        default: Any,
        required: bool,
        parse: Callable[[str], Any],
        *,
        repeatable: bool = False,
    ) -> str:
        variable = _variable(flag)
        self.bindings.append(_Binding(flag, dest, variable, default, required, parse, repeatable))
        return variable


def _variable(flag: str) -> str:
    """``--cluster-name`` reads ``MCLEASE_CLUSTER_NAME``."""
    return ENV_PREFIX + flag[2:].upper().replace("-", "_")


def _help(text: str) -> str:
    return text.replace("%", "%%")  # argparse formats help strings with %


def _shown(default: Any) -> str:
    if isinstance(default, float):
        return f"{default:g}s"
    return "none" if default in (None, "") else str(default)


def parse(
    parser: argparse.ArgumentParser, argv: Sequence[str], environ: Mapping[str, str]
) -> argparse.Namespace:
    """Parse ``argv`` with ``parser`` (whose flags were added through :class:`Options`), then
    fill each flag not given from its variable in ``environ``, else its default. Raises
    :class:`UsageError` (one line) for bad input; exits for ``--help``."""
    args = parser.parse_args(argv)
    for binding in [*args._top, *args._bindings]:
        value = getattr(args, binding.dest, _UNSET)
        if value is not _UNSET and not (binding.repeatable and value is None):
            continue
        raw = environ.get(binding.variable)
        if raw is not None:
            value = _from_environment(binding, raw)
        elif binding.required:
            raise UsageError(f"{binding.flag} is required (or set {binding.variable})")
        else:
            value = binding.default
        setattr(args, binding.dest, value)
    return args


def _from_environment(binding: _Binding, raw: str) -> Any:
    try:
        if binding.repeatable:
            return [binding.parse(item.strip()) for item in raw.split(",") if item.strip()]
        return binding.parse(raw)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise UsageError(f"environment variable {binding.variable}: {exc}") from None


# ----- values --------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION = re.compile(rf"[-+]?(?:{_DURATION_PART.pattern})+")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = re.compile(
    r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf|infinity)", re.IGNORECASE
)
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number of seconds (``2.5``) or a Go duration (``1m30s``,
    ``500ms``). Raises :class:`ValueError` naming the accepted forms. Range checks are the
    caller's (NaN and infinity come back as they are)."""
    value = text.strip()
    if _NUMBER.fullmatch(value):
        return float(value)
    if not _DURATION.fullmatch(value):
        raise ValueError(
            f"invalid duration {printable(text, 40)}: use a number of seconds or a duration "
            "such as 15s, 1m30s or 500ms"
        )
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(value))
    return -seconds if value.startswith("-") else seconds


def duration_between(minimum: float, maximum: float) -> Callable[[str], float]:
    """A flag's type: a duration of at least ``minimum`` (above it when 0) and at most
    ``maximum`` seconds."""

    def duration(text: str) -> float:
        try:
            seconds = parse_duration(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if not (math.isfinite(seconds) and minimum <= seconds <= maximum):
            raise argparse.ArgumentTypeError(
                f"must be between {minimum:g} and {maximum:g} seconds, got {printable(text, 40)}"
            )
        return seconds

    return duration


timing_duration = duration_between(MIN_DURATION, MAX_DURATION)
"""A flag's type for a lease timing (duration, renew deadline, retry period)."""


def positive_int(text: str) -> int:
    try:
        number = int(text.strip())
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of at least 1, got {printable(text, 40)}"
        )
    return number


def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {printable(text, 40)}")


def one_of(choices: Sequence[str]) -> Callable[[str], str]:
    """A flag's type: one of ``choices``, in any case."""

    def choice(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise argparse.ArgumentTypeError(
                f"expected one of {', '.join(choices)}, got {printable(text, 40)}"
            )
        return value

    return choice


def namespace_name(text: str) -> str:
    """A Kubernetes namespace: a DNS label."""
    if not _DNS_LABEL.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"invalid namespace {printable(text, 70)}: lowercase letters, digits and '-', "
            "at most 63"
        )
    return text


def bind_address(text: str) -> tuple[str, int] | None:
    """``[HOST]:PORT`` or ``[IPV6]:PORT`` as ``(host, port)`` (no host: all IPv4 interfaces), or
    ``None`` for ``0`` or empty (off)."""
    value = text.strip()
    if value in ("0", ""):
        return None
    bracketed = re.fullmatch(r"\[([0-9A-Fa-f:.%\w]+)\]:([^:]*)", value)
    if bracketed:
        host, port = bracketed.groups()
    elif value.startswith("["):
        raise argparse.ArgumentTypeError(
            f"invalid address {printable(text, 60)}: expected [IPV6]:PORT, as in [::1]:8080"
        )
    else:
        host, separator, port = value.rpartition(":")
        if not separator:
            raise argparse.ArgumentTypeError(
                f"invalid address {printable(text, 60)}: expected [HOST]:PORT, or 0 to turn off"
            )
        if ":" in host:
            raise argparse.ArgumentTypeError(
                f"invalid address {printable(text, 60)}: put an IPv6 host in brackets, as in "
                f"[{host}]:{port}"
            )
    if not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise argparse.ArgumentTypeError(
            f"invalid port in {printable(text, 60)}: expected a number from 0 to 65535"
        )
    return (host or "0.0.0.0", int(port))  # noqa: S104 - the documented default, as in Go
