"""Pieces every resource shares: the lenient request base, list pages, deletion results."""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

log = logging.getLogger(__name__)


class OpenAIRequest(BaseModel):
    """Requests accept fields we do not know (OpenAI adds them often) and log them."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _log_unknown(self) -> OpenAIRequest:
        if self.model_extra:
            log.info("ignoring unknown request fields: %s", sorted(self.model_extra))
        return self


class ListPage(BaseModel):
    """A cursor page: `has_more` is always present, or the SDK asks for one more page."""

    object: Literal["list"] = "list"
    data: list[Any]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None


def page(items: list[dict], has_more: bool) -> dict:
    return {
        "object": "list",
        "data": items,
        "has_more": has_more,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
    }


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True
