"""Fine-tuning jobs: rows, pages, and the only code that changes a job's status (see states.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunesmith.errors import NotFoundError, TunesmithError
from tunesmith.ids import new_id
from tunesmith.store.db import dumps, loads
from tunesmith.store.lifecycle import Lifecycle, Runner, assignments
from tunesmith.store.pages import Page, newest_first
from tunesmith.store.states import JOB_FINAL, JOB_MOVES, JobStatus

if TYPE_CHECKING:
    from tunesmith.models.spec import ModelSpec
    from tunesmith.store.db import Store


@dataclass
class JobRow:
    seq: int
    id: str
    created_at: int
    model: str
    training_file: str
    validation_file: str | None
    suffix: str | None
    seed: int
    metadata: dict | None
    method: dict
    config: dict
    status: str
    error: dict | None
    fine_tuned_model: str | None
    finished_at: int | None
    trained_tokens: int | None
    result_files: list[str]
    estimated_finish: int | None
    run_dir: str
    data_hash: str | None
    worker_pid: int | None
    control: str | None
    runner_host: str | None
    attempts: int
    heartbeat_at: int | None  # when its runner last renewed its lease (lifecycle.py)

    @property
    def runner(self) -> Runner | None:
        if self.worker_pid is None:
            return None
        return Runner(self.worker_pid, self.runner_host or socket.gethostname())

    @classmethod
    def from_row(cls, row) -> JobRow:
        data = dict(row)
        for key in ("metadata", "method", "config", "error", "result_files"):
            data[key] = loads(data[key])
        return cls(**data)

    @property
    def hyperparameters(self) -> dict:
        kind = self.method["type"]
        return self.method.get(kind, {}).get("hyperparameters", {})

    def to_openai(self, org: str) -> dict:
        return {
            "id": self.id,
            "object": "fine_tuning.job",
            "created_at": self.created_at,
            "error": self.error,
            "fine_tuned_model": self.fine_tuned_model if self.status == "succeeded" else None,
            "finished_at": self.finished_at,
            "hyperparameters": self.hyperparameters,
            "model": self.model,
            "organization_id": org,
            "result_files": self.result_files,
            "seed": self.seed,
            "status": self.status,
            "trained_tokens": self.trained_tokens,
            "training_file": self.training_file,
            "validation_file": self.validation_file,
            "estimated_finish": self.estimated_finish if self.status == "running" else None,
            "integrations": [],
            "metadata": self.metadata,
            "method": self.method,
            "user_provided_suffix": self.suffix,
        }


class Jobs:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.lifecycle = Lifecycle(store, "jobs", JOB_MOVES, JOB_FINAL, "Job")

    def create(
        self,
        *,
        model: str,
        training_file: str,
        validation_file: str | None,
        suffix: str | None,
        seed: int,
        metadata: dict | None,
        method: dict,
        config: dict,
    ) -> JobRow:
        """A new job, always in `validating_files`: the lifecycle starts there."""
        job_id = new_id("ftjob-")
        run_dir = self.store.settings.runs_dir / job_id
        self.store.execute(
            "INSERT INTO jobs (id, created_at, model, training_file, validation_file, suffix, seed,"
            " metadata, method, config, status, run_dir) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                job_id, int(time.time()), model, training_file, validation_file, suffix, seed,
                dumps(metadata), dumps(method), dumps(config), "validating_files", str(run_dir),
            ],
        )  # fmt: skip
        return self.get(job_id)

    def get(self, job_id: str) -> JobRow:
        rows = self.store.query("SELECT * FROM jobs WHERE id = ?", [job_id])
        if not rows:
            raise NotFoundError(
                f"No fine-tuning job {job_id!r}.",
                "`tunesmith jobs list` shows the jobs in this home folder.",
                param="fine_tuning_job_id",
                code="fine_tuning_job_not_found",
            )
        return JobRow.from_row(rows[0])

    def list(
        self, *, after: str | None = None, limit: int = 20, metadata: dict[str, str] | None = None
    ) -> Page[JobRow]:
        where, params = "1=1", []
        for key, value in (metadata or {}).items():
            # json_each, not json_extract: a key like "git.sha" is a key, not a JSON path.
            pairs = self.store.dialect.json_pairs("metadata")
            where += f" AND EXISTS (SELECT 1 FROM {pairs} WHERE key = ? AND value = ?)"
            params += [key, value]
        return newest_first(
            self.store, "jobs", where, params, after=after, limit=limit, build=JobRow.from_row
        )

    def update(self, job_id: str, **fields: Any) -> JobRow:
        """Set columns other than the status (which only the lifecycle changes)."""
        if "status" in fields:
            raise ValueError("a job's status changes only through Jobs.move")
        if fields:
            names, values = assignments(fields)
            self.store.execute(f"UPDATE jobs SET {names} WHERE id = ?", [*values, job_id])
        return self.get(job_id)

    def move(
        self, job_id: str, to: JobStatus, *, only_from: Iterable[str] | None = None, **fields: Any
    ) -> JobRow:
        """Move a job to `to` from a status the lifecycle table allows (narrowed to `only_from`);
        an illegal move, or one that lost a race, raises invalid_job_state."""
        if not self.lifecycle.move(job_id, to, only_from=only_from, **fields):
            self.get(job_id)  # 404 first
            raise self.lifecycle.refused(job_id, to, "fine_tuning_job_id")
        return self.get(job_id)

    def claim(self, job_id: str, runner: Runner, *, only_from: Iterable[str]) -> JobRow:
        """Run the job here: move it to running under this runner's lease."""
        # The error of an earlier try goes in the same move: a resumed job is not failed.
        if not self.lifecycle.claim(job_id, runner, only_from=only_from, error=None):
            job = self.get(job_id)
            held = f", run by pid {job.worker_pid} on {job.runner_host}" if job.worker_pid else ""
            raise TunesmithError(
                f"Job {job_id} is {job.status}{held}; it cannot be run here now.",
                "Wait until its runner stops (`tunesmith jobs get` shows it), then try again.",
                param="fine_tuning_job_id",
                code="invalid_job_state",
            )
        return self.get(job_id)

    def claim_next(self, runner: Runner) -> JobRow | None:
        job_id = self.lifecycle.claim_next(runner)
        return self.get(job_id) if job_id else None

    def release(self, job_id: str, runner: Runner) -> bool:
        return self.lifecycle.release(job_id, runner)

    def beat(self, job_id: str, runner: Runner) -> bool:
        return self.lifecycle.beat(job_id, runner)

    def succeed(
        self, job_id: str, model: ModelSpec, *, held_by: Runner | None = None, **fields: Any
    ) -> JobRow:
        """Register the final model and mark the job succeeded, in one transaction: a job that was
        cancelled or paused meanwhile (in its last step or final save) registers nothing; nor
        does one whose lease `held_by` lost (recovered elsewhere after a missed heartbeat)."""
        with self.store.transaction():
            moved = self.lifecycle.move(
                job_id, "succeeded", only_from={"running"}, held_by=held_by, **fields
            )
            if not moved:
                raise self.lifecycle.refused(job_id, "succeeded", "fine_tuning_job_id")
            self.store.models.register(model, job_id)
        return self.get(job_id)

    def held(self) -> list[JobRow]:
        """Jobs some runner holds a lease on."""
        rows = self.store.query("SELECT * FROM jobs WHERE worker_pid IS NOT NULL ORDER BY seq")
        return [JobRow.from_row(r) for r in rows]

    def with_status(self, *statuses: str) -> list[JobRow]:
        if not statuses:  # PostgreSQL refuses an empty `IN ()`
            return []
        marks = ",".join("?" * len(statuses))
        rows = self.store.query(
            f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY seq ASC", list(statuses)
        )
        return [JobRow.from_row(r) for r in rows]
