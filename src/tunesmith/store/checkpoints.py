"""Checkpoints of a job: one per epoch (and one where a run was stopped), each a callable model."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.ids import new_id
from tunesmith.store.db import dumps, loads
from tunesmith.store.pages import Page, newest_first

if TYPE_CHECKING:
    from tunesmith.models.spec import ModelSpec
    from tunesmith.store.db import Store


@dataclass
class CheckpointRow:
    seq: int
    id: str
    job_id: str
    created_at: int
    step_number: int
    model_name: str
    path: str
    metrics: dict

    @classmethod
    def from_row(cls, row) -> CheckpointRow:
        data = dict(row)
        data["metrics"] = loads(data["metrics"])
        return cls(**data)

    def to_openai(self) -> dict:
        return {
            "object": "fine_tuning.job.checkpoint",
            "id": self.id,
            "created_at": self.created_at,
            "fine_tuned_model_checkpoint": self.model_name,
            "fine_tuning_job_id": self.job_id,
            "step_number": self.step_number,
            "metrics": self.metrics,
        }


class Checkpoints:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, job_id: str, step: int, model_name: str, path: str, metrics: dict) -> None:
        """Record a checkpoint once: the same step saved again (a resumed run) is not a second."""
        self.store.execute(
            "INSERT INTO checkpoints (id, job_id, created_at, step_number, model_name, path, "
            "metrics) SELECT ?,?,?,?,?,?,? WHERE NOT EXISTS "
            "(SELECT 1 FROM checkpoints WHERE job_id = ? AND step_number = ?)",
            [
                new_id("ftckpt_"), job_id, int(time.time()), step, model_name, path,
                dumps(metrics), job_id, step,
            ],
        )  # fmt: skip

    def register(self, job_id: str, step: int, spec: ModelSpec, metrics: dict) -> None:
        """A checkpoint and its callable model land together or not at all."""
        with self.store.transaction():
            self.store.models.register(spec, job_id)
            self.add(job_id, step, spec.name, str(spec.adapter or spec.weights), metrics)

    def prune(self, job_id: str, run_dir: Path) -> None:
        """Remove checkpoint folders that were never registered: a save cut off half-way (a
        full disk, a killed process) must not look like a checkpoint to a resume."""
        for folder in self.unregistered(job_id, run_dir):
            shutil.rmtree(folder, ignore_errors=True)

    def unregistered(self, job_id: str, run_dir: Path) -> list[Path]:
        registered = {Path(c.path).name for c in self.list(job_id, limit=10_000).data}
        return [
            folder
            for folder in (run_dir / "checkpoints").glob("checkpoint-*")
            if folder.name not in registered
        ]

    def list(
        self, job_id: str, *, after: str | None = None, limit: int = 10
    ) -> Page[CheckpointRow]:
        return newest_first(
            self.store, "checkpoints", "job_id = ?", [job_id], after=after, limit=limit,
            build=CheckpointRow.from_row,
        )  # fmt: skip

    def latest(self, job_id: str) -> CheckpointRow | None:
        rows = self.store.query(
            "SELECT * FROM checkpoints WHERE job_id = ? ORDER BY step_number DESC LIMIT 1", [job_id]
        )
        return CheckpointRow.from_row(rows[0]) if rows else None
