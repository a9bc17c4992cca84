"""Checking new jobs' files outside the server process, under a memory limit.

A 512 MB JSONL parsed and tokenised inside the API process could take the server down. Here one
long-lived child process (spawned once, so torch and the tokenizer load once) checks each job's
files with an address-space limit; a file that blows it fails its own job, the child is replaced,
and the server never notices.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import resource
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from tunesmith.errors import TunesmithError
from tunesmith.settings import Settings
from tunesmith.train import events as ev

if TYPE_CHECKING:
    from tunesmith.store import Store

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5
RETRY_SECONDS = 2.0  # after a transient fault (a locked database), the job is checked again


def _limit_memory(max_bytes: int) -> None:
    """In the child: die with the server (SIGKILL: a check cut off is simply run again at the
    next start), and cap its address space, so a runaway parse raises MemoryError there."""
    from tunesmith.jobs.children import die_with_parent
    from tunesmith.logs import quiet_libraries

    die_with_parent(signal.SIGKILL)
    quiet_libraries()
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


def _validate_in_child(settings: dict, job_id: str) -> dict | None:
    """Check one job's files and move the job (queued or failed). Errors come back as data:
    pickling would drop a TunesmithError's hint, param and code."""
    from tunesmith.jobs.service import validate_files
    from tunesmith.store import open_store

    store = open_store(Settings(**settings))
    try:
        job = store.jobs.get(job_id)
        if job.status == "validating_files":
            validate_files(store, job)
        return None
    except TunesmithError as exc:
        return {"code": exc.code, "message": str(exc), "param": exc.param}
    except MemoryError:
        return {"code": "file_too_large", "message": "checking the files ran out of memory"}
    finally:
        store.close()


class Validator:
    """A thread that hands queued job ids, one at a time, to the validating child process."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._ids: queue.Queue[str] = queue.Queue()
        self._stopping = threading.Event()
        self._pool: ProcessPoolExecutor | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True, name="validate-files")
        self._thread.start()

    def submit(self, job_id: str) -> None:
        self._ids.put(job_id)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job_id = self._ids.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            try:
                self._validate(job_id)
            except Exception:  # a locked database, a bug: try again later, never stop the loop
                log.exception("validating %s failed; retrying it", job_id)
                self._retry_later(job_id)

    def _retry_later(self, job_id: str) -> None:
        def again() -> None:
            if not self._stopping.is_set():
                self._ids.put(job_id)

        timer = threading.Timer(RETRY_SECONDS, again)
        timer.daemon = True
        timer.start()

    def _validate(self, job_id: str) -> None:
        if self.store.jobs.get(job_id).status != "validating_files":  # cancelled meanwhile
            return
        try:
            error = (
                self._child()
                .submit(_validate_in_child, self.settings.model_dump(mode="json"), job_id)
                .result()
            )
        except BrokenProcessPool:  # the child died: killed for memory, or crashed
            self._pool = None
            limit = self.settings.validation_memory_bytes
            error = {
                "code": "file_too_large",
                "message": f"checking the files stopped the checking process (memory limit "
                f"{limit / 2**30:.1f} GiB); split the file or raise TUNESMITH_VALIDATION_MEMORY_BYTES",
            }
        if error and error.get("code") != "invalid_job_state":  # cancelled while checked
            self._fail(job_id, error["code"] or "invalid_training_file", error["message"])

    def _child(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_limit_memory,
                initargs=(self.settings.validation_memory_bytes,),
            )
        return self._pool

    def _fail(self, job_id: str, code: str, message: str) -> None:
        error = {"code": code, "message": message, "param": "training_file"}
        if self.store.jobs.lifecycle.move(
            job_id, "failed", only_from={"validating_files"}, error=error
        ):
            self.store.events.add(job_id, ev.FAILED.format(reason=message), level="error")

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
