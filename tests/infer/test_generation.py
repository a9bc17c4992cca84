"""One request's text as tokens arrive: decoded incrementally, equal to decoding it whole."""

from __future__ import annotations

import pytest

from tunesmith.infer.generation import Generation
from tunesmith.infer.sampling import SamplingParams

TEXTS = [
    "Ship 3 desk lamps to Oslo by May 2.",
    '{"name": "Ana Silva", "items": ["lamp", "desk"], "city": "Oslo"}',
    "Grüße aus Köln — 東京 and 🚀🚀 emoji, then naïve café.",
    "  leading spaces,\n\nnew lines\tand tabs  ",
]


def generate(tokenizer, ids: list[int], **params) -> Generation:
    gen = Generation([1, 2, 3], SamplingParams(max_tokens=10_000, **params), None, tokenizer, set())
    for token in ids:
        if gen.done:
            break
        gen.accept(token, None)
    if not gen.done:
        gen.finish("length")
    return gen


@pytest.mark.parametrize("text", TEXTS)
def test_incremental_text_equals_decoding_all_tokens(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    gen = generate(tokenizer, ids)
    assert gen.text == tokenizer.decode(ids, skip_special_tokens=True)
    streamed = []
    while not gen.deltas.empty():
        streamed.append(gen.deltas.get_nowait().text)
    assert "".join(streamed) == gen.text
    assert all("\ufffd" not in piece for piece in streamed)  # never half a character


def test_a_stop_string_cuts_and_nothing_after_it_is_added(tokenizer):
    ids = tokenizer("Total: 42 dollars. END and then more", add_special_tokens=False)["input_ids"]
    gen = generate(tokenizer, ids, stop=["END"])
    assert gen.text == "Total: 42 dollars. " and gen.finish_reason == "stop"


def test_an_answer_cut_inside_a_character_keeps_the_replacement_as_decode_does(tokenizer):
    ids = tokenizer("🚀", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1  # a byte-level tokenizer spends several tokens on it
    gen = generate(tokenizer, ids[:-1])
    assert gen.text == tokenizer.decode(ids[:-1], skip_special_tokens=True)
