"""The python grader's sandbox: one isolated worker process per grader, reused across samples.

The client's `grade(sample, item)` runs in `sys.executable -I -B graders/_worker.py`: an empty
environment, a read-only temporary cwd, RLIMIT_AS and RLIMIT_CPU, a new network namespace where
Linux allows one, and a PEP 578 audit hook that refuses sockets, processes, ctypes and file
writes. The parent gives each sample a wall-clock limit. A sample that hangs, crashes, runs out
of memory or returns anything but a finite number scores nothing, with its reason; the worker is
then replaced for the next sample. Nothing the client does raises here.

This is defence in depth for graders that clients write, not a jail for hostile code: an audit
hook can be worked around from Python by a determined author. Run untrusted servers in a
container as well.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

WORKER = Path(__file__).with_name("_worker.py")
MAX_REPLY_BYTES = 64 * 1024  # a reply is a number or an error message; more is a broken worker
# The worker's whole environment: no tokens, keys or proxies of the server's leak into it.
# One BLAS thread: each thread reserves address space, and RLIMIT_AS counts it.
ENV = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
}

FailureKind = Literal["runtime", "return", "timeout", "memory", "crash", "start"]


@dataclass(frozen=True)
class Limits:
    """What one python grader may use. The CPU limit is for the worker's whole life (many
    samples): a backstop, since the wall-clock timeout already stops a sample that spins."""

    timeout_s: float = 10.0  # wall clock per sample
    memory_bytes: int = 1 << 30  # address space; Python itself takes ~30 MiB of it
    cpu_s: int = 3600
    start_s: float = 30.0  # to start the interpreter and run the source's top level


@dataclass(frozen=True)
class Outcome:
    """One sample's result: a finite score, or None with the reason and its kind."""

    score: float | None
    error: str | None = None
    kind: FailureKind | None = None


class _Failed(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome


_LIVE: weakref.WeakSet[Sandbox] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for sandbox in list(_LIVE):
        sandbox.close()


class Sandbox:
    """`run(sample, item)` for one grader's source; `close()` (or `with`) ends the worker.

    Use it from one thread: a worker dies with the thread that started it (PR_SET_PDEATHSIG
    follows the thread), so a crashed server leaves no orphan behind."""

    def __init__(self, source: str, limits: Limits | None = None) -> None:
        self.source = source
        self.limits = limits or Limits()
        self._proc: subprocess.Popen[bytes] | None = None
        self._folder: str | None = None
        self._buffer = b""
        _LIVE.add(self)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def run(self, sample: Any, item: Any) -> Outcome:
        """Grade one sample. Never raises for anything the client's code does."""
        try:
            if self._proc is None:
                self._start()
            request = json.dumps({"sample": sample, "item": item}, default=str) + "\n"
            return self._ask(request.encode(), self.limits.timeout_s)
        except _Failed as failed:
            self._stop()  # the next sample gets a fresh worker
            return failed.outcome

    def close(self) -> None:
        self._stop()
        _LIVE.discard(self)

    # --- the worker ------------------------------------------------------------------------------
    def _start(self) -> None:
        self._folder = tempfile.mkdtemp(prefix="tunesmith-grader-")
        os.chmod(self._folder, 0o555)  # read-only cwd: a write fails even if a hook missed it
        argv = [sys.executable, "-I", "-B", str(WORKER), str(os.getpid())]
        argv += [str(self.limits.memory_bytes), str(self.limits.cpu_s)]
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=self._folder,
            env=ENV,
            close_fds=True,
            start_new_session=True,  # the server's Ctrl-C goes to the server, not the worker
        )
        self._buffer = b""
        ready = self._ask(
            (json.dumps({"source": self.source}) + "\n").encode(), self.limits.start_s
        )
        if ready.score is None:  # the source's top level failed: as the sample's failure
            raise _Failed(ready)

    def _ask(self, line: bytes, timeout_s: float) -> Outcome:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        try:
            proc.stdin.write(line)
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise _Failed(self._died()) from None
        reply = self._read_line(time.monotonic() + timeout_s)
        try:
            message = json.loads(reply)
        except ValueError:
            raise _Failed(Outcome(None, "the grader's worker sent garbage", "crash")) from None
        return _outcome(message)

    def _read_line(self, deadline: float) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Failed(
                    Outcome(None, f"timed out after {self.limits.timeout_s:g} s", "timeout")
                )
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise _Failed(self._died())
            self._buffer += chunk
            if len(self._buffer) > MAX_REPLY_BYTES:
                raise _Failed(Outcome(None, "the grader's worker sent too much", "crash"))
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _died(self) -> Outcome:
        """Why the worker ended, from its exit status."""
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return Outcome(None, "the grader's worker stopped answering", "crash")
        if code == -signal.SIGXCPU:
            return Outcome(None, f"used more than {self.limits.cpu_s} s of CPU", "timeout")
        if code == -signal.SIGKILL:
            return Outcome(None, "killed (out of memory?)", "memory")
        return Outcome(None, f"the grader's process ended with status {code}", "crash")

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # unkillable (in the kernel): leave it to init
                log.warning("python grader worker %s did not exit", proc.pid)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        folder, self._folder = self._folder, None
        if folder is not None:
            os.chmod(folder, 0o755)
            shutil.rmtree(folder, ignore_errors=True)


def _outcome(message: Any) -> Outcome:
    """A worker's reply as an Outcome; anything but a finite score is a failure."""
    if not isinstance(message, dict):
        raise _Failed(Outcome(None, "the grader's worker sent garbage", "crash"))
    if message.get("ready") is True:
        return Outcome(0.0)
    if "score" in message:
        score = message["score"]
        if isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score):
            return Outcome(float(score))
        raise _Failed(Outcome(None, f"grade returned {score!r}, not a finite number", "return"))
    kind = (
        message.get("kind") if message.get("kind") in ("runtime", "return", "memory") else "crash"
    )
    raise _Failed(Outcome(None, str(message.get("error") or "failed"), kind))
