"""After a crash: jobs and comparisons whose runner died are continued, retried or failed, and
whatever a dead runner left half-written is removed. `audit` checks that a store is consistent.

A runner is known dead on its own host when its pid is gone. A pid means nothing on another host
(a store shared through PostgreSQL), so there a runner is dead only once its lease ran out: its
heartbeat (store/lifecycle.py) is older than TUNESMITH_LEASE_SECONDS. A runner that is merely
slow keeps beating from its own thread, so its job is never taken from it.
"""

from __future__ import annotations

import logging
import shutil
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.processes import pid_alive
from tunesmith.store.lifecycle import Runner, lease_expired
from tunesmith.store.states import JOB_STATUSES, TASK_STATUSES
from tunesmith.train import events as ev

if TYPE_CHECKING:
    from tunesmith.store import Store
    from tunesmith.store.jobs import JobRow
    from tunesmith.store.tasks import TaskRow, Tasks

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3  # a job or comparison that kills its runner this often (out of memory) fails
PART_FILE_IDLE_SECONDS = 60  # an upload still arriving writes more often than this


def gone(
    runner: Runner | None, heartbeat_at: int | None = None, lease_seconds: float | None = None
) -> bool:
    """True only for a runner known to have died: on this host, with its pid gone; on another
    host, with its lease (renewed by heartbeats) older than `lease_seconds`."""
    if runner is None:
        return False
    if runner.host == socket.gethostname():
        return not pid_alive(runner.pid)
    return lease_seconds is not None and lease_expired(heartbeat_at, lease_seconds)


def dead(store: Store, row: JobRow | TaskRow) -> bool:
    """Whether the runner holding a job or task is known to be gone (see `gone`)."""
    return gone(row.runner, row.heartbeat_at, store.settings.lease_seconds)


def free_if_dead(store: Store, job: JobRow) -> None:
    """Give back the lease of a job whose runner died, continuing or failing it if it was running."""
    if dead(store, job):
        runner_died(store, job.id, job.runner, "the process running it stopped")


def runner_died(store: Store, job_id: str, runner: Runner, why: str) -> None:
    """`runner` is gone. A running job goes back to the queue (from its last checkpoint, or from
    the start) while attempts remain, else fails; any other status just loses the lease."""
    job = store.jobs.get(job_id)
    if job.runner != runner:
        return  # another runner took it meanwhile
    clean_run_folder(store, job)
    if job.status == "running":
        latest = store.checkpoints.latest(job_id)
        if job.attempts + 1 >= MAX_ATTEMPTS:
            message = f"{why}, {job.attempts + 1} times; the job is not retried again"
            if store.jobs.lifecycle.move(
                job_id, "failed", only_from={"running"},
                error={"code": "worker_crashed", "message": message, "param": None},
            ):  # fmt: skip
                store.events.add(job_id, ev.FAILED.format(reason=message), level="error")
        elif store.jobs.lifecycle.move(
            job_id, "queued", only_from={"running"}, attempts=job.attempts + 1
        ):
            where = f"the checkpoint at step {latest.step_number}" if latest else "the start"
            store.events.add(job_id, f"{why.capitalize()}; it continues from {where}", level="warn")
    store.jobs.release(job_id, runner)


