"""The stop flag a signal handler sets: a burst of signals never hangs the process hearing them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tunesmith.signals import StopFlag

# The worker's own pattern: the handler sets the flag; the main thread works and polls it.
CHILD = """
import signal, sys
from tunesmith.signals import StopFlag
stop = StopFlag()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
print("ready", flush=True)
while not stop.is_set():
    sum(range(1000))
    stop.wait(0.001)
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the burst may still be arriving
print("stopped", flush=True)
"""


def test_a_burst_of_sigterms_stops_the_process_instead_of_hanging_it():
    """A threading.Event set in the handler deadlocked a worker in CI: a second SIGTERM arrived
    while the first handler held the Event's lock. Here hundreds arrive back to back."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    assert proc.stdout.readline().strip() == "ready"
    for _ in range(300):
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:  # it stopped already
            break
    try:
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    assert proc.stdout.read().strip() == "stopped"


def test_wait_returns_when_set_or_after_the_timeout():
    flag = StopFlag()
    started = time.monotonic()
    assert flag.wait(0.1) is False
    assert time.monotonic() - started >= 0.1
    flag.set()
    assert flag.wait(10) is True and flag.is_set()
