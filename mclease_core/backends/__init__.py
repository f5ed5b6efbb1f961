"""Backends that ship with ``mclease-core``: ``memory://`` and ``sqlite:///path``.

They are registered through the same ``mclease_backends`` hook as third-party plugins (see
:mod:`mclease_core.backends._builtin`); nothing here is special-cased by the core.
"""

from .memory import MemoryStorage
from .sqlite import SQLiteStorage

__all__ = ["MemoryStorage", "SQLiteStorage"]
