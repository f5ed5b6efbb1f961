"""Child processes that die with their parent, for ``mclease elect`` and the test fixtures."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def preexec_dying_with_parent(*, own_session: bool = False) -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets SIGKILL when this process dies,
    also by ``kill -9`` (Linux). ``own_session`` also puts it in a session of its own, so its
    whole group can be signalled. Call it in the parent, right before ``Popen``."""
    parent = os.getpid()

    def in_child() -> None:
        if own_session:
            os.setsid()
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return in_child
