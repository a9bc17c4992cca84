"""Models API schemas: a model, the list of them, and the deletion result."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tunesmith.api.protocol.common import Deleted


class ModelDetails(BaseModel):
    """A tunesmith extension: the facts `tunesmith models list` prints (the SDK ignores them)."""

    kind: str = Field(description="builtin, fine-tuned or checkpoint.")
    base_model: str | None = Field(description="What a fine-tuned model was trained from.")
    job: str | None = Field(description="The fine-tuning job that made it.")
    parameters: int | None = Field(description="Parameters; the adapter's own when adapter.")
    size_bytes: int | None = Field(description="Size on disk (None: its files are missing).")
    adapter: bool = Field(description="A LoRA adapter on the shared base weights.")
    default: bool = Field(description="The model tunesmith uses when none is named.")


class Model(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(description="A built-in name, or ft:BASE:ORG:SUFFIX:ID[:ckpt-step-N].")
    object: Literal["model"] = "model"
    created: int = Field(description="Unix seconds.")
    owned_by: str
    tunesmith: ModelDetails | None = None


class ModelList(BaseModel):
    """Never paged: the SDK reads it as one page, so there is no has_more."""

    object: Literal["list"] = "list"
    data: list[Model]


class ModelDeleted(Deleted):
    object: Literal["model"] = "model"
