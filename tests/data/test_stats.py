"""Token statistics, OpenAI's epoch rule, billed tokens and the time estimate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tunesmith.data.readers import read
from tunesmith.data.render import encode
from tunesmith.data.stats import (
    CPU_TOKENS_PER_SECOND,
    ExampleTokens,
    auto_epochs,
    billed_tokens,
    count_tokens,
    dataset_stats,
    distribution,
    estimate_seconds,
)

FILES = Path(__file__).parent / "files"


@pytest.mark.parametrize(
    ("n_examples", "epochs"),
    [
        (1, 25),  # 100 // 1 = 100, capped at 25
        (5, 20),  # the cookbook's toy file
        (33, 3),  # 99 < 100 -> 100 // 33
        (34, 3),
        (101, 3),  # the cookbook's recipe run: 303 steps at batch 1
        (8333, 3),
        (8334, 2),  # 25,002 > 25,000 -> 25,000 // 8334
        (30_000, 1),
    ],
)
def test_auto_epochs_follows_openai(n_examples, epochs):
    assert auto_epochs(n_examples) == epochs


def test_distribution_uses_tenth_and_ninetieth_quantiles():
    values = [1, 2, 3, 4, 100]
    d = distribution(values)
    assert (d.min, d.median, d.max, d.mean) == (1, 3, 100, 22)
    assert d.p10 == pytest.approx(np.quantile(values, 0.1))
    assert d.p90 == pytest.approx(np.quantile(values, 0.9))


def test_billed_tokens_cut_each_sequence_at_max_length():
    sft = ExampleTokens(line=1, lengths=(300,), assistant=20, messages=2)
    pair = ExampleTokens(line=2, lengths=(80, 150), assistant=30, messages=3)
    assert billed_tokens([sft, pair], n_epochs=3, max_length=None) == 3 * 530
    assert billed_tokens([sft, pair], n_epochs=3, max_length=100) == 3 * (100 + 80 + 100)
    assert (pair.total, pair.longest) == (230, 150)


def test_estimate_seconds():
    assert estimate_seconds(1250, tokens_per_second=125) == 10
    assert estimate_seconds(CPU_TOKENS_PER_SECOND * 60) == 60
    with pytest.raises(ValueError):
        estimate_seconds(10, tokens_per_second=0)


def test_dataset_stats_from_counts():
    examples = [
        ExampleTokens(line=i, lengths=(100 + i,), assistant=10, messages=3) for i in range(5)
    ]
    stats = dataset_stats(examples, max_length=102, tokens_per_second=100)
    assert stats.n_epochs == 20
    assert stats.tokens_per_epoch == 100 + 101 + 102 * 3
    assert stats.billed_tokens == 20 * stats.tokens_per_epoch
    assert stats.estimated_seconds == stats.billed_tokens / 100
    assert stats.n_over_max_length == 2
    assert stats.total_tokens.median == 102 and stats.messages.max == 3
    assert dataset_stats(examples, n_epochs=2).n_epochs == 2
    assert stats.to_dict()["assistant_tokens"]["mean"] == 10


def test_count_tokens_uses_the_chat_template(tokenizer):
    records = read(FILES / "chat.jsonl").records
    counts = count_tokens(tokenizer, records)
    for record, count in zip(records, counts, strict=True):
        encoded = encode(tokenizer, record)
        assert count.lengths == (len(encoded.input_ids),)
        assert count.assistant == encoded.n_loss_tokens > 0
        assert count.line == record.line and count.messages == len(record.messages)


def test_count_tokens_of_a_preference_pair(tokenizer):
    pair = read(FILES / "dpo.jsonl").records[0]
    (count,) = count_tokens(tokenizer, [pair])
    assert len(count.lengths) == 2
    assert count.lengths[0] > count.lengths[1]  # the preferred answer is the longer one here
    assert count.messages == 2
