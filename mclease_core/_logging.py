"""Logging for the ``mclease`` command: one stream on stderr, as text or as JSON lines.

``--log-level`` sets the level and each ``-v`` (before or after the command) lowers it one step
(``info`` to ``debug``). ``--log-format json`` writes one JSON object per line
(python-json-logger): ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``,
``message``, ``exception`` (the traceback, when there is one) and any ``extra=`` fields, so log
collectors need no parsing rules. Nothing is configured when the root logger already has
handlers (an embedding application, or pytest).

Not here: the flags themselves (``_cli``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from ._errors import ConfigurationError

LOG_LEVELS = ("debug", "info", "warning", "error")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_level(args: argparse.Namespace) -> str:
    """``--log-level``, one step lower for each ``-v`` (before or after the command)."""
    steps = args.verbose + getattr(args, "verbose_after", 0)
    return LOG_LEVELS[max(0, LOG_LEVELS.index(args.log_level) - steps)]


def configure_logging(args: argparse.Namespace) -> None:
    """The root logger as the parsed ``--log-level``, ``-v`` and ``--log-format`` ask."""
    level = log_level(args)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        json_formatter() if args.log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    # Configures nothing when the root logger already has handlers (say, under pytest).
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])


def json_formatter() -> logging.Formatter:
    """python-json-logger's formatter with the fields named as ``--log-format json`` documents
    and RFC 3339 UTC timestamps with milliseconds (``2026-12-02T00:12:34.567Z``)."""
    try:
        from pythonjsonlogger.json import JsonFormatter
    except ImportError as exc:
        raise ConfigurationError(
            f"--log-format json needs python-json-logger ({exc}); install it with: "
            'pip install python-json-logger, or pip install "mclease-core[controller]"'
        ) from exc
    formatter = JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={
            "asctime": "time",
            "levelname": "level",
            "name": "logger",
            "exc_info": "exception",
            "stack_info": "stack",
        },
    )
    formatter.converter = time.gmtime
    formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
    formatter.default_msec_format = "%s.%03dZ"
    return formatter
