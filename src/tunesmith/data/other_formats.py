"""Alpaca, ShareGPT, prompt/completion, plain-text and column-mapped rows to records."""

from __future__ import annotations

import ast
import json
import re
from collections import deque
from collections.abc import Callable
from typing import Any

from tunesmith.data.issues import RowIssues, type_name
from tunesmith.data.records import (
    Conversation,
    FunctionCall,
    Message,
    Record,
    TextExample,
    ToolCall,
)

# ShareGPT speaker tags (LLaMA-Factory's names, plus the OpenAI role names some files use).
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "function_call": "assistant",
    "system": "system",
    "observation": "tool",
    "tool": "tool",
}
MAPPING_ROLES = ("system", "user", "assistant")
# In a column mapping, a value starting with this is literal text, not a column name:
# {"system": "=You sort bank queries into intents."} gives every example that system prompt, and
# {COLUMN} inside it is filled from the row: {"user": "=Title: {title}\n\n{ingredients}"}.
LITERAL = "="
# Only braces around a column's name are filled, so literal JSON in a prompt stays as written.
_PLACEHOLDER = re.compile(r"\{([^{}\n]+)\}")


def not_an_object(row: Any, issues: RowIssues, shape: str) -> bool:
    if isinstance(row, dict):
        return False
    issues.add(
        "data_type", None, f"An example must be a JSON object like {shape}, not {type_name(row)}."
    )
    return True


def text_field(row: dict, key: str, issues: RowIssues, *, answer: bool = False) -> str | None:
    """A required text field; an empty answer is reported as such."""
    value = row.get(key)
    if value is None:
        issues.add("missing_field", key, f"The example has no {key!r}; add it.")
        return None
    if not isinstance(value, str):
        issues.add("invalid_field", key, f"{key} must be text, not {type_name(value)}.")
        return None
    if answer and not value.strip():
        issues.add("empty_assistant_answer", key, f"The answer ({key}) is empty; write it.")
        return None
    return value


def optional_text(row: dict, key: str, issues: RowIssues) -> str:
    value = row.get(key)
    if value is None or isinstance(value, str):
        return value or ""
    issues.add("invalid_field", key, f"{key} must be text, not {type_name(value)}.")
    return ""


def alpaca_record(row: Any, issues: RowIssues) -> Conversation | None:
    """{"instruction", "input"?, "output", "system"?, "history"?: [[user, assistant], ...]}."""
    if not_an_object(row, issues, '{"instruction": ..., "output": ...}'):
        return None
    instruction = text_field(row, "instruction", issues)
    extra = optional_text(row, "input", issues)
    output = text_field(row, "output", issues, answer=True)
    system = optional_text(row, "system", issues)
    history = row.get("history") or []
    if not isinstance(history, list):
        issues.add("invalid_field", "history", "history must be a list of [user, assistant] pairs.")
        history = []
    messages = [Message(role="system", content=system)] if system else []
    for i, pair in enumerate(history):
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)
        ):
            issues.add(
                "invalid_field", f"history[{i}]", "Each history entry must be [user text, answer]."
            )
            continue
        messages += [
            Message(role="user", content=pair[0]),
            Message(role="assistant", content=pair[1]),
        ]
    # Alpaca's input is the material the instruction works on; LLaMA-Factory joins them by a newline.
    prompt = "\n".join(part for part in (instruction, extra) if part)
    if instruction is not None and not prompt:
        issues.add("missing_content", "instruction", "instruction and input are both empty.")
    if issues.failed:
        return None
    messages += [Message(role="user", content=prompt), Message(role="assistant", content=output)]
    return Conversation(messages=messages, line=issues.line)


def prompt_completion_record(row: Any, issues: RowIssues) -> Conversation | None:
    """{"prompt", "completion"}: a user turn and an answer (no user turn if the prompt is empty)."""
    if not_an_object(row, issues, '{"prompt": ..., "completion": ...}'):
        return None
    prompt = text_field(row, "prompt", issues)
    completion = text_field(row, "completion", issues, answer=True)
    if issues.failed:
        return None
    messages = [Message(role="user", content=prompt)] if prompt else []
    messages.append(Message(role="assistant", content=completion))
    return Conversation(messages=messages, line=issues.line)