def clean_run_folder(store: Store, job: JobRow) -> None:
    """Remove what a runner that died mid-write left: checkpoint folders that were never
    registered, and temporary model folders."""
    run_dir = Path(job.run_dir)
    store.checkpoints.prune(job.id, run_dir)
    for tmp in run_dir.glob(".model-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def recover(store: Store) -> list[str]:
    """At server start: every job and task held by a dead runner (`reclaim`) is handled, and
    half-written uploads are removed; returns the jobs still waiting for validation (to check
    again)."""
    reclaim(store)
    _remove_stale_parts(store)
    return [job.id for job in store.jobs.with_status("validating_files")]


def reclaim(store: Store) -> int:
    """Hand every job and task whose runner is dead (a gone pid here, an expired lease on another
    host) to `runner_died`; returns how many. Cheap enough to call every few seconds, which a
    server sharing its store with other hosts must do: their crashes have no one else to notice."""
    me, handled = Runner.here(), 0
    for job in store.jobs.held():
        if job.runner != me and dead(store, job):
            where = "" if job.runner.host == me.host else f" on {job.runner.host}"
            runner_died(store, job.id, job.runner, f"the process running this job{where} stopped")
            handled += 1
    for tasks in store.tasks.values():
        for row in tasks.held():
            if row.runner != me and dead(store, row):
                task_runner_died(tasks, row.id, row.runner)
                handled += 1
    return handled


def task_runner_died(tasks: Tasks, task_id: str, runner: Runner) -> None:
    """Comparisons and exports have no checkpoints: run again while attempts remain, else fail."""
    row, noun = tasks.get(task_id), tasks.kind.noun
    if row.runner != runner:
        return
    if row.status == "running":
        if row.attempts + 1 >= MAX_ATTEMPTS:
            message = f"its worker stopped {row.attempts + 1} times; it is not run again"
            error = {"code": "worker_crashed", "message": message}
            if tasks.lifecycle.move(task_id, "failed", only_from={"running"}, error=error):
                tasks.event(task_id, f"{noun} failed: {message}", level="error")
        elif tasks.lifecycle.move(
            task_id, "queued", only_from={"running"}, attempts=row.attempts + 1
        ):
            tasks.event(
                task_id, f"The process running this {tasks.kind.object} stopped; it runs again"
            )
    tasks.release(task_id, runner)


def _remove_stale_parts(store: Store) -> None:
    """Uploads cut off by a crash leave hidden `.part` files; none of them is a file."""
    now = time.time()
    for part in store.settings.files_dir.glob(".*.part"):
        try:
            if now - part.stat().st_mtime > PART_FILE_IDLE_SECONDS:
                part.unlink()
        except FileNotFoundError:
            pass


# --- consistency ----------------------------------------------------------------------------------
def audit(store: Store) -> list[str]:
    """What is inconsistent in a store, as sentences; [] when all is well. A store is
    consistent when every job and comparison is in a status of its lifecycle and held by no dead
    runner, every registered model's folder is complete, and no run folder holds a half-written
    or unregistered model."""
    problems: list[str] = []
    known = {job.id: job for job in store.jobs.with_status(*JOB_STATUSES)}
    every = store.query("SELECT id, status FROM jobs")
    problems += [
        f"job {r['id']} has no status {r['status']!r}" for r in every if r["id"] not in known
    ]
    for job in known.values():
        problems += _job_problems(store, job)
    for tasks in store.tasks.values():
        for row in store.query(f"SELECT id, status, worker_pid FROM {tasks.kind.table}"):
            if row["status"] not in TASK_STATUSES:
                problems.append(f"{tasks.kind.object} {row['id']} has no status {row['status']!r}")
    for spec in store.models.list():
        folder = spec.adapter or Path(spec.weights)
        if not _complete(folder):
            problems.append(f"model {spec.name} points at an incomplete folder {folder}")
    runs = store.settings.runs_dir
    if runs.exists():
        problems += [
            f"run folder {d} belongs to no job" for d in runs.iterdir() if d.name not in known
        ]
    problems += [f"half-written upload {p}" for p in store.settings.files_dir.glob(".*.part")]
    return problems


def _job_problems(store: Store, job: JobRow) -> list[str]:
    problems = []
    if dead(store, job):
        problems.append(
            f"job {job.id} is {job.status}, held by dead pid {job.worker_pid} on {job.runner_host}"
        )
    if job.status == "succeeded" and store.models.get(job.fine_tuned_model or "") is None:
        problems.append(f"job {job.id} succeeded without a registered model")
    final = store.models.get(job.fine_tuned_model or "")
    if final is not None and job.status != "succeeded":
        problems.append(f"job {job.id} is {job.status} but its final model is callable")
    if job.worker_pid is None:  # a live runner may be writing them right now
        run_dir = Path(job.run_dir)
        unregistered = store.checkpoints.unregistered(job.id, run_dir)
        problems += [f"unregistered checkpoint folder {f}" for f in unregistered]
        problems += [f"temporary model folder {t}" for t in run_dir.glob(".model-*")]
    return problems


def _complete(folder: Path) -> bool:
    """A model folder a loader can use: a config (full model) or adapter config, and weights."""
    has_config = (folder / "config.json").exists() or (folder / "adapter_config.json").exists()
    return has_config and any(folder.glob("*.safetensors"))
