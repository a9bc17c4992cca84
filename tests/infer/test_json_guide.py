"""JSON-guided decoding: the checker, and a real model forced to answer in JSON."""

from __future__ import annotations

import json

import pytest

from tunesmith.data.records import Message
from tunesmith.data.render import encode_prompt
from tunesmith.infer.engine import Engine
from tunesmith.infer.json_guide import JsonPrefix, token_texts
from tunesmith.infer.sampling import SamplingParams
from tunesmith.models.catalog import resolve

VALID = ["{}", '{"a": 1}', '{"a": [1, 2.5, -3e10, true, null, "x\\n\\u00e9"], "b": {"c": false}} ']
INVALID = [
    " {}",
    '{"a":' + " " * 40 + "1}",
    "[1]",
    '{"a" 1}',
    '{"a": 01}',
    '{"a": tru}',
    "{,}",
    '{"a": 1,}',
    '{"a": 1}x',
    '{"a": "\\q"}',
]


@pytest.mark.parametrize("text", VALID)
def test_complete_objects_are_accepted_char_by_char(text):
    state = JsonPrefix()
    assert state.feed(text) and state.done
    json.loads(text)  # the checker agrees with the json module


@pytest.mark.parametrize("text", INVALID)
def test_invalid_text_is_refused_before_it_completes(text):
    state = JsonPrefix()
    assert not (state.feed(text) and state.done)


def test_every_prefix_of_a_valid_object_is_a_valid_prefix():
    text = VALID[2]
    for end in range(len(text)):
        assert JsonPrefix().feed(text[:end]), text[:end]


def test_declared_keys_only_and_each_once():
    keys = ("city", "units")
    assert JsonPrefix(keys=keys).feed('{"city": "Oslo", "units": "C"}')
    assert not JsonPrefix(keys=keys).feed('{"type": ')
    assert not JsonPrefix(keys=keys).feed('{"city": "a", "city"')
    assert not JsonPrefix(keys=keys).feed('{"city": 1, "units": 2,')  # no key left to add
    nested = JsonPrefix(keys=keys)
    assert nested.feed('{"city": {"any": {"keys": 1}}}') and nested.done  # only the top level
    assert not JsonPrefix(keys=()).feed('{"a"') and JsonPrefix(keys=()).feed("{}")


def test_tool_call_guide_picks_an_offered_name_then_its_parameters(tokenizer):
    from tunesmith.infer.json_guide import ToolCallGuide

    guide = ToolCallGuide(tokenizer, {"get_weather": ("city",), "get_time": None})
    assert guide._try('get_weather", "arguments": {"city": "Rome"}') is not None
    assert guide._try('get_weather", "arguments": {"when": 1}') is None
    assert guide._try('get_time", "arguments": {"when": 1}') is not None
    assert guide._try("launch_rocket") is None
    named = ToolCallGuide(tokenizer, {"get_weather": ("city",)}, named="get_weather")
    assert named._try('{"city": "Rome"}') is not None and named._try('{"x": 1}') is None


def test_token_texts_match_decoding_in_context(tokenizer):
    texts = token_texts(tokenizer)
    ids = tokenizer(' {"city": "Lisbon", "n": 12}', add_special_tokens=False)["input_ids"]
    assert "".join(texts[i] for i in ids) == tokenizer.decode(ids)


@pytest.mark.slow
def test_the_built_in_model_answers_valid_json_when_asked_for_json_object():
    """Unguided, the base model wraps its JSON in prose and code fences; guided, it cannot."""
    spec = resolve("smollm2-135m-instruct")
    engine = Engine(max_batch=4, device="cpu")
    question = [Message(role="user", content="Describe a cat as JSON with name, age and color.")]
    try:
        ids = encode_prompt(engine.tokenizer(spec), question)
        free = engine.wait(engine.submit(spec, ids, SamplingParams(max_tokens=120, temperature=0)))
        outs = [
            engine.wait(engine.submit(spec, ids, SamplingParams(
                max_tokens=200, temperature=t, seed=s, guide="json"
            )))
            for t, s in ((0.0, None), (1.0, 1), (1.0, 2))
        ]  # fmt: skip
    finally:
        engine.close()
    with pytest.raises(json.JSONDecodeError):
        json.loads(free.text)
    assert outs[0].finish_reason == "stop", outs[0].text  # greedy closes its object
    for done in outs:
        if done.finish_reason == "stop":
            assert isinstance(json.loads(done.text), dict)
        else:  # a sample may ramble on inside the object past max_tokens, never outside it
            assert done.finish_reason == "length" and JsonPrefix().feed(done.text), done.text
