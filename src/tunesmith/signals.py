"""A stop request that a signal handler may set: the one way processes here hear SIGTERM/SIGINT."""

from __future__ import annotations

import time


class StopFlag:
    """Set from a signal handler, read anywhere.

    Not a `threading.Event`: its `set()` takes a lock, and a handler runs between two bytecodes
    of the main thread, possibly inside the `set()` of an earlier signal's handler. It then waits
    forever for a lock its own thread holds: a training worker hung that way in CI when its
    parent-death SIGTERM came more than once. Assigning an attribute takes no lock.
    """

    POLL_SECONDS = 0.05

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """Sleep until set or `timeout` seconds passed; whether it is set."""
        deadline = time.monotonic() + timeout
        while not self._set and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, self.POLL_SECONDS))
        return self._set
