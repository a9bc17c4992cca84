"""Chat and text completion requests, in OpenAI's field order; unknown fields are ignored."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from tunesmith.api.protocol.common import OpenAIRequest


def stop_list(value: str | list[str] | None) -> list[str]:
    """`stop` is a string or a list of up to 4; empty strings stop nothing."""
    stops = [value] if isinstance(value, str) else list(value or [])
    if len(stops) > 4:
        raise ValueError("at most 4 stop sequences")
    return [s for s in stops if s]


class FunctionSpec(BaseModel):
    name: str
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


class ChatMessage(BaseModel):
    """Any of system, developer, user, assistant, tool (and legacy function) messages."""

    model_config = {"extra": "allow"}

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    function_call: dict[str, Any] | None = None


class DecodingRequest(OpenAIRequest):
    """The sampling fields chat and text completions share."""

    model: str
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    n: int = Field(default=1, ge=1, le=16)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    seed: int | None = None
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
    prompt: str | list[str]
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)
    max_tokens: int = Field(default=16, ge=1)
