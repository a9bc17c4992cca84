"""The canonical records every reader produces: a chat conversation, a preference pair, a KTO
example, a reinforcement fine-tuning prompt, or plain text."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "developer", "user", "assistant", "tool"]


class FunctionCall(BaseModel):
    name: str
    arguments: str = Field(description="JSON text, as OpenAI sends it.")


class ToolCall(BaseModel):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    """One chat message in OpenAI's shape; content parts are flattened to text on read."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    weight: Literal[0, 1] | None = Field(
        default=None, description="On assistant messages: 0 keeps the turn out of the loss."
    )

    def to_openai(self) -> dict:
        return self.model_dump(exclude_none=True)


class Conversation(BaseModel):
    """One supervised example. `line` is where it came from (1-based), for error messages."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Message]
    tools: list[dict] | None = None
    parallel_tool_calls: bool | None = None
    line: int | None = Field(default=None, exclude=True)

    def to_openai(self) -> dict:
        """The canonical JSONL line: OpenAI's chat fine-tuning format."""
        out: dict = {"messages": [m.to_openai() for m in self.messages]}
        if self.tools:
            out["tools"] = self.tools
        if self.parallel_tool_calls is not None:
            out["parallel_tool_calls"] = self.parallel_tool_calls
        return out

    @property
    def prompt(self) -> list[Message]:
        """Every message before the last assistant turn: what a model is asked at test time."""
        last = max(i for i, m in enumerate(self.messages) if m.role == "assistant")
        return self.messages[:last]

    @property
    def answer(self) -> Message:
        """The last assistant turn: the reference answer at test time."""
        return next(m for m in reversed(self.messages) if m.role == "assistant")


class PreferencePair(BaseModel):
    """One DPO example in OpenAI's shape: a prompt and a preferred and a rejected answer."""

    model_config = ConfigDict(extra="forbid")

    input: Conversation
    preferred_output: list[Message]
    non_preferred_output: list[Message]
    line: int | None = Field(default=None, exclude=True)

    def to_openai(self) -> dict:
        return {
            "input": self.input.to_openai(),
            "preferred_output": [m.to_openai() for m in self.preferred_output],
            "non_preferred_output": [m.to_openai() for m in self.non_preferred_output],
        }


class KTOExample(BaseModel):
    """One unpaired preference example (KTO): a prompt, one answer, and whether it is desirable.

    Written out in TRL's conversational unpaired-preference shape, since OpenAI has no KTO format.
    """

    model_config = ConfigDict(extra="forbid")

    input: Conversation
    output: list[Message]
    label: bool = Field(description="True: a desirable answer; False: an undesirable one.")
    line: int | None = Field(default=None, exclude=True)

    def to_openai(self) -> dict:
        out: dict = {
            "prompt": [m.to_openai() for m in self.input.messages],
            "completion": [m.to_openai() for m in self.output],
            "label": self.label,
        }
        if self.input.tools:
            out["tools"] = self.input.tools
        return out


class RFTExample(BaseModel):
    """One reinforcement fine-tuning example in OpenAI's shape: the prompt a model answers (its
    last message is the user's) and `item`, every other field of the line, which graders read as
    `{{item.NAME}}`."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Message]
    tools: list[dict] | None = None
    item: dict = Field(default_factory=dict)
    line: int | None = Field(default=None, exclude=True)

    def to_openai(self) -> dict:
        # `messages` and `tools` are OpenAI's only reserved keys; the item's fields sit beside them.
        out: dict = {"messages": [m.to_openai() for m in self.messages]}
        if self.tools:
            out["tools"] = self.tools
        return {**out, **self.item}


class TextExample(BaseModel):
    """One plain text, no chat template: TRL's language-modeling format (`{"text": ...}`), what
    AutoTrain's `llm` trainer trains on. Every token of it carries the loss."""

    model_config = ConfigDict(extra="forbid")

    text: str
    line: int | None = Field(default=None, exclude=True)

    def to_openai(self) -> dict:
        return {"text": self.text}


Record = Conversation | PreferencePair | KTOExample | RFTExample | TextExample


def prompt_of(record: Record) -> list[Message]:
    """The messages a record gives the model before it answers (all of them for a chat, none
    for plain text)."""
    if isinstance(record, PreferencePair | KTOExample):
        return record.input.messages
    if isinstance(record, TextExample):
        return []
    return record.messages
