"""One thread for all torch work in a process.

Measured here: once two threads have each run parallel torch work, both decode ~30% slower for
good (each thread gets its own OpenMP pool, and on two cores the pools get in each other's way).
So training, model loading and the inference engine all run on this one thread, whichever thread
asks for them; the main thread stays free for signals, progress bars and the HTTP server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from queue import Queue
from typing import TypeVar

T = TypeVar("T")

_queue: Queue[tuple[Callable, Future]] = Queue()
_thread: threading.Thread | None = None
_lock = threading.Lock()


def _serve() -> None:
    while True:
        fn, future = _queue.get()
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to the caller, who raises it
            future.set_exception(exc)


def is_torch_thread() -> bool:
    return threading.current_thread() is _thread


def submit(fn: Callable[[], T]) -> Future[T]:
    """Queue `fn` on the torch thread; tasks run one after another, in order."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_serve, name="tunesmith-torch", daemon=True)
            _thread.start()
    future: Future[T] = Future()
    _queue.put((fn, future))
    return future


def call(fn: Callable[[], T]) -> T:
    """Run `fn` on the torch thread and wait for its result (directly, when already there).

    The wait is in short slices so that the calling thread still sees Ctrl-C.
    """
    if is_torch_thread():
        return fn()
    future = submit(fn)
    while True:
        try:
            return future.result(timeout=0.2)
        except FutureTimeout:
            continue
