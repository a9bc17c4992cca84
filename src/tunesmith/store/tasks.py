"""Background tasks that are not fine-tuning jobs, run by the same workers: comparisons and
exports. One repository for both, told apart by a `TaskKind` (their tables and names, as data);
their lifecycle is states.TASK_MOVES."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunesmith.errors import NotFoundError, TunesmithError
from tunesmith.ids import new_id
from tunesmith.store.db import dumps, loads
from tunesmith.store.lifecycle import Lifecycle, Runner
from tunesmith.store.pages import Page, newest_first
from tunesmith.store.states import TASK_FINAL, TASK_MOVES

if TYPE_CHECKING:
    from tunesmith.store.db import Store


@dataclass(frozen=True)
class TaskKind:
    """Where one kind of task lives and how it is named."""

    table: str  # "comparisons"
    events: str  # "comparison_events"
    owner: str  # the events' column naming their task: "comparison_id"
    prefix: str  # ids: "cmp_"
    event_prefix: str  # "cmpevent-"
    noun: str  # "Comparison", in messages
    object: str  # "comparison", in API objects
    folder: str  # under the home folder: "comparisons"


COMPARISON = TaskKind(
    "comparisons", "comparison_events", "comparison_id", "cmp_", "cmpevent-", "Comparison",
    "comparison", "comparisons",
)  # fmt: skip
EXPORT = TaskKind(
    "exports", "export_events", "export_id", "exp_", "expevent-", "Export", "export", "exports"
)


@dataclass
class TaskRow:
    seq: int
    id: str
    created_at: int
    status: str
    config: dict
    result: dict | None
    error: dict | None
    finished_at: int | None
    out_dir: str
    worker_pid: int | None
    runner_host: str | None
    attempts: int
    heartbeat_at: int | None  # when its runner last renewed its lease (lifecycle.py)

    @property
    def runner(self) -> Runner | None:
        return Runner(self.worker_pid, self.runner_host or "") if self.worker_pid else None

    @classmethod
    def from_row(cls, row) -> TaskRow:
        data = dict(row)
        for key in ("config", "result", "error"):
            data[key] = loads(data[key])
        return cls(**data)

    def to_api(self, kind: TaskKind) -> dict:
        return {
            "id": self.id,
            "object": kind.object,
            "created_at": self.created_at,
            "status": self.status,
            "finished_at": self.finished_at,
            "config": self.config,
            "error": self.error,
            "result": self.result,
        }


class Tasks:
    def __init__(self, store: Store, kind: TaskKind) -> None:
        self.store = store
        self.kind = kind
        self.lifecycle = Lifecycle(store, kind.table, TASK_MOVES, TASK_FINAL, kind.noun)

    def create(self, config: dict) -> TaskRow:
        k = self.kind
        task_id = new_id(k.prefix)
        out_dir = self.store.settings.root / k.folder / task_id
        self.store.execute(
            f"INSERT INTO {k.table} (id, created_at, status, config, out_dir) VALUES (?,?,?,?,?)",
            [task_id, int(time.time()), "queued", dumps(config), str(out_dir)],
        )
        self.event(task_id, f"Created {k.object}: {task_id}")
        return self.get(task_id)

    def get(self, task_id: str) -> TaskRow:
        rows = self.store.query(f"SELECT * FROM {self.kind.table} WHERE id = ?", [task_id])
        if not rows:
            raise NotFoundError(f"No {self.kind.object} {task_id!r}.", param=self.kind.owner)
        return TaskRow.from_row(rows[0])

    def list(self, *, after: str | None = None, limit: int = 20) -> Page[TaskRow]:
        return newest_first(
            self.store, self.kind.table, "1=1", [], after=after, limit=limit,
            build=TaskRow.from_row,
        )  # fmt: skip

    def claim_next(self, runner: Runner) -> TaskRow | None:
        task_id = self.lifecycle.claim_next(runner)
        return self.get(task_id) if task_id else None

    def move(
        self, task_id: str, to: str, *, only_from: Iterable[str] | None = None, **fields: Any
    ) -> TaskRow:
        """Move a task along its lifecycle (states.TASK_MOVES), or raise."""
        if not self.lifecycle.move(task_id, to, only_from=only_from, **fields):
            self.get(task_id)  # 404 first
            raise self.lifecycle.refused(task_id, to, self.kind.owner)
        return self.get(task_id)

    def finish(
        self, task_id: str, status: str, *, result: dict | None = None, error: dict | None = None
    ) -> TaskRow:
        return self.move(task_id, status, only_from={"running"}, result=result, error=error)

    def release(self, task_id: str, runner: Runner) -> bool:
        return self.lifecycle.release(task_id, runner)

    def beat(self, task_id: str, runner: Runner) -> bool:
        return self.lifecycle.beat(task_id, runner)

    def delete(self, task_id: str) -> None:
        """Forget a task that has ended: its row, its events and its folder."""
        k, row = self.kind, self.get(task_id)
        if row.status not in TASK_FINAL or row.worker_pid is not None:
            raise TunesmithError(
                f"{k.noun} {task_id} is {row.status}; only an ended one can be deleted.",
                f"Cancel it first (POST /v1/{k.table}/{{id}}/cancel), then delete it.",
                param=k.owner,
                code="invalid_job_state",
            )
        with self.store.transaction():
            self.store.execute(f"DELETE FROM {k.events} WHERE {k.owner} = ?", [task_id])
            self.store.execute(f"DELETE FROM {k.table} WHERE id = ?", [task_id])
        shutil.rmtree(row.out_dir, ignore_errors=True)

    def held(self) -> list[TaskRow]:
        """Tasks some runner holds a lease on."""
        rows = self.store.query(f"SELECT * FROM {self.kind.table} WHERE worker_pid IS NOT NULL")
        return [TaskRow.from_row(r) for r in rows]

    def with_status(self, *statuses: str) -> list[TaskRow]:
        if not statuses:  # PostgreSQL refuses an empty `IN ()`
            return []
        marks = ",".join("?" * len(statuses))
        rows = self.store.query(
            f"SELECT * FROM {self.kind.table} WHERE status IN ({marks}) ORDER BY seq",
            list(statuses),
        )
        return [TaskRow.from_row(r) for r in rows]

    def event(
        self, task_id: str, message: str, *, level: str = "info", data: dict | None = None
    ) -> None:
        k = self.kind
        self.store.execute(
            f"INSERT INTO {k.events} (id, {k.owner}, created_at, level, message, data) "
            "VALUES (?,?,?,?,?,?)",
            [new_id(k.event_prefix), task_id, int(time.time()), level, message, dumps(data or {})],
        )

    def events(self, task_id: str, *, after: str | None = None, limit: int = 20) -> Page[dict]:
        def build(row) -> dict:
            return {
                "object": f"{self.kind.object}.event",
                "id": row["id"],
                "created_at": row["created_at"],
                "level": row["level"],
                "message": row["message"],
                "data": loads(row["data"]) or {},
            }

        return newest_first(
            self.store, self.kind.events, f"{self.kind.owner} = ?", [task_id], after=after,
            limit=limit, build=build,
        )  # fmt: skip
