"""Process hygiene for services that start children: nothing may outlive the process that
started it, whether that process exits cleanly, gets SIGTERM, or is killed with SIGKILL."""

from __future__ import annotations

import ctypes
import signal
import sys
from types import FrameType

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` for Popen: the kernel sends the child SIGTERM when its parent dies, even by
    SIGKILL. Needed for children started in their own session (out of reach of group signals).
    Note the kernel ties this to the *thread* that forked, so start such children from a thread
    that lives as long as the service (the main thread)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: fall back to the parent's own cleanup
        pass


def sigterm_exits() -> None:
    """Make SIGTERM unwind the stack like ``sys.exit`` so ``finally`` blocks stop children.

    uvicorn restores the previous handler and re-raises the signal after its graceful shutdown;
    with the default handler that kills the process before any ``finally`` runs.
    """

    def _exit(signum: int, frame: FrameType | None) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
