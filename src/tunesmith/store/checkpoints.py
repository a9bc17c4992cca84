"""Checkpoints of a job: one per epoch (and one where a run was stopped), each a callable model."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunesmith.ids import new_id
from tunesmith.store.db import dumps, loads
from tunesmith.store.pages import Page, newest_first

if TYPE_CHECKING:
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
        self.store.execute(
            "INSERT INTO checkpoints (id, job_id, created_at, step_number, model_name, path, "
            "metrics) VALUES (?,?,?,?,?,?,?)",
            [new_id("ftckpt_"), job_id, int(time.time()), step, model_name, path, dumps(metrics)],
        )

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
