"""Comparisons run as jobs (lifecycle in states.py), with their events."""

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
from tunesmith.store.states import COMPARISON_FINAL, COMPARISON_MOVES

if TYPE_CHECKING:
    from tunesmith.store.db import Store


@dataclass
class ComparisonRow:
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

    @property
    def runner(self) -> Runner | None:
        return Runner(self.worker_pid, self.runner_host or "") if self.worker_pid else None

    @classmethod
    def from_row(cls, row) -> ComparisonRow:
        data = dict(row)
        for key in ("config", "result", "error"):
            data[key] = loads(data[key])
        return cls(**data)

    def to_api(self) -> dict:
        result = self.result or {}
        return {
            "id": self.id,
            "object": "comparison",
            "created_at": self.created_at,
            "status": self.status,
            "finished_at": self.finished_at,
            "config": self.config,
            "error": self.error,
            "recommendation": result.get("recommendation"),
            "result": result or None,
        }


class Comparisons:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.lifecycle = Lifecycle(
            store, "comparisons", COMPARISON_MOVES, COMPARISON_FINAL, "Comparison"
        )

    def create(self, config: dict) -> ComparisonRow:
        cmp_id = new_id("cmp_")
        out_dir = self.store.settings.root / "comparisons" / cmp_id
        self.store.execute(
            "INSERT INTO comparisons (id, created_at, status, config, out_dir) VALUES (?,?,?,?,?)",
            [cmp_id, int(time.time()), "queued", dumps(config), str(out_dir)],
        )
        self.event(cmp_id, f"Created comparison: {cmp_id}")
        return self.get(cmp_id)

    def get(self, cmp_id: str) -> ComparisonRow:
        rows = self.store.query("SELECT * FROM comparisons WHERE id = ?", [cmp_id])
        if not rows:
            raise NotFoundError(f"No comparison {cmp_id!r}.", param="comparison_id")
        return ComparisonRow.from_row(rows[0])

    def list(self, *, after: str | None = None, limit: int = 20) -> Page[ComparisonRow]:
        return newest_first(
            self.store, "comparisons", "1=1", [], after=after, limit=limit,
            build=ComparisonRow.from_row,
        )  # fmt: skip

    def claim_next(self, runner: Runner) -> ComparisonRow | None:
        cmp_id = self.lifecycle.claim_next(runner)
        return self.get(cmp_id) if cmp_id else None

    def move(
        self, cmp_id: str, to: str, *, only_from: Iterable[str] | None = None, **fields: Any
    ) -> ComparisonRow:
        """Move a comparison along its lifecycle (states.COMPARISON_MOVES), or raise."""
        if not self.lifecycle.move(cmp_id, to, only_from=only_from, **fields):
            self.get(cmp_id)  # 404 first
            raise self.lifecycle.refused(cmp_id, to, "comparison_id")
        return self.get(cmp_id)

    def finish(
        self, cmp_id: str, status: str, *, result: dict | None = None, error: dict | None = None
    ) -> ComparisonRow:
        return self.move(cmp_id, status, only_from={"running"}, result=result, error=error)

    def release(self, cmp_id: str, runner: Runner) -> bool:
        return self.lifecycle.release(cmp_id, runner)

    def delete(self, cmp_id: str) -> None:
        """Forget a comparison that has ended: its row, its events and its report folder."""
        row = self.get(cmp_id)
        if row.status not in COMPARISON_FINAL or row.worker_pid is not None:
            raise TunesmithError(
                f"Comparison {cmp_id} is {row.status}; only an ended one can be deleted.",
                "Cancel it first (POST /v1/comparisons/{id}/cancel), then delete it.",
                param="comparison_id",
                code="invalid_job_state",
            )
        with self.store.transaction():
            self.store.execute("DELETE FROM comparison_events WHERE comparison_id = ?", [cmp_id])
            self.store.execute("DELETE FROM comparisons WHERE id = ?", [cmp_id])
        shutil.rmtree(row.out_dir, ignore_errors=True)

    def held(self) -> list[ComparisonRow]:
        """Comparisons some runner holds a lease on."""
        rows = self.store.query("SELECT * FROM comparisons WHERE worker_pid IS NOT NULL")
        return [ComparisonRow.from_row(r) for r in rows]

    def with_status(self, *statuses: str) -> list[ComparisonRow]:
        marks = ",".join("?" * len(statuses))
        rows = self.store.query(
            f"SELECT * FROM comparisons WHERE status IN ({marks}) ORDER BY seq", list(statuses)
        )
        return [ComparisonRow.from_row(r) for r in rows]

    def event(
        self, cmp_id: str, message: str, *, level: str = "info", data: dict | None = None
    ) -> None:
        self.store.execute(
            "INSERT INTO comparison_events (id, comparison_id, created_at, level, message, data) "
            "VALUES (?,?,?,?,?,?)",
            [new_id("cmpevent-"), cmp_id, int(time.time()), level, message, dumps(data or {})],
        )

    def events(self, cmp_id: str, *, after: str | None = None, limit: int = 20) -> Page[dict]:
        def build(row) -> dict:
            return {
                "object": "comparison.event",
                "id": row["id"],
                "created_at": row["created_at"],
                "level": row["level"],
                "message": row["message"],
                "data": loads(row["data"]) or {},
            }

        return newest_first(
            self.store, "comparison_events", "comparison_id = ?", [cmp_id], after=after,
            limit=limit, build=build,
        )  # fmt: skip
