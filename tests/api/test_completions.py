"""Text completions through the official SDK, against a live server."""

from __future__ import annotations

import openai
import pytest

PROMPT = "Once upon a time"


@pytest.fixture
def sdk(serve, client, tiny_model_dir, engine) -> openai.OpenAI:
    """The SDK on a server that may serve the tiny model's folder, on each engine."""
    return client(serve(model_dirs=[tiny_model_dir]))


@pytest.fixture
def tiny(tiny_model_dir) -> str:
    return str(tiny_model_dir)


def test_text_completions(sdk, tiny):
    reply = sdk.completions.create(model=tiny, prompt=PROMPT, max_tokens=7, temperature=0)
    assert reply.id.startswith("cmpl-") and reply.object == "text_completion"
    assert reply.choices[0].finish_reason == "length" and reply.choices[0].logprobs is None
    assert reply.usage.completion_tokens == 7
    streamed = sdk.completions.create(
        model=tiny, prompt=PROMPT, max_tokens=7, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == reply.choices[0].text


def test_prompts_times_n_choices_in_order_and_usage_counts_each_prompt_once(sdk, tiny, tokenizer):
    prompts = ["a", "b c"]
    reply = sdk.completions.create(
        model=tiny, prompt=prompts, n=2, max_tokens=2, temperature=1.0, seed=3
    )
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    assert reply.usage.prompt_tokens == sum(len(tokenizer(p)["input_ids"]) for p in prompts)
    assert reply.usage.completion_tokens == 8


def test_echo_puts_the_prompt_first(sdk, tiny):
    plain = sdk.completions.create(model=tiny, prompt=PROMPT, max_tokens=5, temperature=0)
    echoed = sdk.completions.create(
        model=tiny, prompt=PROMPT, max_tokens=5, temperature=0, echo=True
    )
    assert echoed.choices[0].text == PROMPT + plain.choices[0].text
    chunks = list(
        sdk.completions.create(
            model=tiny, prompt=PROMPT, max_tokens=5, temperature=0, echo=True, stream=True
        )
    )
    assert chunks[0].choices[0].text == PROMPT
    assert "".join(c.choices[0].text for c in chunks) == echoed.choices[0].text


def test_logprobs_in_the_legacy_shape(sdk, tiny):
    reply = sdk.completions.create(
        model=tiny, prompt=PROMPT, max_tokens=6, temperature=0, logprobs=2
    )
    lp = reply.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
    assert "".join(lp.tokens) == reply.choices[0].text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(6)]
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert logprob <= 0 and 1 <= len(top) <= 3 and top[token] == pytest.approx(logprob)
        assert max(top.values()) == pytest.approx(logprob)  # greedy: the chosen is the likeliest
    only_chosen = sdk.completions.create(
        model=tiny, prompt=PROMPT, max_tokens=3, temperature=0, logprobs=0
    )
    assert [list(t) for t in only_chosen.choices[0].logprobs.top_logprobs] == [
        [t] for t in only_chosen.choices[0].logprobs.tokens
    ]


def test_streamed_chunks_carry_the_logprobs_of_their_tokens(sdk, tiny):
    whole = sdk.completions.create(
        model=tiny, prompt=PROMPT, max_tokens=8, temperature=0, logprobs=2
    )
    chunks = list(
        sdk.completions.create(
            model=tiny, prompt=PROMPT, max_tokens=8, temperature=0, logprobs=2, stream=True
        )
    )
    tokens = [t for c in chunks for t in c.choices[0].logprobs.tokens]
    offsets = [o for c in chunks for o in c.choices[0].logprobs.text_offset]
    assert tokens == whole.choices[0].logprobs.tokens
    assert offsets == whole.choices[0].logprobs.text_offset
    for chunk in chunks:
        assert "".join(chunk.choices[0].logprobs.tokens) == chunk.choices[0].text


REFUSED = {
    "an empty prompt": ({"prompt": ""}, "prompt.0"),
    "no prompts": ({"prompt": []}, "prompt"),
    "an empty prompt in a list": ({"prompt": ["a", ""]}, "prompt.1"),
    "65 prompts": ({"prompt": ["a"] * 65}, "prompt"),
    "logprobs past 5": ({"prompt": PROMPT, "logprobs": 6}, "logprobs"),
    "logprobs of an echoed prompt": ({"prompt": PROMPT, "logprobs": 1, "echo": True}, "logprobs"),
    "a seed of 2**64": ({"prompt": PROMPT, "seed": 2**64}, "seed"),
    "a logit_bias key that is not a number": (
        {"prompt": PROMPT, "logit_bias": {"x": 1}},
        "logit_bias",
    ),
}


@pytest.mark.parametrize(("fields", "param"), REFUSED.values(), ids=REFUSED.keys())
def test_bad_requests_are_400s_naming_the_field(sdk, tiny, fields, param):
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.completions.create(model=tiny, max_tokens=2, **fields)
    assert bad.value.status_code == 400 and bad.value.body["param"] == param


def test_a_prompt_longer_than_the_context_is_a_400(sdk, tiny):
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.completions.create(model=tiny, prompt=["short", "word " * 3000], max_tokens=2)
    assert bad.value.body["param"] == "prompt"
    assert bad.value.body["code"] == "context_length_exceeded"
