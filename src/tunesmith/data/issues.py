"""The problems a data file can have: one Issue type and the catalogue of kinds with their severity."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]

# Every kind an Issue can have, with its severity and what it means. The first seven are the
# counters of OpenAI's data-prep notebook (Chat_finetuning_data_prep.ipynb), under its names.
KINDS: dict[str, tuple[Severity, str]] = {
    "data_type": ("error", "an example is not a JSON object, or a CSV row has the wrong width"),
    "missing_messages_list": ("error", "`messages` (or `conversations`) is missing or empty"),
    "message_missing_key": ("error", "a message lacks role, content or (tool role) tool_call_id"),
    "message_unrecognized_key": ("error", "a message has a key OpenAI's format does not define"),
    "unrecognized_role": ("error", "a role outside system, developer, user, assistant, tool"),
    "missing_content": ("error", "a message's content is empty or not text"),
    "example_missing_assistant_message": ("error", "an example has no assistant message"),
    "invalid_json": ("error", "a line, or the whole JSON array, is not valid JSON"),
    "empty_assistant_answer": ("error", "an assistant answer is empty and calls no tool"),
    "invalid_weight": ("error", "a weight other than 0 or 1, or a weight on a non-assistant turn"),
    "invalid_tool_calls": ("error", "tool_calls is not a list of function calls"),
    "invalid_tool_arguments": ("error", "a tool call's arguments are not JSON text"),
    "invalid_tools": ("error", "tools is not a list of function definitions"),
    "missing_field": ("error", "a field the detected format requires is missing"),
    "invalid_field": ("error", "a field has the wrong type or shape for the detected format"),
    "wrong_method": (
        "error",
        "examples of another kind than the method trains on (pairs for SFT, chat for DPO, ...)",
    ),
    # Preference pairs (DPO, ORPO) and unpaired examples (KTO).
    "identical_preference": ("error", "a pair whose chosen and rejected answers are the same"),
    "multi_turn_output": ("error", "a DPO answer that is not exactly one assistant message"),
    "invalid_prompt_end": (
        "error",
        "a pair's or KTO example's prompt does not end with a user turn",
    ),
    "no_shared_prompt": ("error", "implicit-prompt chosen and rejected share no prompt"),
    "invalid_label": ("error", "a KTO label that is not true or false"),
    "one_sided_labels": ("warning", "KTO examples all desirable or all undesirable (file-wide)"),
    # Reinforcement fine-tuning (OpenAI RFT, GRPO).
    "rft_last_message_not_user": ("error", "an RFT prompt whose last message is not the user's"),
    "missing_item_field": ("error", "an RFT example lacks a field the grader reads as {{item.X}}"),
    "no_item_fields": ("warning", "an RFT example has no field besides messages for a grader"),
    "inconsistent_item_fields": ("warning", "an RFT example lacks a field most others have"),
    "too_few_examples": ("error", "fewer training examples than OpenAI's minimum of 10"),
    "too_long": ("error", "an example is longer than max_length tokens and would be truncated"),
    "prompt_truncated": (
        "warning",
        "a pair or KTO example over max_length whose prompt is cut from the left, answers kept",
    ),
    # A warning, as on OpenAI: its cookbook flow shares an example between the two files and runs.
    "validation_overlap": ("warning", "a validation example also appears in the training file"),
    "duplicate": ("warning", "an example is an exact copy of an earlier one"),
    "no_system_message": ("warning", "examples without a system message (counted, not per line)"),
    "no_user_message": ("warning", "examples without a user message (counted, not per line)"),
}


@dataclass
class Issue:
    """One problem, located: `line` is 1-based (JSONL line, JSON array element, CSV row, table row)."""

    kind: str
    severity: Severity
    message: str
    file: str | None = None
    line: int | None = None
    field: str | None = None

    def where(self, file_label: str | None = None) -> str:
        """`train.jsonl line 3, messages[1].role`, for one-line summaries."""
        parts = [file_label or self.file or "data"]
        if self.line is not None:
            parts.append(f"line {self.line}")
        text = " ".join(parts)
        return f"{text}, {self.field}" if self.field else text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_issue(
    kind: str,
    message: str,
    *,
    line: int | None = None,
    field: str | None = None,
    file: str | None = None,
) -> Issue:
    """An Issue whose severity comes from the catalogue, so one kind never has two severities."""
    return Issue(kind, KINDS[kind][0], message, file=file, line=line, field=field)


class RowIssues:
    """The issues found while converting one row; `errors` counts those that are errors.

    Converters add to it and return None when it failed: a row with an error yields no record,
    so every record a reader returns is fit to train on.
    """

    def __init__(self, line: int, sink: list[Issue]) -> None:
        self.line = line
        self._sink = sink
        self.errors = 0

    def add(self, kind: str, field: str | None, message: str) -> None:
        issue = make_issue(kind, message, line=self.line, field=field)
        self.errors += issue.severity == "error"
        self._sink.append(issue)

    @property
    def failed(self) -> bool:
        return self.errors > 0


def type_name(value: object) -> str:
    """The JSON name of a Python value's type, for messages about JSON data."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)
