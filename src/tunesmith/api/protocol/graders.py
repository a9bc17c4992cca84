"""The graders resource (OpenAI's fine_tuning.alpha.graders): run a grader on one sample, or
check one. Graders arrive as plain JSON and are parsed by graders.spec, whose errors name the
field's full path (`grader.graders.b.operation`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tunesmith.api.protocol.common import OpenAIRequest


class GraderRunRequest(OpenAIRequest):
    grader: dict[str, Any] = Field(description="The grader: string_check, text_similarity, ...")
    model_sample: str = Field(description="The model's output: `sample.output_text` (and JSON).")
    item: Any = Field(default=None, description="The dataset row: the `item` namespace.")


class GraderValidateRequest(OpenAIRequest):
    grader: dict[str, Any]


class RunErrors(BaseModel):
    """OpenAI's metadata.errors: every flag always present."""

    formula_parse_error: bool
    invalid_variable_error: bool
    model_grader_parse_error: bool
    model_grader_refusal_error: bool
    model_grader_server_error: bool
    model_grader_server_error_details: str | None = None
    other_error: bool
    python_grader_runtime_error: bool
    python_grader_runtime_error_details: str | None = None
    python_grader_server_error: bool
    python_grader_server_error_type: str | None = None
    sample_parse_error: bool
    truncated_observation_error: bool
    unresponsive_reward_error: bool


class RunMetadata(BaseModel):
    name: str
    type: str
    errors: RunErrors
    execution_time: float
    scores: dict[str, Any]
    token_usage: int | None = None
    sampled_model_name: str | None = None


class GraderRunResponse(BaseModel):
    reward: float
    metadata: RunMetadata
    sub_rewards: dict[str, Any]
    model_grader_token_usage_per_model: dict[str, Any]


class GraderValidateResponse(BaseModel):
    grader: dict[str, Any]
