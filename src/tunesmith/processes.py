"""Whether a process is alive: recovery asks it of a job's runner, a rank of its supervisor, the
engines' tests of a model server."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int | None) -> bool:
    """Running on this host: signalable and not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A dead process its parent has not reaped: still signalable, never running again. A worker
    whose server was killed is reparented to pid 1, which in a container may never reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS), or it just went
        return False
    return stat[stat.rindex(")") + 2 :].startswith("Z")
