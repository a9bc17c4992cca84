"""Comparisons run as jobs: queued → running → succeeded | failed | cancelled, with events."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunesmith.errors import NotFoundError, TunesmithError
from tunesmith.ids import new_id
from tunesmith.store.db import dumps, loads
from tunesmith.store.pages import Page, newest_first

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

    def claim_next(self, worker_pid: int) -> ComparisonRow | None:
        with self.store.transaction() as conn:
            row = conn.execute(
                "SELECT id FROM comparisons WHERE status = 'queued' ORDER BY seq ASC LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE comparisons SET status = 'running', worker_pid = ? WHERE id = ?",
                [worker_pid, row["id"]],
            )
        return self.get(row["id"])

    def finish(
        self, cmp_id: str, status: str, *, result: dict | None = None, error: dict | None = None
    ) -> ComparisonRow:
        changed = self.store.execute(
            "UPDATE comparisons SET status = ?, result = ?, error = ?, finished_at = ? "
            "WHERE id = ? AND status IN ('queued', 'running')",
            [status, dumps(result), dumps(error), int(time.time()), cmp_id],
        )
        row = self.get(cmp_id)
        if not changed:
            raise TunesmithError(
                f"Comparison {cmp_id} is {row.status} already.", code="invalid_state"
            )
        return row

    def with_status(self, status: str) -> list[ComparisonRow]:
        rows = self.store.query("SELECT * FROM comparisons WHERE status = ? ORDER BY seq", [status])
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
