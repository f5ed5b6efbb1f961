"""Helpers for backends that parse storage URLs: query options and durations.

Every backend's ``from_url`` rejects options it does not know and durations that are not positive
numbers with the same kind of :class:`ConfigurationError`, naming the URL and what is supported.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping

from ._errors import ConfigurationError
from ._limits import MAX_DURATION, MIN_DURATION, check_duration, excerpt


def url_options(url: str, allowed: Iterable[str], *, backend: str) -> dict[str, str]:
    """The query options of ``url``; :class:`ConfigurationError` for any not in ``allowed``."""
    supported = sorted(allowed)
    options = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))
    unknown = sorted(set(options) - set(supported))
    if unknown:
        raise ConfigurationError(
            f"unknown {backend} URL option(s) {unknown} in {url!r}; "
            f"supported: {', '.join(supported) or '(none)'}"
        )
    return options


def seconds_option(
    options: Mapping[str, str], name: str, default: float, *, url: str, backend: str
) -> float:
    """Option ``name`` as a positive number of seconds, or ``default`` when absent."""
    text = options.get(name)
    if text is None:
        return default
    try:
        return check_duration(f"{backend} {name}", float(text))
    except ValueError as exc:
        raise ConfigurationError(
            f"{backend} URL option {name} must be a number of seconds between {MIN_DURATION:g} "
            f"and {MAX_DURATION:g}, got {excerpt(repr(text))}"
        ) from exc
