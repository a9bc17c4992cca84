"""Recovery after a runner dies, retry limits, and the store audit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunesmith.jobs.recovery import (
    MAX_ATTEMPTS,
    audit,
    recover,
    runner_died,
    task_runner_died,
)
from tunesmith.models.spec import ModelSpec
from tunesmith.processes import pid_alive
from tunesmith.store import open_store
from tunesmith.store.lifecycle import Runner

METHOD = {"type": "supervised", "supervised": {"hyperparameters": {}}}


def dead_runner() -> Runner:
    """A real pid on this host that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return Runner(child.pid, Runner.here().host)


def running_job(store, runner: Runner) -> str:
    job = store.jobs.create(
        model="m", training_file="file-t", validation_file=None, suffix=None, seed=1,
        metadata=None, method=METHOD, config={},
    )  # fmt: skip
    store.jobs.move(job.id, "queued")
    store.jobs.claim(job.id, runner, only_from={"queued"})
    return job.id


def test_a_job_whose_runner_dies_is_retried_then_failed():
    store = open_store()
    job_id = running_job(store, A := Runner(7, "h"))
    for attempt in range(1, MAX_ATTEMPTS):
        runner_died(store, job_id, A, "its worker was killed")
        job = store.jobs.get(job_id)
        assert (job.status, job.attempts, job.worker_pid) == ("queued", attempt, None)
        store.jobs.claim(job_id, A, only_from={"queued"})
    runner_died(store, job_id, A, "its worker was killed")
    job = store.jobs.get(job_id)
    assert (job.status, job.error["code"], job.worker_pid) == ("failed", "worker_crashed", None)
    events = [e.message for e in store.events.list(job_id, limit=50).data]
    assert sum("it continues from the start" in m for m in events) == MAX_ATTEMPTS - 1


def test_a_dead_runner_of_a_cancelled_job_only_gives_its_lease_back():
    store = open_store()
    job_id = running_job(store, A := Runner(7, "h"))
    store.jobs.move(job_id, "cancelled")
    runner_died(store, job_id, A, "gone")
    job = store.jobs.get(job_id)
    assert (job.status, job.worker_pid, job.attempts) == ("cancelled", None, 0)


def test_recover_handles_dead_runners_on_this_host_only():
    store = open_store()
    dead, elsewhere = dead_runner(), Runner(os.getpid(), "another-host")
    mine = running_job(store, dead)
    theirs = running_job(store, elsewhere)  # its pid may be alive there: never stolen
    recover(store)
    assert store.jobs.get(mine).status == "queued"
    assert store.jobs.get(theirs).runner == elsewhere


def test_a_comparison_whose_worker_dies_runs_again_then_fails():
    store = open_store()
    cmp = store.comparisons
    row = cmp.create({"train": "t", "test": "t"})
    A = Runner(9, "h")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert cmp.claim_next(A).id == row.id
        task_runner_died(cmp, row.id, A)
        status = cmp.get(row.id).status
        assert status == ("queued" if attempt < MAX_ATTEMPTS else "failed"), attempt
    assert cmp.claim_next(A) is None  # it no longer loops
    assert cmp.get(row.id).error["code"] == "worker_crashed"


def test_audit_finds_what_a_dead_runner_left_and_recovery_removes_it(tunesmith_home):
    store = open_store()
    dead = dead_runner()
    job_id = running_job(store, dead)
    run_dir = Path(store.jobs.get(job_id).run_dir)
    (run_dir / "checkpoints" / "checkpoint-3").mkdir(parents=True)  # a save cut off
    (run_dir / ".model-abc").mkdir()
    half = store.settings.files_dir / ".file-x.part"
    half.parent.mkdir(parents=True, exist_ok=True)
    half.write_bytes(b"half")
    os.utime(half, (time.time() - 3600, time.time() - 3600))
    store.jobs.update(job_id, fine_tuned_model="ft:m:local::x")
    incomplete = tunesmith_home / "empty-adapter"
    incomplete.mkdir()
    store.models.register(
        ModelSpec(name="ft:m:local::x", kind="fine-tuned", base="m", weights="m",
                  adapter=incomplete),
        job_id,
    )  # fmt: skip
    problems = audit(store)
    assert any("held by dead pid" in p for p in problems)
    assert any("incomplete folder" in p for p in problems)
    assert any("half-written upload" in p for p in problems)
    assert any("is running but its final model is callable" in p for p in problems)

    store.models.delete("ft:m:local::x")
    recover(store)
    assert audit(store) == []
    assert not (run_dir / ".model-abc").exists() and not half.exists()
    assert not (run_dir / "checkpoints" / "checkpoint-3").exists()


@pytest.mark.parametrize("status", ["validating_files", "queued"])
def test_recover_returns_jobs_to_validate_again(status):
    store = open_store()
    job = store.jobs.create(
        model="m", training_file="file-t", validation_file=None, suffix=None, seed=1,
        metadata=None, method=METHOD, config={},
    )  # fmt: skip
    if status == "queued":
        store.jobs.move(job.id, "queued")
    assert recover(store) == ([job.id] if status == "validating_files" else [])


def test_a_fault_while_watching_workers_is_retried_not_the_end_of_the_watch(monkeypatch):
    """One "database is locked" used to stop the supervisor's crash recovery silently."""
    import sqlite3
    import threading

    from tunesmith.jobs.worker import Supervisor
    from tunesmith.settings import get_settings

    supervisor = Supervisor(get_settings(), workers=0)
    calls, recovered = [], threading.Event()

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        recovered.set()

    monkeypatch.setattr(supervisor, "_replace_dead_workers", flaky)
    watch = threading.Thread(target=supervisor._watch_loop, daemon=True)
    watch.start()
    try:
        assert recovered.wait(timeout=10) and watch.is_alive()
    finally:
        supervisor._stopping.set()
        watch.join(timeout=5)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombies are read from /proc")
def test_a_dead_unreaped_worker_is_not_alive() -> None:
    """A killed server's worker is reparented to pid 1, which in a container may never reap it:
    still signalable, it must count as dead, or recovery waits for it forever."""
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().split(")")[-1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        os.kill(child.pid, 0)  # signalable: the old check called it alive
        assert not pid_alive(child.pid)
    finally:
        child.wait()
    assert pid_alive(os.getpid())
