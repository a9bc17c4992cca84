"""Token statistics of a dataset, OpenAI's auto epochs, billed tokens and a training-time estimate."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from tunesmith.data.records import (
    Conversation,
    KTOExample,
    PreferencePair,
    Record,
    RFTExample,
    TextExample,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# OpenAI's default-epoch rule, from the data-prep cookbook notebook (reference/openai-api.md 7.2).
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25

# Training throughput of the built-in SmolLM2-135M with LoRA (r=16, all linear layers, batch 8) on
# a 2-core CPU, loss on assistant tokens only, bf16: ~125 tokens/s (reference/cpu-measurements.md,
# "LoRA SFT of the built-in model"). Tokens are all tokens of an example, prompt included. The
# faster ~147 tokens/s row uses wrapped packing, which tunesmith does not do (examples would attend
# to each other). Noisy machine: read the estimate as an order of magnitude.
CPU_TOKENS_PER_SECOND = 125.0


@dataclass(frozen=True)
class ExampleTokens:
    """Token counts of one example; `lengths` has one entry per sequence the trainer sees.

    An SFT example is one sequence; a DPO pair is two (prompt + preferred, prompt + rejected); a
    KTO example one (prompt + answer); an RFT example one, its prompt (the model writes the rest).
    `prompt` is the tokens of the prompt that pairs and KTO examples share and may cut from the
    left; None where the whole sequence must fit (SFT, RFT).
    """

    line: int | None
    lengths: tuple[int, ...]
    assistant: int
    messages: int
    prompt: int | None = None

    @property
    def longest_answer(self) -> int:
        """Tokens after the prompt in the longest sequence (all of it when there is no prompt)."""
        return self.longest - (self.prompt or 0)

    @property
    def total(self) -> int:
        return sum(self.lengths)

    @property
    def longest(self) -> int:
        return max(self.lengths)

    def billed(self, max_length: int | None) -> int:
        """Tokens trained on per epoch: each sequence is cut at max_length."""
        return sum(n if max_length is None else min(n, max_length) for n in self.lengths)


@dataclass(frozen=True)
class Distribution:
    """min, 10th percentile, median, mean, 90th percentile and max of a list of counts.

    OpenAI's notebook prints these as "p5/p95", but computes the 0.1 and 0.9 quantiles.
    """

    min: float
    p10: float
    median: float
    mean: float
    p90: float
    max: float


@dataclass
class DatasetStats:
    """What the CLI shows under a data check and what a job's estimate is built from."""

    n_examples: int
    messages: Distribution
    total_tokens: Distribution
    assistant_tokens: Distribution
    max_length: int | None
    n_over_max_length: int
    n_epochs: int
    tokens_per_epoch: int
    billed_tokens: int
    tokens_per_second: float
    estimated_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def distribution(values: list[int] | list[float]) -> Distribution:
    if not values:
        raise ValueError("a distribution needs at least one value")
    array = np.asarray(values, dtype=float)
    p10, median, p90 = np.quantile(array, [0.1, 0.5, 0.9])
    return Distribution(
        min=float(array.min()),
        p10=float(p10),
        median=float(median),
        mean=float(array.mean()),
        p90=float(p90),
        max=float(array.max()),
    )


def auto_epochs(n_examples: int) -> int:
    """OpenAI's default n_epochs: 3, more for small datasets, fewer for huge ones."""
    if n_examples <= 0:
        raise ValueError("auto epochs need at least one example")
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def resolve_epochs(n_epochs: int | Literal["auto"], n_examples: int) -> int:
    return auto_epochs(n_examples) if n_epochs == "auto" else int(n_epochs)


def billed_tokens(examples: list[ExampleTokens], n_epochs: int, max_length: int | None) -> int:
    """OpenAI's charge: n_epochs × Σ min(max_length, tokens of the example)."""
    return n_epochs * sum(e.billed(max_length) for e in examples)


def estimate_seconds(tokens: int, tokens_per_second: float = CPU_TOKENS_PER_SECOND) -> float:
    """Training time for `tokens` tokens at a measured throughput."""
    if tokens_per_second <= 0:
        raise ValueError("tokens_per_second must be positive")
    return tokens / tokens_per_second


def conversations_of(record: Record) -> list[Conversation]:
    """The sequences a trainer sees for one record, as conversations (an RFT prompt: itself)."""
    if isinstance(record, PreferencePair):
        prompt = record.input
        return [
            prompt.model_copy(update={"messages": prompt.messages + answer})
            for answer in (record.preferred_output, record.non_preferred_output)
        ]
    if isinstance(record, KTOExample):
        return [record.input.model_copy(update={"messages": record.input.messages + record.output})]
    if isinstance(record, RFTExample):
        return [Conversation(messages=record.messages, tools=record.tools, line=record.line)]
    return [record]


def count_tokens(tokenizer: PreTrainedTokenizerBase, records: list[Record]) -> list[ExampleTokens]:
    """Each record rendered with the model's chat template: total and loss-carrying tokens."""
    return [example_tokens(tokenizer, record) for record in records]


def example_tokens(tokenizer: PreTrainedTokenizerBase, record: Record) -> ExampleTokens:
    from tunesmith.data.preference import sequences

    encoded = [e for _, e in sequences(tokenizer, record)]
    return ExampleTokens(
        line=record.line,
        lengths=tuple(len(e.input_ids) for e in encoded),
        assistant=sum(e.n_loss_tokens for e in encoded),
        messages=0
        if isinstance(record, TextExample)
        else len(conversations_of(record)[0].messages),
        prompt=encoded[0].prompt_length,
    )


def dataset_stats(
    examples: list[ExampleTokens],
    *,
    max_length: int | None = None,
    n_epochs: int | Literal["auto"] = "auto",
    tokens_per_second: float = CPU_TOKENS_PER_SECOND,
) -> DatasetStats:
    """Distributions, epochs, billed tokens and time for the counted training examples."""
    epochs = resolve_epochs(n_epochs, len(examples))
    per_epoch = billed_tokens(examples, 1, max_length)
    billed = epochs * per_epoch
    return DatasetStats(
        n_examples=len(examples),
        messages=distribution([e.messages for e in examples]),
        total_tokens=distribution([e.total for e in examples]),
        assistant_tokens=distribution([e.assistant for e in examples]),
        max_length=max_length,
        n_over_max_length=sum(max_length is not None and e.longest > max_length for e in examples),
        n_epochs=epochs,
        tokens_per_epoch=per_epoch,
        billed_tokens=billed,
        tokens_per_second=tokens_per_second,
        estimated_seconds=estimate_seconds(billed, tokens_per_second),
    )


@dataclass(frozen=True)
class Histogram:
    """Counts of examples by length in tokens: bin i holds lengths in [edges[i], edges[i + 1])."""

    edges: list[int]
    counts: list[int]

    def to_dict(self) -> dict:
        return asdict(self)


def length_histogram(examples: list[ExampleTokens], bins: int = 12) -> Histogram:
    """Examples by their longest sequence (what max_length cuts), in `bins` bins of whole tokens.

    Bins have one integer width, so each reads as a plain range ("96–127 tokens"); fewer bins
    than asked when the lengths span fewer values.
    """
    if not examples:
        return Histogram(edges=[], counts=[])
    lengths = [e.longest for e in examples]
    low, high = min(lengths), max(lengths)
    width = max(1, -(-(high - low + 1) // bins))  # ceiling division
    n_bins = -(-(high - low + 1) // width)
    counts = [0] * n_bins
    for n in lengths:
        counts[(n - low) // width] += 1
    return Histogram(edges=[low + i * width for i in range(n_bins + 1)], counts=counts)
