"""Tool calls out of generated text: Hermes `<tool_call>{...}</tool_call>` blocks (what tunesmith
renders for templates without tool support, and what Qwen and Hermes templates use natively), or
an answer that is nothing but one `{"name": ..., "arguments": ...}` object."""

from __future__ import annotations

import json
import re
import secrets
import string

from tunesmith.data.render import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

_BLOCK = re.compile(
    re.escape(TOOL_CALL_OPEN) + r"\s*(.*?)\s*(?:" + re.escape(TOOL_CALL_CLOSE) + r"|$)", re.S
)
_ALNUM = string.ascii_letters + string.digits


def call_id() -> str:
    return "call_" + "".join(secrets.choice(_ALNUM) for _ in range(24))


def _as_call(value: object) -> dict | None:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return {
        "id": call_id(),
        "type": "function",
        "function": {"name": value["name"], "arguments": arguments},
    }


def parse_tool_calls(text: str, names: set[str] | None = None) -> tuple[str | None, list[dict]]:
    """(remaining content or None, OpenAI-shaped tool calls). Calls of unknown functions or with
    unparseable JSON stay in the content: the caller sees what the model wrote."""
    calls: list[dict] = []
    content = text
    for match in _BLOCK.finditer(text):
        try:
            call = _as_call(json.loads(match.group(1)))
        except json.JSONDecodeError:
            call = None
        if call is not None and (names is None or call["function"]["name"] in names):
            calls.append(call)
            content = content.replace(match.group(0), "", 1)
    if not calls and text.strip().startswith("{"):
        try:
            call = _as_call(json.loads(text))
        except json.JSONDecodeError:
            call = None
        if call is not None and (names is None or call["function"]["name"] in names):
            return None, [call]
    content = content.strip()
    return (content or None), calls
