"""Function-calling data made by hand, drone-copilot style: tools on every line, one call per
answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TOOLS = [
    {"type": "function", "function": {"name": "move", "parameters": {"type": "object", "properties": {
        "direction": {"type": "string"}, "distance": {"type": "integer"}}}}},
    {"type": "function", "function": {"name": "land", "parameters": {"type": "object", "properties": {}}}},
]  # fmt: skip


def example(request: str, name: str, arguments: dict) -> dict:
    return {
        "messages": [
            {"role": "system", "content": "You control a drone."},
            {"role": "user", "content": request},
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
             "function": {"name": name, "arguments": json.dumps(arguments)}}]},
        ],
        "tools": TOOLS,
    }  # fmt: skip


@pytest.fixture
def tool_data(tmp_path: Path) -> tuple[Path, Path]:
    """(train.jsonl, test.jsonl) of tool calls."""
    train = [
        example("Go up 10 meters", "move", {"direction": "up", "distance": 10}),
        example("Land now", "land", {}),
        example("Forward 5", "move", {"direction": "forward", "distance": 5}),
    ]
    test = [
        example("Move left by 3 m", "move", {"direction": "left", "distance": 3}),
        example("Put it down", "land", {}),
    ]
    paths = tmp_path / "tools-train.jsonl", tmp_path / "tools-test.jsonl"
    for path, lines in zip(paths, (train, test), strict=True):
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return paths
