"""Tool calls parsed out of generated text into OpenAI's shape."""

from __future__ import annotations

import json

from tunesmith.infer.tools import parse_tool_calls


def test_hermes_blocks_become_tool_calls():
    text = (
        'Sure.\n<tool_call>{"name": "takeoff", "arguments": {"altitude": 10}}</tool_call>\n'
        '<tool_call>{"name": "land", "arguments": {}}</tool_call>'
    )
    content, calls = parse_tool_calls(text, {"takeoff", "land"})
    assert content == "Sure."
    assert [c["function"]["name"] for c in calls] == ["takeoff", "land"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"altitude": 10}
    assert all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)
    assert calls[0]["id"] != calls[1]["id"]


def test_unclosed_block_at_the_end_still_counts():
    _, calls = parse_tool_calls('<tool_call>{"name": "land", "arguments": {}}', {"land"})
    assert len(calls) == 1


def test_a_bare_call_object_is_a_call():
    content, calls = parse_tool_calls('{"name": "land", "parameters": {"now": true}}', {"land"})
    assert content is None and json.loads(calls[0]["function"]["arguments"]) == {"now": True}


def test_unknown_functions_and_broken_json_stay_content():
    text = '<tool_call>{"name": "fly_to_mars", "arguments": {}}</tool_call> <tool_call>{oops</tool_call>'
    content, calls = parse_tool_calls(text, {"land"})
    assert calls == [] and content == text


def test_plain_answers_have_no_calls():
    assert parse_tool_calls("It is sunny.", {"land"}) == ("It is sunny.", [])
