"""Chat and text completion requests, in OpenAI's field order; unknown fields are ignored."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from tunesmith.api.protocol.common import OpenAIRequest

# OpenAI's bounds, so that a request refused there is refused here, before it reaches a batch.
MAX_STOPS = 4
MAX_STOP_CHARS = 256  # ours: a stop string is checked against the whole answer at every token
MAX_LOGIT_BIAS = 300
LOGIT_BIAS_RANGE = 100.0
SEED_RANGE = 2**63  # int64
MAX_PROMPTS = 64  # ours: each prompt is a row of the running batch (times n)
FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"  # also what tool-call guidance can always spell


def stop_list(value: str | list[str] | None) -> list[str]:
    """`stop` is a string or a list of up to 4; empty strings stop nothing."""
    stops = [value] if isinstance(value, str) else list(value or [])
    if len(stops) > MAX_STOPS:
        raise ValueError(f"at most {MAX_STOPS} stop sequences")
    if any(len(s) > MAX_STOP_CHARS for s in stops):
        raise ValueError(f"a stop sequence has at most {MAX_STOP_CHARS} characters")
    return [s for s in stops if s]


def logit_bias_map(value: dict[str, float] | None) -> dict[str, float] | None:
    """Token ids (as JSON object keys) to biases in [-100, 100], at most 300 of them. Whether an
    id is inside the model's vocabulary is checked once the model is known."""
    if value is None:
        return None
    if len(value) > MAX_LOGIT_BIAS:
        raise ValueError(f"at most {MAX_LOGIT_BIAS} entries")
    for key, bias in value.items():
        if not (key.isascii() and key.isdigit()):
            raise ValueError(f"keys are token ids (non-negative integers), not {key!r}")
        if not -LOGIT_BIAS_RANGE <= bias <= LOGIT_BIAS_RANGE:
            raise ValueError(f"biases are in [-100, 100]; token {key} has {bias}")
    return value


class FunctionSpec(BaseModel):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionSpec


class ToolChoiceFunction(BaseModel):
    name: str


class ToolChoiceNamed(BaseModel):
    type: Literal["function"] = "function"
    function: ToolChoiceFunction


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class FunctionCallParam(BaseModel):
    """A call an assistant made earlier in the conversation."""

    name: str
    arguments: str

    @field_validator("arguments", mode="before")
    @classmethod
    def _arguments_as_json(cls, value: Any) -> Any:
        # OpenAI sends JSON text; clients that build messages by hand often send the object.
        return json.dumps(value) if isinstance(value, dict | list) else value


class ToolCallParam(BaseModel):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCallParam


class ChatMessage(BaseModel):
    """Any of system, developer, user, assistant, tool (and legacy function) messages."""

    model_config = {"extra": "allow"}

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCallParam] | None = None
    tool_call_id: str | None = None
    function_call: FunctionCallParam | None = None

    @model_validator(mode="after")
    def _tool_result_names_its_call(self) -> ChatMessage:
        # As on OpenAI: a tool result answers one call, by id, with some content.
        if self.role == "tool" and (not self.tool_call_id or self.content is None):
            raise ValueError("a tool message needs tool_call_id and content")
        return self


class DecodingRequest(OpenAIRequest):
    """The sampling fields chat and text completions share."""

    model: str
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    n: int = Field(default=1, ge=1, le=16)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    seed: int | None = Field(default=None, ge=-SEED_RANGE, lt=SEED_RANGE)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: str | list[str] | None) -> list[str]:
        return stop_list(value)

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return logit_bias_map(value)


class ChatCompletionRequest(DecodingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    max_tokens: int | None = Field(default=None, ge=1, description="Deprecated; still sent.")
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceNamed | None = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="after")
    def _tool_choice_needs_tools(self) -> ChatCompletionRequest:
        if self.tool_choice not in (None, "none", "auto") and not self.tools:
            raise ValueError("tool_choice requires tools")
        if isinstance(self.tool_choice, ToolChoiceNamed) and self.tool_choice.function.name not in {
            t.function.name for t in self.tools or []
        }:
            raise ValueError(
                f"tool_choice names unknown function {self.tool_choice.function.name!r}"
            )
        return self


class CompletionRequest(DecodingRequest):
    # One prompt or a list; none empty (an empty prompt gives the model nothing to continue).
    prompt: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, max_length=MAX_PROMPTS)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)
    max_tokens: int = Field(default=16, ge=1)

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("logprobs")
    @classmethod
    def _no_prompt_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("echo"):
            # OpenAI then scores the prompt's tokens too; the engine computes the answer's only.
            raise ValueError(
                "logprobs with echo (log probabilities of the prompt) is not supported"
            )
        return value
