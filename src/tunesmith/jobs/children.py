"""Child processes (training workers, the file validator) that never outlive their server."""

from __future__ import annotations

import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals) -> None:
    """Ask Linux to send `sig` to this process when the process that started it dies, even by
    SIGKILL: an orphaned worker would go on training a job that the next server also resumes,
    and an orphaned validator would keep its memory forever. If the parent is already gone (it
    died while this child was starting), exit now. Elsewhere than Linux this does nothing; the
    next server's recovery still handles what an orphan held."""
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent or parent == 1:
        os._exit(0)
