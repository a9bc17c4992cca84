"""Encoding pairs, KTO examples and RFT prompts with the real chat template."""

from __future__ import annotations

from tunesmith.data.preference import encode_answer, encode_pair, encode_rft_prompt
from tunesmith.data.records import Conversation, Message, PreferencePair, RFTExample
from tunesmith.data.render import IGNORE, prompt_text


def pair(
    prompt: str = "Capital of France?",
    chosen: str = "Paris.",
    rejected: str = "Rome.",
    system: str | None = "Be brief.",
) -> PreferencePair:
    messages = [Message(role="system", content=system)] if system else []
    messages.append(Message(role="user", content=prompt))
    return PreferencePair(
        input=Conversation(messages=messages),
        preferred_output=[Message(role="assistant", content=chosen)],
        non_preferred_output=[Message(role="assistant", content=rejected)],
    )


def labelled(tokenizer, encoded) -> str:
    return tokenizer.decode([t for t in encoded.labels if t != IGNORE])


def test_labels_cover_the_answer_and_its_end_of_turn(tokenizer):
    encoded = encode_pair(tokenizer, pair())
    assert labelled(tokenizer, encoded.chosen) == "Paris.<|im_end|>"
    assert labelled(tokenizer, encoded.rejected) == "Rome.<|im_end|>"
    for side in (encoded.chosen, encoded.rejected):
        assert len(side.input_ids) == len(side.labels)
        assert all(label == IGNORE for label in side.labels[: encoded.prompt_length])
        assert side.labels[-1] == IGNORE  # the newline after <|im_end|>
    text = tokenizer.decode(encoded.chosen.input_ids)
    assert text.startswith(prompt_text(tokenizer, pair().input.messages))
    assert text.endswith("<|im_start|>assistant\nParis.<|im_end|>\n")


def test_both_sides_share_exactly_the_prompt_tokens(tokenizer):
    encoded = encode_pair(tokenizer, pair(chosen="Paris, of course.", rejected="P"))
    n = encoded.prompt_length
    assert n > 0 and encoded.chosen.input_ids[:n] == encoded.rejected.input_ids[:n]
    prompt_ids = tokenizer(prompt_text(tokenizer, pair().input.messages), add_special_tokens=False)
    assert encoded.chosen.input_ids[:n] == prompt_ids["input_ids"]
    # The first token after the prompt is the first answer token, and it is learned.
    assert encoded.chosen.labels[n] != IGNORE and encoded.rejected.labels[n] != IGNORE


def test_truncation_cuts_the_prompt_from_the_left_and_keeps_the_answers(tokenizer):
    long = pair(prompt="word " * 100, chosen="A long and careful answer.", rejected="No.")
    whole = encode_pair(tokenizer, long)
    cut = encode_pair(tokenizer, long, max_length=40)
    assert len(cut.chosen.input_ids) == 40 and len(cut.rejected.input_ids) < 40
    assert labelled(tokenizer, cut.chosen) == labelled(tokenizer, whole.chosen)
    assert labelled(tokenizer, cut.rejected) == "No.<|im_end|>"
    n = cut.prompt_length
    assert cut.chosen.input_ids[:n] == cut.rejected.input_ids[:n]
    assert (
        cut.chosen.input_ids[:n]
        == whole.chosen.input_ids[whole.prompt_length - n : whole.prompt_length]
    )
    assert cut.chosen.input_ids[n:] == whole.chosen.input_ids[whole.prompt_length :]


def test_an_answer_longer_than_max_length_is_cut_at_the_end(tokenizer):
    long = pair(chosen="word " * 100, rejected="No.")
    cut = encode_pair(tokenizer, long, max_length=30)
    whole = encode_pair(tokenizer, long)
    assert cut.prompt_length == whole.prompt_length  # the prompt is kept
    assert cut.chosen.input_ids == whole.chosen.input_ids[:30]
    assert len(cut.chosen.labels) == 30


def test_multi_turn_prompt_history_carries_no_loss(tokenizer):
    history = Conversation(
        messages=[
            Message(role="user", content="Hi"),
            Message(role="assistant", content="Hello!"),
            Message(role="user", content="Bye"),
        ]
    )
    encoded = encode_answer(tokenizer, history, [Message(role="assistant", content="Goodbye.")])
    assert labelled(tokenizer, encoded) == "Goodbye.<|im_end|>"


def test_rft_prompt_ends_with_the_generation_prompt(tokenizer):
    example = RFTExample(messages=[Message(role="user", content="2+2?")], item={"answer": "4"})
    text = encode_rft_prompt(tokenizer, example)
    assert text.endswith("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n")
