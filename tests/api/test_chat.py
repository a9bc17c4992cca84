"""Chat and text completions through the official SDK, against a live server."""

from __future__ import annotations

import json
import threading

import openai
import pytest
import torch

from tunesmith.data.records import Message
from tunesmith.data.render import encode_prompt
from tunesmith.models.spec import ModelSpec
from tunesmith.store import open_store

USER = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture
def tiny(tiny_model_dir) -> str:
    return str(tiny_model_dir)


def test_response_shape_and_real_token_counts(sdk, tiny, tokenizer):
    reply = sdk.chat.completions.create(model=tiny, messages=USER, max_tokens=5, temperature=0)
    assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion"
    assert reply.model == tiny
    choice = reply.choices[0]
    assert (choice.index, choice.message.role, choice.finish_reason) == (0, "assistant", "length")
    prompt = encode_prompt(tokenizer, [Message(role="user", content=USER[0]["content"])])
    assert reply.usage.prompt_tokens == len(prompt)
    assert reply.usage.completion_tokens == 5
    assert reply.usage.total_tokens == len(prompt) + 5
    newer = sdk.chat.completions.create(model=tiny, messages=USER, max_completion_tokens=3)
    assert newer.usage.completion_tokens == 3


def test_streaming_gives_the_same_text_then_usage(sdk, tiny):
    whole = sdk.chat.completions.create(model=tiny, messages=USER, max_tokens=12, temperature=0)
    chunks = list(
        sdk.chat.completions.create(
            model=tiny,
            messages=USER,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert all(c.usage is None for c in chunks[:-1])


def test_n_choices_with_a_seed_repeat_exactly(sdk, tiny):
    def ask():
        return sdk.chat.completions.create(
            model=tiny, messages=USER, n=3, temperature=1.0, top_p=0.95, seed=5, max_tokens=8
        )

    first, second = ask(), ask()
    texts = [c.message.content for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert texts == [c.message.content for c in second.choices]
    assert len(set(texts)) > 1  # each choice samples with its own seed
    assert first.usage.completion_tokens == 24


def test_stop_sequences_cut_the_answer(sdk, tiny):
    full = sdk.chat.completions.create(model=tiny, messages=USER, max_tokens=16, temperature=0)
    text = full.choices[0].message.content
    stop = text[6:9]
    cut = sdk.chat.completions.create(
        model=tiny, messages=USER, max_tokens=16, temperature=0, stop=[stop, "zzzz"]
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[: text.find(stop)]


def test_presence_and_frequency_penalties_discourage_repeats(sdk, tiny):
    def ask(**penalty):
        reply = sdk.chat.completions.create(
            model=tiny, messages=USER, max_tokens=30, temperature=0, logprobs=True, **penalty
        )
        return [t.token for t in reply.choices[0].logprobs.content]

    plain = ask()
    assert len(set(plain)) < len(plain)  # greedy decoding of the random model repeats itself
    for penalty in ({"frequency_penalty": 2.0}, {"presence_penalty": 2.0}):
        tokens = ask(**penalty)
        assert len(set(tokens)) > len(set(plain)), penalty


def test_logprobs_and_top_logprobs(sdk, tiny):
    reply = sdk.chat.completions.create(
        model=tiny, messages=USER, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3
    )
    content = reply.choices[0].logprobs.content
    assert len(content) == 6
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    for item in content:
        assert len(item.top_logprobs) == 3 and item.logprob <= 0
        assert item.top_logprobs[0].logprob == pytest.approx(item.logprob)  # greedy: the top one


def test_unknown_parameters_are_ignored_and_bad_ones_refused(sdk, tiny):
    ok = sdk.chat.completions.create(
        model=tiny, messages=USER, max_tokens=2, extra_body={"not_a_field": 1}, store=True
    )
    assert ok.choices
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model=tiny, messages=USER, temperature=3)
    assert bad.value.body["param"] == "temperature" and bad.value.status_code == 400
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model=tiny, messages=[])
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(model="no-such-model", messages=USER)
    assert missing.value.body["code"] == "model_not_found"


def test_text_completions(sdk, tiny):
    reply = sdk.completions.create(
        model=tiny, prompt="Once upon a time", max_tokens=7, temperature=0
    )
    assert reply.object == "text_completion" and reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 7
    streamed = sdk.completions.create(
        model=tiny, prompt="Once upon a time", max_tokens=7, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == reply.choices[0].text
    two = sdk.completions.create(model=tiny, prompt=["a", "b"], max_tokens=2)
    assert [c.index for c in two.choices] == [0, 1]


@pytest.fixture
def two_adapters(tiny_model_dir, tmp_path_factory):
    """Two LoRA adapters on the tiny model, registered as fine-tuned models in the server's store."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    names = []
    store = open_store()
    for seed in (11, 12):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        peft = get_peft_model(
            model, LoraConfig(r=8, target_modules="all-linear", init_lora_weights=False)
        )
        folder = tmp_path_factory.mktemp(f"ft{seed}")
        peft.save_pretrained(folder)
        name = f"ft:tiny:local:two:adapter{seed}"
        spec = ModelSpec(
            name, "fine-tuned", str(tiny_model_dir), str(tiny_model_dir), adapter=folder
        )
        store.models.register(spec, None)
        names.append(name)
    return names


def test_concurrent_requests_to_two_adapters_each_get_their_own(sdk, two_adapters, tiny):
    def ask(model):
        reply = sdk.chat.completions.create(
            model=model, messages=USER, max_tokens=10, temperature=0
        )
        return reply.choices[0].message.content

    alone = {m: ask(m) for m in [*two_adapters, tiny]}
    assert len(set(alone.values())) == 3
    results: dict[str, list[str]] = {m: [] for m in alone}

    def worker(model):
        results[model].append(ask(model))

    threads = [threading.Thread(target=worker, args=(m,)) for m in list(alone) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for model, answers in results.items():
        assert answers == [alone[model]] * 3, model


@pytest.mark.slow
def test_json_object_and_tools_on_the_built_in_model(sdk):
    model = "smollm2-135m-instruct"
    ask = [{"role": "user", "content": "Describe a cat as JSON with name, age and color."}]
    reply = sdk.chat.completions.create(
        model=model,
        messages=ask,
        response_format={"type": "json_object"},
        max_tokens=300,
        temperature=0,
    )
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(reply.choices[0].message.content), dict)

    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        },
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}},
            },
        },
    ]
    weather = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = sdk.chat.completions.create(
        model=model,
        messages=weather,
        tools=tools,
        tool_choice="required",
        max_tokens=60,
        temperature=0,
    )
    choice = called.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name in {"get_weather", "get_time"} and call.id.startswith("call_")
    arguments = json.loads(call.function.arguments)
    declared = {"get_weather": {"city"}, "get_time": {"timezone"}}[call.function.name]
    assert set(arguments) <= declared  # only the function's own parameters

    named = sdk.chat.completions.create(
        model=model,
        messages=weather,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=60,
        temperature=0,
        stream=True,
    )
    deltas = [c.choices[0].delta for c in named if c.choices]
    first_call = next(d.tool_calls[0] for d in deltas if d.tool_calls)
    assert first_call.function.name == "get_time"
    arguments = "".join(d.tool_calls[0].function.arguments or "" for d in deltas if d.tool_calls)
    assert isinstance(json.loads(arguments), dict)

    # The tool's answer goes back as a `tool` message; the conversation goes on.
    follow = sdk.chat.completions.create(
        model=model,
        messages=[
            *weather,
            {"role": "assistant", "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21, "sky": "clear"}'},
        ],
        tools=tools,
        tool_choice="none",
        max_tokens=40,
        temperature=0,
    )
    assert follow.choices[0].message.content and not follow.choices[0].message.tool_calls