def text_record(row: Any, issues: RowIssues) -> TextExample | None:
    """{"text": ...}: plain text, TRL's language-modeling format."""
    if not_an_object(row, issues, '{"text": ...}'):
        return None
    text = text_field(row, "text", issues)
    if text is not None and not text.strip():
        issues.add("missing_content", "text", "The text is empty; write it or drop the row.")
    if issues.failed or text is None:
        return None
    return TextExample(text=text, line=issues.line)


def renamed_record(
    row: Any,
    issues: RowIssues,
    mapping: dict[str, str],
    convert: Callable[[Any, RowIssues], Record | None],
) -> Record | None:
    """A row whose columns hold a format's own fields under other names ({"messages": "conv"}):
    the fields renamed, conversation cells decoded, then read by that format's reader."""
    if not_an_object(row, issues, "a table row"):
        return None
    return convert({field: mapped_value(row, source) for field, source in mapping.items()}, issues)


def mapped_value(row: dict, source: str) -> Any:
    """Literal text after "=", or the column's cell; a cell that holds a conversation as text
    (JSON, or the Python repr pandas writes into a CSV, which AutoTrain reads) as its messages."""
    if source.startswith(LITERAL):
        return fill(source[1:], row)
    value = row.get(source)
    if not (isinstance(value, str) and value.lstrip().startswith("[")):
        return value
    for parse in (json.loads, ast.literal_eval):  # literal_eval evaluates literals only: safe
        try:
            parsed = parse(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        # Only a list of messages is a conversation; "[1, 2]" is an answer that is text.
        if isinstance(parsed, list) and parsed and all(isinstance(m, dict) for m in parsed):
            return parsed
    return value


def mapped_text(row: dict, source: str) -> str | None:
    """What a mapping's entry gives for a row: literal text after "=" (with {column} filled), or
    the named column's cell as text."""
    return fill(source[1:], row) if source.startswith(LITERAL) else cell_text(row.get(source))


def columns_record(row: Any, issues: RowIssues, mapping: dict[str, str]) -> Conversation | None:
    """A table row through a column mapping such as {"user": "question", "assistant": "answer"}."""
    if not_an_object(row, issues, "a table row"):
        return None
    messages: list[Message] = []
    for role in MAPPING_ROLES:
        source = mapping.get(role)
        if source is None:
            continue
        text = mapped_text(row, source)
        if text and text.strip():
            messages.append(Message(role=role, content=text))
        elif role == "user":
            issues.add(
                "missing_field",
                source,
                f"The {source!r} cell (the user turn) is empty; fill it or drop the row.",
            )
        elif role == "assistant":
            issues.add(
                "empty_assistant_answer",
                source,
                f"The {source!r} cell (the answer) is empty; fill it or drop the row.",
            )
    if issues.failed:
        return None
    return Conversation(messages=messages, line=issues.line)


def fill(template: str, row: dict) -> str:
    """Literal text with each {COLUMN} replaced by the row's cell."""
    return _PLACEHOLDER.sub(
        lambda m: (cell_text(row[m[1]]) or "") if m[1] in row else m[0], template
    )


def cell_text(value: Any) -> str | None:
    """A table cell as text: numbers and labels are written out, nested values as JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def sharegpt_record(row: Any, issues: RowIssues) -> Conversation | None:
    """{"conversations": [{"from": "human"|"gpt"|..., "value": ...}], "system"?, "tools"?}."""
    if not_an_object(row, issues, '{"conversations": [{"from": ..., "value": ...}]}'):
        return None
    key = "conversations" if "conversations" in row else "messages"
    turns = row.get(key)
    if not isinstance(turns, list) or not turns:
        issues.add(
            "missing_messages_list",
            key,
            f'{key} must be a non-empty list of {{"from": ..., "value": ...}} turns.',
        )
        return None
    system = optional_text(row, "system", issues)
    messages = [Message(role="system", content=system)] if system else []
    pending: deque[str] = deque()  # ids of function calls not yet answered by an observation
    n_calls = 0
    for i, turn in enumerate(turns):
        message = sharegpt_turn(turn, f"{key}[{i}]", issues, pending, n_calls)
        if message is not None:
            messages.append(message)
            n_calls += len(message.tool_calls or [])
    tools = sharegpt_tools(row.get("tools"), issues)
    if not any(m.role == "assistant" for m in messages) and not issues.failed:
        issues.add(
            "example_missing_assistant_message",
            key,
            'The conversation has no "gpt" turn, so there is nothing to learn; add the answer.',
        )
    if issues.failed:
        return None
    return Conversation(messages=messages, tools=tools, line=issues.line)


def sharegpt_turn(
    turn: Any, field: str, issues: RowIssues, pending: deque[str], n_calls: int
) -> Message | None:
    if not isinstance(turn, dict):
        issues.add("data_type", field, f"A turn must be a JSON object, not {type_name(turn)}.")
        return None
    for key in ("from", "value"):
        if key not in turn:
            issues.add("message_missing_key", f"{field}.{key}", f"The turn has no {key!r}; add it.")
    tag, value = turn.get("from"), turn.get("value")
    known = isinstance(tag, str) and tag in SHAREGPT_ROLES  # a list or object is no speaker
    if "from" in turn and not known:
        issues.add(
            "unrecognized_role",
            f"{field}.from",
            f"Unrecognized speaker {tag!r}; use one of {', '.join(SHAREGPT_ROLES)}.",
        )
    if not known or "value" not in turn:
        return None
    if not isinstance(value, str) or (not value.strip() and tag != "observation"):
        kind = "empty_assistant_answer" if SHAREGPT_ROLES[tag] == "assistant" else "missing_content"
        issues.add(kind, f"{field}.value", f"value must be non-empty text, not {value!r}.")
        return None
    if tag == "function_call":
        calls = sharegpt_calls(value, f"{field}.value", issues, n_calls)
        pending.extend(c.id for c in calls)
        return Message(role="assistant", tool_calls=calls) if calls else None
    if tag == "observation":
        if not pending:
            issues.add(
                "invalid_tool_calls",
                f"{field}.from",
                "An observation must follow the function_call turn whose result it is.",
            )
            return None
        return Message(role="tool", content=value, tool_call_id=pending.popleft())
    return Message(role=SHAREGPT_ROLES[tag], content=value)


def sharegpt_calls(value: str, field: str, issues: RowIssues, n_calls: int) -> list[ToolCall]:
    """A function_call turn's value: one {"name", "arguments"} JSON object, or a list of them."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        issues.add("invalid_tool_calls", field, f"function_call value is not JSON: {exc.msg}.")
        return []
    calls = parsed if isinstance(parsed, list) else [parsed]
    out: list[ToolCall] = []
    for call in calls:
        if not (isinstance(call, dict) and isinstance(call.get("name"), str)):
            issues.add(
                "invalid_tool_calls",
                field,
                'A function_call value must be {"name": ..., "arguments": {...}} (or a list).',
            )
            return []
        arguments = call.get("arguments", {})
        text = (
            arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        )
        function = FunctionCall(name=call["name"], arguments=text)
        out.append(ToolCall(id=f"call_{n_calls + len(out)}", function=function))
    return out


def sharegpt_tools(tools: Any, issues: RowIssues) -> list[dict] | None:
    """ShareGPT keeps tools as JSON text of bare function definitions; OpenAI wraps each one."""
    if tools is None or tools == "":
        return None
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as exc:
            issues.add("invalid_tools", "tools", f"tools is not JSON: {exc.msg}.")
            return None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        issues.add("invalid_tools", "tools", "tools must be a list of function definitions.")
        return None
    return [t if "function" in t else {"type": "function", "function": t} for t in tools] or None
