"""One shape for the objects a ``with`` block owns: they have a ``close()``, and leaving the block
calls it.

A class states what closing means (:meth:`Closing.close`) and, if entering the block must do
something first (start a server, bring up a test bed), what that is (:meth:`Closing._on_enter`).
Whatever that start-up leaves behind when it fails is released by ``close()`` before the error
propagates, so ``close()`` must cope with a half-opened object. ``__exit__`` never swallows an
exception.

Not here: anything about what is being closed; stores, servers and proxies decide that.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self


class Closing(abc.ABC):
    """Base of objects that are closed by leaving a ``with`` block."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the object holds."""

    def _on_enter(self) -> None:  # noqa: B027 - optional hook, most objects open in __init__
        """What entering the ``with`` block does first; by default nothing."""

    def __enter__(self) -> Self:
        try:
            self._on_enter()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
