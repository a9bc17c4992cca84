"""Cursor pagination the way OpenAI's lists work: newest first, `after` is exclusive."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tunesmith.errors import NotFoundError

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    data: list[T]
    has_more: bool


def newest_first(
    store,
    table: str,
    where: str,
    params: list,
    *,
    after: str | None,
    limit: int,
    build: Callable[..., T],
) -> Page[T]:
    """Rows of `table` matching `where`, newest first, strictly after the row with id `after`."""
    if after is not None:
        found = store.query(f"SELECT seq FROM {table} WHERE id = ?", [after])
        if not found:
            raise NotFoundError(f"No item with id {after!r} to page after.", param="after")
        where = f"({where}) AND seq < ?"
        params = [*params, found[0]["seq"]]
    rows = store.query(
        f"SELECT * FROM {table} WHERE {where} ORDER BY seq DESC LIMIT ?", [*params, limit + 1]
    )
    return Page(data=[build(row) for row in rows[:limit]], has_more=len(rows) > limit)
