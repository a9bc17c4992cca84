"""OpenAI's chat and DPO training lines to records, with the checks of OpenAI's data-prep notebook."""

from __future__ import annotations

import json
from typing import Any

from tunesmith.data.issues import RowIssues, type_name
from tunesmith.data.pairs import check_prompt_end, make_pair
from tunesmith.data.records import Conversation, FunctionCall, Message, PreferencePair, ToolCall

# OpenAI's notebook accepts {role, content, name, function_call, weight}; tool_calls,
# tool_call_id and refusal are part of the current chat format, so they are accepted too.
MESSAGE_KEYS = {
    "role",
    "content",
    "name",
    "function_call",
    "tool_calls",
    "tool_call_id",
    "weight",
    "refusal",
}
# `function` is the legacy role of a function's result; it becomes a `tool` message.
ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def chat_record(row: Any, issues: RowIssues) -> Conversation | None:
    """One line of OpenAI's chat format: {"messages": [...], "tools"?, "parallel_tool_calls"?}."""
    if not isinstance(row, dict):
        issues.add(
            "data_type",
            None,
            f'An example must be a JSON object like {{"messages": [...]}}, not {type_name(row)}.',
        )
        return None
    return conversation(row, issues, prefix="", require_assistant=True)


def dpo_record(row: Any, issues: RowIssues) -> PreferencePair | None:
    """One line of OpenAI's DPO format: an input conversation and two assistant answers."""
    if not isinstance(row, dict):
        issues.add(
            "data_type",
            None,
            "A preference example must be a JSON object with input, preferred_output and "
            f"non_preferred_output, not {type_name(row)}.",
        )
        return None
    prompt = None
    if not isinstance(row.get("input"), dict):
        kind = "missing_field" if row.get("input") is None else "invalid_field"
        issues.add(kind, "input", 'Give the prompt as "input": {"messages": [...]}.')
    else:
        prompt = conversation(row["input"], issues, prefix="input.", require_assistant=False)
    preferred = answers(row, "preferred_output", issues)
    rejected = answers(row, "non_preferred_output", issues)
    if prompt is not None:
        check_prompt_end(prompt.messages, "input.messages", issues)
    if issues.failed or prompt is None or preferred is None or rejected is None:
        return None
    return make_pair(prompt, preferred, rejected, issues)


def answers(row: dict, key: str, issues: RowIssues) -> list[Message] | None:
    """A DPO answer: a list of assistant messages (OpenAI sends exactly one)."""
    value = row.get(key)
    if value is None:
        issues.add("missing_field", key, f'Add "{key}": [{{"role": "assistant", "content": ...}}].')
        return None
    if not isinstance(value, list) or not value:
        issues.add(
            "invalid_field",
            key,
            f"{key} must be a non-empty list of assistant messages, not {type_name(value)}.",
        )
        return None
    out: list[Message] = []
    for i, item in enumerate(value):
        if isinstance(item, dict) and item.get("role") not in (None, "assistant"):
            issues.add(
                "invalid_field",
                f"{key}[{i}].role",
                f"A {key} message must have role 'assistant', not {item.get('role')!r}.",
            )
            continue
        message = parse_message(item, f"{key}[{i}]", issues, [])
        if message is not None:
            out.append(message)
    return out if len(out) == len(value) else None


def conversation(
    obj: dict, issues: RowIssues, *, prefix: str, require_assistant: bool
) -> Conversation | None:
    """Messages, tools and parallel_tool_calls of one example; `prefix` locates it in the row."""
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        found = "missing" if messages is None else f"{type_name(messages)}, not a non-empty list"
        issues.add(
            "missing_messages_list",
            f"{prefix}messages",
            f"messages is {found}; give the example as "
            '{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}.',
        )
        return None
    tools = parse_tools(obj, issues, prefix)
    parallel = obj.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        issues.add(
            "invalid_tools",
            f"{prefix}parallel_tool_calls",
            "parallel_tool_calls must be true/false.",
        )
    legacy_ids: list[str] = []  # ids given to legacy function_calls, for the function results
    parsed = [
        parse_message(m, f"{prefix}messages[{i}]", issues, legacy_ids)
        for i, m in enumerate(messages)
    ]
    roles = [m.get("role") for m in messages if isinstance(m, dict)]
    if require_assistant and "assistant" not in roles:
        issues.add(
            "example_missing_assistant_message",
            f"{prefix}messages",
            "The example has no assistant message, so there is nothing to learn; "
            'add the answer as {"role": "assistant", "content": ...}.',
        )
    if issues.failed:
        return None
    return Conversation(
        messages=[m for m in parsed if m is not None],
        tools=tools,
        parallel_tool_calls=parallel,
        line=issues.line,
    )


