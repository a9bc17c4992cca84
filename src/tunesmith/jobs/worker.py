"""Workers: child processes that claim queued jobs and train them, watched by a Supervisor.

Training runs in a child process so the server stays responsive and a crash (or the OOM killer)
fails that one job, not the server. The Supervisor also validates new jobs' files in a thread,
and on start recovers jobs that a previous server left `running`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from typing import TYPE_CHECKING

from tunesmith.errors import TunesmithError
from tunesmith.settings import Settings

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from tunesmith.store import Store

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 60  # a CPU step plus a checkpoint save fit in this


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker when the server dies, even by SIGKILL: an orphaned
    worker would go on training a job that the next server also resumes."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the next start's recovery still requeues
        pass


def worker_main(settings: dict) -> None:
    """A worker process: claim the oldest queued job, train it, repeat until told to stop."""
    from tunesmith.logs import quiet_libraries
    from tunesmith.jobs.control import stop_reason
    from tunesmith.store import open_store
    from tunesmith.train.run import run

    quiet_libraries()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the server is the server's to handle
    store = open_store(Settings(**settings))
    while not stop.is_set():
        job = store.jobs.claim_next(os.getpid())
        if job is None:
            comparison = store.comparisons.claim_next(os.getpid())
            if comparison is not None:
                from tunesmith.jobs.comparisons import run_queued_comparison

                run_queued_comparison(store, comparison)
                continue
            stop.wait(POLL_SECONDS)
            continue
        resume = store.checkpoints.latest(job.id) is not None
        try:
            run(
                job.id,
                store,
                stop_requested=lambda j=job.id: (
                    "requeue" if stop.is_set() else stop_reason(store, j)
                ),
                resume=resume,
            )
        except TunesmithError as exc:  # already recorded on the job
            log.warning("job %s: %s", job.id, exc)
        except Exception:
            log.exception("job %s failed", job.id)


class Supervisor:
    def __init__(self, settings: Settings, workers: int = 1) -> None:
        self.settings = settings
        self.n_workers = workers
        self.processes: list[BaseProcess] = []
        self._to_validate: queue.Queue[str] = queue.Queue()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.store: Store | None = None

    def start(self) -> None:
        from tunesmith.store import open_store

        self.store = open_store(self.settings)
        self.recover()
        for target in (self._validate_loop, self._watch_loop):
            thread = threading.Thread(target=target, daemon=True, name=target.__name__)
            thread.start()
            self._threads.append(thread)
        for _ in range(self.n_workers):
            self.processes.append(self._spawn())

    def _spawn(self) -> BaseProcess:
        # "spawn", not fork: a forked copy of a server with threads and torch state is unsafe.
        ctx = multiprocessing.get_context("spawn")
        process = ctx.Process(
            target=worker_main,
            args=(self.settings.model_dump(mode="json"),),
            name="tunesmith-worker",
        )
        process.start()
        return process

    # --- validation ------------------------------------------------------------------------------
    def validate_soon(self, job_id: str) -> None:
        self._to_validate.put(job_id)

    def _validate_loop(self) -> None:
        from tunesmith.jobs.service import validate_files

        while not self._stopping.is_set():
            try:
                job_id = self._to_validate.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            job = self.store.jobs.get(job_id)
            if job.status != "validating_files":  # cancelled meanwhile
                continue
            try:
                validate_files(self.store, job)
            except TunesmithError as exc:
                if exc.code == "invalid_job_state":  # cancelled while its files were checked
                    continue
                self._fail(job_id, exc.code or "invalid_training_file", str(exc), exc.param)
            except Exception as exc:
                log.exception("validating %s failed", job_id)
                self._fail(job_id, "internal_error", f"validation failed: {exc}", None)

    def _fail(self, job_id: str, code: str, message: str, param: str | None) -> None:
        from tunesmith.store.jobs import FINAL
        from tunesmith.train import events as ev

        if self.store.jobs.get(job_id).status in FINAL:  # e.g. cancelled while validating
            return
        self.store.events.add(job_id, ev.FAILED.format(reason=message), level="error")
        self.store.jobs.transition(
            job_id,
            "failed",
            allowed_from={"validating_files", "queued", "running"},
            error={"code": code, "message": message, "param": param},
        )

    # --- crashes and restarts --------------------------------------------------------------------
    def _watch_loop(self) -> None:
        while not self._stopping.wait(1.0):
            for i, process in enumerate(self.processes):
                if process.is_alive() or self._stopping.is_set():
                    continue
                self._orphaned(
                    process.pid, f"the training process exited with code {process.exitcode}"
                )
                self.processes[i] = self._spawn()

    def _orphaned(self, pid: int | None, why: str) -> None:
        for job in self.store.jobs.with_status("running"):
            if job.worker_pid == pid:
                self._fail(job.id, "worker_crashed", f"{why}; the server keeps running", None)

    def recover(self) -> None:
        """Jobs left `running` by a process that is gone resume from their last checkpoint, or
        fail if they have none; never stay `running`. Unvalidated jobs are validated again."""
        for job in self.store.jobs.with_status("running"):
            if pid_alive(job.worker_pid) and job.worker_pid != os.getpid():
                continue  # e.g. `tunesmith train` running in a terminal
            latest = self.store.checkpoints.latest(job.id)
            if latest is None:
                self._fail(
                    job.id,
                    "interrupted",
                    "the process training this job stopped before its first checkpoint",
                    None,
                )
                continue
            self.store.events.add(
                job.id,
                f"The process training this job stopped; resuming from the checkpoint at step "
                f"{latest.step_number}",
                level="warn",
            )
            self.store.jobs.transition(job.id, "queued", allowed_from={"running"})
        for job in self.store.jobs.with_status("validating_files"):
            self.validate_soon(job.id)
        for row in self.store.comparisons.with_status("running"):
            if not pid_alive(row.worker_pid):  # comparisons have no checkpoints: run again
                self.store.comparisons.event(
                    row.id, "The process running this comparison stopped; it runs again"
                )
                self.store.execute(
                    "UPDATE comparisons SET status = 'queued' WHERE id = ?", [row.id]
                )

    def stop(self) -> None:
        """Ask workers to stop at a step boundary (their jobs go back to the queue), then wait."""
        self._stopping.set()
        for process in self.processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: the worker saves a checkpoint and requeues
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in self.processes:
            process.join(timeout=max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.store is not None:
            self.store.close()
