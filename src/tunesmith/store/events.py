"""Job events: OpenAI's message texts, and metrics events carrying per-step numbers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tunesmith.ids import new_id
from tunesmith.store.db import dumps, loads
from tunesmith.store.pages import Page, newest_first

if TYPE_CHECKING:
    from tunesmith.store.db import Store

Level = Literal["info", "warn", "error"]


@dataclass
class EventRow:
    seq: int
    id: str
    job_id: str
    created_at: int
    level: str
    message: str
    type: str
    data: dict | None

    @classmethod
    def from_row(cls, row) -> EventRow:
        data = dict(row)
        data["data"] = loads(data["data"])
        return cls(**data)

    def to_openai(self) -> dict:
        return {
            "object": "fine_tuning.job.event",
            "id": self.id,
            "created_at": self.created_at,
            "level": self.level,
            "message": self.message,
            "type": self.type,
            "data": self.data if self.data is not None else {},
        }


class Events:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(
        self,
        job_id: str,
        message: str,
        *,
        level: Level = "info",
        type: Literal["message", "metrics"] = "message",
        data: dict | None = None,
    ) -> None:
        self.store.execute(
            "INSERT INTO events (id, job_id, created_at, level, message, type, data) "
            "VALUES (?,?,?,?,?,?,?)",
            [new_id("ftevent-"), job_id, int(time.time()), level, message, type, dumps(data or {})],
        )

    def list(self, job_id: str, *, after: str | None = None, limit: int = 20) -> Page[EventRow]:
        return newest_first(
            self.store, "events", "job_id = ?", [job_id], after=after, limit=limit,
            build=EventRow.from_row,
        )  # fmt: skip

    def since(self, job_id: str, seq: int = 0) -> list[EventRow]:
        """Events after a sequence number, oldest first: for following a job live."""
        rows = self.store.query(
            "SELECT * FROM events WHERE job_id = ? AND seq > ? ORDER BY seq ASC", [job_id, seq]
        )
        return [EventRow.from_row(r) for r in rows]

    def metrics(self, job_id: str) -> list[dict]:
        """Every metrics event's data, oldest first: the curves."""
        rows = self.store.query(
            "SELECT data FROM events WHERE job_id = ? AND type = 'metrics' ORDER BY seq ASC",
            [job_id],
        )
        return [loads(r["data"]) for r in rows]