def parse_tools(obj: dict, issues: RowIssues, prefix: str) -> list[dict] | None:
    """`tools` in OpenAI's shape, plus legacy `functions`, which become tools."""
    tools = obj.get("tools")
    if isinstance(tools, str):  # tables (Parquet, CSV, HF datasets) often keep tools as JSON text
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as exc:
            issues.add("invalid_tools", f"{prefix}tools", f"tools is text but not JSON: {exc.msg}.")
            return None
    out = list(tools) if isinstance(tools, list) else []
    if tools is not None and not isinstance(tools, list):
        issues.add(
            "invalid_tools",
            f"{prefix}tools",
            f'tools must be a list of {{"type": "function", "function": {{...}}}}, '
            f"not {type_name(tools)}.",
        )
    functions = obj.get("functions")
    if isinstance(functions, list):
        out += [{"type": "function", "function": f} for f in functions]
    for j, tool in enumerate(out):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            issues.add(
                "invalid_tools",
                f"{prefix}tools[{j}]",
                'Each tool must look like {"type": "function", "function": {"name": ..., '
                '"parameters": {...}}}.',
            )
    return out or None


def parse_message(m: Any, field: str, issues: RowIssues, legacy_ids: list[str]) -> Message | None:
    """One message; every problem is reported, and None comes back if any was an error."""
    if not isinstance(m, dict):
        issues.add("data_type", field, f"A message must be a JSON object, not {type_name(m)}.")
        return None
    # Null means absent: tables give every message every key of the column's schema, as nulls.
    m = {k: v for k, v in m.items() if v is not None or k in ("role", "content")}
    errors_before = issues.errors
    for key in sorted(set(m) - MESSAGE_KEYS):
        issues.add(
            "message_unrecognized_key",
            f"{field}.{key}",
            f"Unrecognized message key {key!r}; a message may only have "
            f"{', '.join(sorted(MESSAGE_KEYS))}. Remove it or rename it.",
        )
    role = m.get("role")
    if role is None:
        issues.add("message_missing_key", f"{field}.role", "The message has no role; add one.")
        return None
    if role not in ROLES:
        issues.add(
            "unrecognized_role",
            f"{field}.role",
            f"Unrecognized role {role!r}; use one of {', '.join(ROLES[:5])}.",
        )
        return None
    calls = tool_calls(m, field, issues, legacy_ids)
    # Whether it calls tools is read from the keys: a malformed call is reported once, as itself.
    calling = bool(m.get("tool_calls")) or "function_call" in m
    content = message_content(m, role, calling, field, issues)
    weight = message_weight(m, role, field, issues)
    tool_call_id = m.get("tool_call_id")
    if role == "function":  # legacy function result: answers the latest legacy call
        role, tool_call_id = "tool", legacy_ids[-1] if legacy_ids else None
    if role == "tool" and not isinstance(tool_call_id, str):
        issues.add(
            "message_missing_key",
            f"{field}.tool_call_id",
            "A tool message needs the tool_call_id of the assistant's tool call it answers.",
        )
    elif tool_call_id is not None and not isinstance(tool_call_id, str):
        issues.add(
            "invalid_field",
            f"{field}.tool_call_id",
            f"tool_call_id must be text, not {type_name(tool_call_id)}.",
        )
    if issues.errors > errors_before:
        return None
    name = m.get("name")
    return Message(
        role=role,
        content=content,
        name=name if isinstance(name, str) else None,
        tool_calls=calls or None,
        tool_call_id=tool_call_id,
        weight=weight,
    )


