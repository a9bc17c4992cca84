"""The comparison resource (a tunesmith extension): `tunesmith compare` run as a job."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunesmith.api.protocol.common import OpenAIRequest


class ComparisonCreate(OpenAIRequest):
    training_file: str = Field(description="File id (purpose fine-tune): the demonstrations' pool.")
    test_file: str = Field(description="File id of the held-out examples.")
    model: str = "smollm2-135m-instruct"
    fine_tuned_model: str | None = None
    train_now: bool = False
    shots: int = Field(default=3, ge=0, le=32)
    metric: Literal["auto", "exact", "json-fields", "set-f1", "rouge-l", "label-accuracy"] = "auto"
    limit: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    probes: bool = True
    seed: int = Field(default=0, ge=0)
