"""What the change feeds of networked stores share: how long a quiet connection is trusted, and
how a feed comes back after a loss.

A feed probes a connection that said nothing for :data:`FEED_PROBE` times the store's ``timeout``
(a ``PING``, a progress request) and gives it up after :data:`FEED_SILENCE` times it: below the
``operation_timeout`` (3 ``timeout`` + 1 s) the contract allows. After a loss it tries again after
:data:`BACKOFF_FIRST` seconds, doubling up to :data:`BACKOFF_MAX`, and says so once per loss: one
warning, a debug line for each further failure, an info line when it is back.

Not here: the protocol of any store (each plugin's ``_feed``), the contract (``_storage``).
"""

from __future__ import annotations

import logging
import time

FEED_PROBE = 0.5
"""Silence, in units of the store's ``timeout``, after which a feed probes its connection."""
FEED_SILENCE = 2.0
"""Silence, in units of ``timeout``, after which a feed is disconnected: a probe went out and the
store did not answer within 1.5 ``timeout``."""
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 1.0
"""Seconds between two attempts to re-establish a feed: the first pause, and the longest."""


class Reconnection:
    """When a feed of ``where`` (for messages: "Redis at host:port") may try again, and what it
    says about its losses on ``log`` (the plugin's logger)."""

    def __init__(self, log: logging.Logger, where: str) -> None:
        self.log = log
        self.where = where
        self.retry_at = 0.0
        """Monotonic time of the next attempt."""
        self._failures = 0
        self._lost = False
        """Whether the loss was logged and no re-establishment followed yet."""

    def due(self) -> bool:
        return time.monotonic() >= self.retry_at

    def failed(self, reason: str, *, pause: float | None = None) -> None:
        """An attempt failed, or the feed was lost: back off (``pause`` overrides the backoff,
        say after refused credentials), and warn if this is a new loss."""
        self._failures += 1
        backoff = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self._failures - 1))
        self.retry_at = time.monotonic() + (backoff if pause is None else pause)
        if self._lost:
            self.log.debug("the change feed of %s is still down: %s", self.where, reason)
            return
        self._lost = True
        self.log.warning(
            "lost the change feed of %s (%s); re-establishing it, meanwhile the records are read",
            self.where,
            reason,
        )

    def established(self, detail: str = "") -> None:
        """The feed is back (or up for the first time): the backoff starts over."""
        self._failures = 0
        if self._lost:
            self._lost = False
            self.log.info(
                "the change feed of %s is back%s", self.where, f" ({detail})" * bool(detail)
            )
