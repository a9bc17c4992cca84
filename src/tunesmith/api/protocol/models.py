"""Models API schemas: a model, the list of them, and the deletion result."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tunesmith.api.protocol.common import Deleted


class Model(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(description="A built-in name, or ft:BASE:ORG:SUFFIX:ID[:ckpt-step-N].")
    object: Literal["model"] = "model"
    created: int = Field(description="Unix seconds.")
    owned_by: str


class ModelList(BaseModel):
    """Never paged: the SDK reads it as one page, so there is no has_more."""

    object: Literal["list"] = "list"
    data: list[Model]


class ModelDeleted(Deleted):
    object: Literal["model"] = "model"
