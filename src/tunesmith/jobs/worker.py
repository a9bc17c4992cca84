"""Workers: child processes that claim queued jobs (and comparisons) and run them, watched by a
Supervisor.

Training runs in a child process so the server stays responsive and a crash (or the OOM killer)
costs that one job an attempt, not the server. The Supervisor validates new jobs' files in a
separate process with a memory limit (jobs/validation.py), and recovers what a dead runner left.
Comparisons are run by a function passed in from above (evals/ sits above jobs/).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tunesmith.errors import TunesmithError
from tunesmith.settings import Settings
from tunesmith.store.lifecycle import Runner

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from tunesmith.store import Store
    from tunesmith.store.tasks import TaskRow

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 60  # a CPU step plus a checkpoint save fit in this
# Runs one claimed background task (a comparison, an export): (store, row, runner, stopping).
TaskRunner = Callable[["Store", "TaskRow", Runner, Callable[[], bool]], None]


def worker_main(settings: dict, task_runners: dict[str, TaskRunner]) -> None:
    """A worker process: claim the oldest queued job (else background task), run it, repeat
    until told to stop. SIGTERM stops a job at its next step boundary and puts it back in the
    queue. `task_runners` maps a task table ("comparisons", "exports") to what runs its tasks."""
    from tunesmith.jobs.children import die_with_parent
    from tunesmith.jobs.service import run_next
    from tunesmith.logs import quiet_libraries
    from tunesmith.signals import StopFlag
    from tunesmith.store import open_store

    stop = StopFlag()  # not a threading.Event: see signals.py
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    die_with_parent(signal.SIGTERM)  # SIGTERM: a running job stops at a step and is requeued
    quiet_libraries()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the server is the server's to handle
    store = open_store(Settings(**settings))
    runner = Runner.here()
    while not stop.is_set():
        try:
            if run_next(store, runner, lambda: "requeue" if stop.is_set() else None) is not None:
                continue
        except TunesmithError as exc:  # already recorded on the job
            log.warning("%s", exc)
            continue
        except Exception:  # recorded on the job too, as an internal error; the worker goes on
            log.exception("a job failed")
            continue
        if not _run_next_task(store, task_runners, runner, stop.is_set):
            stop.wait(POLL_SECONDS)


def _run_next_task(
    store: Store, task_runners: dict[str, TaskRunner], runner: Runner, stopping: Callable[[], bool]
) -> bool:
    """Claim and run one queued task of any kind; False when there was none."""
    for table, run in task_runners.items():
        row = store.tasks[table].claim_next(runner)
        if row is not None:
            run(store, row, runner, stopping)
            return True
    return False


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        workers: int = 1,
        task_runners: dict[str, TaskRunner] | None = None,
    ) -> None:
        # The door that created a job already decided which model it may name (the API keeps to
        # --model-dir, the CLI allows any folder); the processes that run and check jobs trust
        # that decision, so a CLI job on a private folder can still be resumed by a worker.
        self.settings = settings.model_copy(update={"any_model_folder": True})
        self.n_workers = workers
        self.task_runners = task_runners or {}
        self.processes: list[BaseProcess] = []
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.store: Store | None = None
        self.validator = None

    def start(self) -> None:
        from tunesmith.jobs.recovery import recover
        from tunesmith.jobs.validation import Validator
        from tunesmith.store import open_store

        self.store = open_store(self.settings)
        self.validator = Validator(self.settings, self.store)
        for job_id in recover(self.store):
            self.validator.submit(job_id)
        thread = threading.Thread(target=self._watch_loop, daemon=True, name="watch-workers")
        thread.start()
        self._threads.append(thread)
        for _ in range(self.n_workers):
            self.processes.append(self._spawn())

    def _spawn(self) -> BaseProcess:
        # "spawn", not fork: a forked copy of a server with threads and torch state is unsafe.
        ctx = multiprocessing.get_context("spawn")
        process = ctx.Process(
            target=worker_main,
            args=(self.settings.model_dump(mode="json"), self.task_runners),
            name="tunesmith-worker",
        )
        process.start()
        return process

    def validate_soon(self, job_id: str) -> None:
        assert self.validator is not None, "start() first"
        self.validator.submit(job_id)

    # --- crashes ---------------------------------------------------------------------------------
    def _watch_loop(self) -> None:
        """Every second: a dead worker's job and comparison are recovered, and it is replaced.
        A fault here (a locked database) is logged and retried, never the end of the watch."""
        while not self._stopping.wait(1.0):
            try:
                self._replace_dead_workers()
            except Exception:
                log.exception("watching the workers failed; retrying")

    def _replace_dead_workers(self) -> None:
        from tunesmith.jobs.recovery import runner_died, task_runner_died

        assert self.store is not None
        for i, process in enumerate(self.processes):
            if process.is_alive() or self._stopping.is_set():
                continue
            dead = Runner(process.pid or 0, Runner.here().host)
            why = f"its training process exited with code {process.exitcode}"
            for job in self.store.jobs.held():
                if job.runner == dead:
                    runner_died(self.store, job.id, dead, why)
            for tasks in self.store.tasks.values():
                for row in tasks.held():
                    if row.runner == dead:
                        task_runner_died(tasks, row.id, dead)
            self.processes[i] = self._spawn()

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
        if self.validator is not None:
            self.validator.close()
        if self.store is not None:
            self.store.close()
