"""Preference pairs, KTO examples and RFT prompts to tokens, with SFT's label rule.

The loss (labels) is on the answer's tokens and its end-of-turn token, never on the prompt, as in
`render.encode`. The prompt is tokenized once and put in front of each answer, so both sides of a
pair start with exactly the same tokens (DPO compares the two answers' log-probabilities given
one prompt).

Over max_length, the prompt is cut from the left and the answers are kept whole: the answers are
what is scored, and a cut answer would teach the model to stop mid-sentence (TRL's
truncation_mode="keep_end" does the same). When even the longest answer does not fit, the
prompt is kept and the end is cut instead, as SFT does; `checks` reports that as `too_long`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunesmith.data.records import (
    Conversation,
    KTOExample,
    Message,
    PreferencePair,
    Record,
    RFTExample,
)
from tunesmith.data.render import (
    IGNORE,
    Encoded,
    assistant_spans,
    encode,
    encode_prompt,
    prompt_text,
)
from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class EncodedPair:
    """Both sequences of one pair; their first `prompt_length` tokens are the same."""

    chosen: Encoded  # prompt + chosen answer, labels on the answer only
    rejected: Encoded  # prompt + rejected answer

    @property
    def prompt_length(self) -> int:
        return self.chosen.prompt_length or 0


def encode_pair(
    tokenizer: PreTrainedTokenizerBase, pair: PreferencePair, max_length: int | None = None
) -> EncodedPair:
    """Tokens and labels of both sides of a pair, sharing one prompt (cut the same way)."""
    prompt_ids = _prompt_ids(tokenizer, pair.input)
    sides = [
        _answer_tokens(tokenizer, pair.input, answer, pair.line)
        for answer in (pair.preferred_output, pair.non_preferred_output)
    ]
    chosen, rejected = _fit(prompt_ids, sides, max_length)
    return EncodedPair(chosen=chosen, rejected=rejected)


def encode_answer(
    tokenizer: PreTrainedTokenizerBase,
    prompt: Conversation,
    answer: list[Message],
    max_length: int | None = None,
) -> Encoded:
    """One prompt and one answer (a KTO example), truncated as a pair's sides are."""
    prompt_ids = _prompt_ids(tokenizer, prompt)
    (encoded,) = _fit(
        prompt_ids, [_answer_tokens(tokenizer, prompt, answer, prompt.line)], max_length
    )
    return encoded


def sequences(
    tokenizer: PreTrainedTokenizerBase, record: Record, max_length: int | None = None
) -> list[tuple[str, Encoded]]:
    """The token sequences a trainer sees for one record, each named: an SFT example is one, a
    pair two (chosen, rejected), a KTO example one (prompt + answer), an RFT example its prompt,
    with no loss on it (the model writes the rest)."""
    if isinstance(record, PreferencePair):
        pair = encode_pair(tokenizer, record, max_length)
        return [("chosen", pair.chosen), ("rejected", pair.rejected)]
    if isinstance(record, KTOExample):
        return [("answer", encode_answer(tokenizer, record.input, record.output, max_length))]
    if isinstance(record, RFTExample):
        ids = encode_prompt(tokenizer, record.messages, record.tools)[:max_length]
        return [("prompt", Encoded(input_ids=ids, labels=[IGNORE] * len(ids)))]
    return [("example", encode(tokenizer, record, max_length))]


def encode_rft_prompt(tokenizer: PreTrainedTokenizerBase, example: RFTExample) -> str:
    """The text a model continues to answer an RFT example: its messages and the assistant header."""
    return prompt_text(tokenizer, example.messages, example.tools)


def _prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: Conversation) -> list[int]:
    text = prompt_text(tokenizer, prompt.messages, prompt.tools)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _answer_tokens(
    tokenizer: PreTrainedTokenizerBase,
    prompt: Conversation,
    answer: list[Message],
    line: int | None,
) -> tuple[list[int], list[int]]:
    """The answer's tokens (everything the full render adds after the prompt) and their labels."""
    # Every answer message is learned: weight 0 belongs to SFT's multi-turn examples.
    answer = [m.model_copy(update={"weight": None}) for m in answer]
    conversation = prompt.model_copy(update={"messages": [*prompt.messages, *answer]})
    full, spans = assistant_spans(tokenizer, conversation)
    head = prompt_text(tokenizer, prompt.messages, prompt.tools)
    if not full.startswith(head):
        raise TunesmithError(
            f"Example at line {line}: the chat template of {tokenizer.name_or_path!r} renders "
            "the prompt differently once an answer follows, so the prompt cannot be shared by "
            "both answers.",
            "Use a model whose chat template renders earlier turns the same way either way.",
        )
    # Spans of the prompt's own assistant turns (earlier history) carry no loss here.
    spans = [(start - len(head), end - len(head)) for start, end in spans if start >= len(head)]
    enc = tokenizer(full[len(head) :], add_special_tokens=False, return_offsets_mapping=True)
    labels = [
        token_id if any(s <= start < e for s, e in spans) else IGNORE
        for token_id, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
    ]
    return list(enc["input_ids"]), labels


def _fit(
    prompt_ids: list[int], answers: list[tuple[list[int], list[int]]], max_length: int | None
) -> list[Encoded]:
    """Prompt + each answer, within max_length; every side keeps the same prompt tokens."""
    longest = max(len(ids) for ids, _ in answers)
    keep = prompt_ids
    if max_length is not None and len(prompt_ids) + longest > max_length and longest < max_length:
        keep = prompt_ids[len(prompt_ids) - (max_length - longest) :]  # cut from the left
    out = []
    for ids, labels in answers:
        input_ids, all_labels = keep + ids, [IGNORE] * len(keep) + labels
        if max_length is not None:  # only when the answer alone is too long: cut the end
            input_ids, all_labels = input_ids[:max_length], all_labels[:max_length]
        prompt_length = len(keep) if max_length is None else min(len(keep), max_length)
        out.append(Encoded(input_ids=input_ids, labels=all_labels, prompt_length=prompt_length))
    return out
