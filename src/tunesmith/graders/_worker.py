"""The python grader's worker process: run as a script by graders/sandbox.py, never imported.

It imports nothing of tunesmith. Order matters: the limits and namespaces are set up first, while
this process is trusted; the audit hook goes in before the client's source is executed, and from
then on nothing may open a file for writing, start a process, touch the network or load C code.

Protocol, one JSON object a line: stdin gets {"source": ...} once, then {"sample", "item"} per
sample; stdout answers {"ready": true} once, then {"score": float} or {"error", "kind"} each.
"""

import ctypes
import json
import os
import resource
import signal
import sys
import traceback

PR_SET_PDEATHSIG = 1
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
# Audit events refused once the client's code may run (prefixes of PEP 578 / CPython event names).
REFUSED = (
    "socket.",
    "subprocess.",
    "os.exec",
    "os.spawn",
    "os.posix_spawn",
    "os.system",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.killpg",
    "pty.",
    "ctypes.",
    "os.remove",
    "os.unlink",
    "os.rmdir",
    "os.rename",
    "os.replace",
    "os.mkdir",
    "os.chmod",
    "os.chown",
    "os.link",
    "os.symlink",
    "os.truncate",
    "os.utime",
    "shutil.",
    "sqlite3.",
    "resource.setrlimit",
    "resource.prlimit",
    "webbrowser.",
)


def confine(parent: int, memory_bytes: int, cpu_seconds: int) -> None:
    """Die with the parent, cap memory and CPU, and leave the network (where Linux allows).

    Done here rather than in Popen's preexec_fn: preexec_fn is unsafe in a threaded parent (the
    API server has threads), and this process is still single-threaded, as unshare(2) needs."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died while this process was starting
        os._exit(0)
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no new processes, should a hook miss
    # A new user namespace (no privileges needed) holding a new network namespace: only a
    # loopback that is down. Refused in some containers; the audit hook below still holds.
    libc.unshare(CLONE_NEWUSER | CLONE_NEWNET)


def _hook(event: str, args: tuple) -> None:
    if event == "open":
        _path, mode, flags = (*args, None, None, None)[:3]
        writes = isinstance(mode, str) and any(c in mode for c in "wax+")
        if writes or (isinstance(flags, int) and flags & _WRITE_FLAGS):
            raise PermissionError(f"the python grader may not write files (open {_path!r})")
    elif event.startswith(REFUSED):
        raise PermissionError(f"the python grader may not do this: {event}")


def _reply(out, message: dict) -> None:
    out.write(json.dumps(message, default=str) + "\n")
    out.flush()


def _score(result) -> dict:
    if isinstance(result, bool) or not isinstance(result, (int, float)):
        return {"error": f"grade returned {type(result).__name__}, not a number", "kind": "return"}
    try:
        return {"score": float(result)}
    except OverflowError:
        return {"error": "grade returned a number too large for a float", "kind": "return"}


def _failure(exc: BaseException) -> dict:
    kind = "memory" if isinstance(exc, MemoryError) else "runtime"
    lines = traceback.format_exception_only(type(exc), exc)
    return {"error": "".join(lines).strip()[-2000:], "kind": kind}


def main() -> None:
    parent, memory_bytes, cpu_seconds = (int(a) for a in sys.argv[1:4])
    confine(parent, memory_bytes, cpu_seconds)
    # The protocol keeps its own copy of stdout; the client's prints go to stderr (discarded).
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    source = json.loads(sys.stdin.readline())["source"]
    sys.addaudithook(_hook)
    namespace: dict = {"__name__": "grader"}
    try:
        exec(compile(source, "<grader>", "exec"), namespace)
        grade = namespace["grade"]
    except BaseException as exc:  # the client's code: any failure is its own, reported
        _reply(out, _failure(exc))
        return
    _reply(out, {"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            message = _score(grade(request["sample"], request["item"]))
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: still a reply
            message = _failure(exc)
        _reply(out, message)


if __name__ == "__main__":
    main()
