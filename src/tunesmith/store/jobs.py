"""Fine-tuning jobs and their lifecycle: validating_files → queued → running → a final state."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tunesmith.errors import NotFoundError, TunesmithError
from tunesmith.ids import new_id
from tunesmith.store.db import dumps, loads
from tunesmith.store.pages import Page, newest_first

if TYPE_CHECKING:
    from tunesmith.store.db import Store

Status = Literal[
    "validating_files", "queued", "running", "succeeded", "failed", "cancelled", "paused"
]
FINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE: frozenset[str] = frozenset({"validating_files", "queued", "running", "paused"})


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
        status: Status = "validating_files",
    ) -> JobRow:
        job_id = new_id("ftjob-")
        run_dir = self.store.settings.runs_dir / job_id
        self.store.execute(
            "INSERT INTO jobs (id, created_at, model, training_file, validation_file, suffix, seed,"
            " metadata, method, config, status, run_dir) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                job_id, int(time.time()), model, training_file, validation_file, suffix, seed,
                dumps(metadata), dumps(method), dumps(config), status, str(run_dir),
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
            where += " AND EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = ? AND value = ?)"
            params += [key, value]
        return newest_first(
            self.store, "jobs", where, params, after=after, limit=limit, build=JobRow.from_row
        )

    def update(self, job_id: str, **fields: Any) -> JobRow:
        """Set columns; dict and list values are stored as JSON."""
        if fields:
            names = ", ".join(f"{k} = ?" for k in fields)
            values = [dumps(v) if isinstance(v, dict | list) else v for v in fields.values()]
            self.store.execute(f"UPDATE jobs SET {names} WHERE id = ?", [*values, job_id])
        return self.get(job_id)

    def transition(
        self, job_id: str, to: Status, *, allowed_from: set[str], **fields: Any
    ) -> JobRow:
        """Move a job to `to` only from one of `allowed_from`, atomically against other processes."""
        names = "".join(f", {k} = ?" for k in fields)
        values = [dumps(v) if isinstance(v, dict | list) else v for v in fields.values()]
        marks = ",".join("?" * len(allowed_from))
        if to in FINAL and "finished_at" not in fields:
            names += ", finished_at = ?"
            values.append(int(time.time()))
        changed = self.store.execute(
            f"UPDATE jobs SET status = ?{names} WHERE id = ? AND status IN ({marks})",
            [to, *values, job_id, *sorted(allowed_from)],
        )
        job = self.get(job_id)
        if not changed:
            raise TunesmithError(
                f"Job {job_id} is {job.status}; it cannot become {to}.",
                param="fine_tuning_job_id",
                code="invalid_job_state",
            )
        return job

    def claim_next(self, worker_pid: int) -> JobRow | None:
        """Take the oldest queued job for one worker; a second worker never gets the same job."""
        with self.store.transaction() as conn:
            row = conn.execute(
                "SELECT id FROM jobs WHERE status = 'queued' ORDER BY seq ASC LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET status = 'running', worker_pid = ? WHERE id = ?",
                [worker_pid, row["id"]],
            )
        return self.get(row["id"])

    def with_status(self, *statuses: str) -> list[JobRow]:
        marks = ",".join("?" * len(statuses))
        rows = self.store.query(
            f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY seq ASC", list(statuses)
        )
        return [JobRow.from_row(r) for r in rows]