def message_content(
    m: dict, role: str, has_calls: bool, field: str, issues: RowIssues
) -> str | None:
    """Content as text: a list of text parts is joined; what is missing or empty is reported."""
    if "content" not in m and not (role == "assistant" and has_calls):
        issues.add("message_missing_key", f"{field}.content", "The message has no content; add it.")
        return None
    content = m.get("content")
    if isinstance(content, list):
        content = text_parts(content, f"{field}.content", issues)
        if content is None:
            return None
    elif content is not None and not isinstance(content, str):
        issues.add(
            "missing_content",
            f"{field}.content",
            f"content must be text, not {type_name(content)}; quote it or use json.dumps.",
        )
        return None
    if role == "assistant":
        if not has_calls and not (content or "").strip():
            issues.add(
                "empty_assistant_answer",
                f"{field}.content",
                "The assistant answer is empty and calls no tool; write the answer or remove "
                "the turn.",
            )
    elif "content" in m and not content:
        issues.add(
            "missing_content",
            f"{field}.content",
            f"The {role} message's content is empty; write it or remove the message.",
        )
    return content


def text_parts(parts: list, field: str, issues: RowIssues) -> str | None:
    """[{"type": "text", "text": ...}, ...] joined into one string, as the API joins them."""
    texts: list[str] = []
    for k, part in enumerate(parts):
        if (
            isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        ):
            texts.append(part["text"])
        else:
            kind = part.get("type") if isinstance(part, dict) else type_name(part)
            issues.add(
                "missing_content",
                f"{field}[{k}]",
                f"Only text parts can be trained on; this part is {kind!r}. Use "
                '{"type": "text", "text": ...} or plain text.',
            )
            return None
    return "".join(texts)


def message_weight(m: dict, role: str, field: str, issues: RowIssues) -> int | None:
    weight = m.get("weight")
    if weight is None:
        return None
    if role != "assistant":
        issues.add(
            "invalid_weight",
            f"{field}.weight",
            f"weight only applies to assistant messages; remove it from this {role} message.",
        )
    elif isinstance(weight, bool) or weight not in (0, 1) or not isinstance(weight, int):
        issues.add(
            "invalid_weight",
            f"{field}.weight",
            f"weight must be 0 (leave this turn out of the loss) or 1, not {weight!r}.",
        )
    else:
        return weight
    return None


def tool_calls(m: dict, field: str, issues: RowIssues, legacy_ids: list[str]) -> list[ToolCall]:
    """The message's tool calls, legacy `function_call` included (given the next `call_N` id)."""
    calls = m.get("tool_calls")
    if calls is not None and m.get("role") != "assistant":
        issues.add(
            "invalid_tool_calls", f"{field}.tool_calls", "Only assistant messages call tools."
        )
        return []
    if calls is not None and not isinstance(calls, list):
        issues.add(
            "invalid_tool_calls",
            f"{field}.tool_calls",
            f'tool_calls must be a list of {{"type": "function", "function": {{...}}}}, '
            f"not {type_name(calls)}.",
        )
        return []
    out = [tool_call(c, f"{field}.tool_calls[{j}]", issues) for j, c in enumerate(calls or [])]
    legacy = m.get("function_call")
    if legacy is not None:
        legacy_ids.append(f"call_{len(legacy_ids)}")
        out.append(
            tool_call({"id": legacy_ids[-1], "function": legacy}, f"{field}.function_call", issues)
        )
    return [c for c in out if c is not None]


def tool_call(call: Any, field: str, issues: RowIssues) -> ToolCall | None:
    function = call.get("function") if isinstance(call, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name or call.get("type", "function") != "function":
        issues.add(
            "invalid_tool_calls",
            field,
            'A tool call must look like {"id": ..., "type": "function", "function": '
            '{"name": ..., "arguments": "{...}"}}.',
        )
        return None
    arguments = function.get("arguments")
    problem = arguments_problem(arguments)
    if problem:
        issues.add("invalid_tool_arguments", f"{field}.function.arguments", problem)
        return None
    call_id = call.get("id")
    return ToolCall(
        id=call_id if isinstance(call_id, str) else None,
        function=FunctionCall(name=name, arguments=arguments),
    )


def arguments_problem(arguments: Any) -> str | None:
    """Why a tool call's arguments are unusable, or None: OpenAI sends them as JSON text."""
    if not isinstance(arguments, str):
        return (
            f"arguments must be JSON text (a string), not {type_name(arguments)}; "
            "write it with json.dumps."
        )
    try:
        json.loads(arguments)
    except json.JSONDecodeError as exc:
        return f"arguments is not valid JSON: {exc.msg} at column {exc.colno}."
    return None
