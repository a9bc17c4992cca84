"""The fast loss paths give the numbers the plain ones give."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from tunesmith.data.packing import PackedCollator, PaddedCollator
from tunesmith.data.records import Conversation
from tunesmith.data.render import IGNORE, encode
from tunesmith.train.trainer import assistant_loss


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def examples(tokenizer):
    texts = [("hi", "hello there"), ("2+2?", "4"), ("name a color " * 5, "blue, green and red")]
    convs = [
        Conversation.model_validate(
            {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        )
        for q, a in texts
    ]
    return [vars(encode(tokenizer, c)) for c in convs]


def full_logits_loss(model, batch) -> tuple[float, int]:
    """The textbook way: logits at every position, then cross-entropy on the shifted labels.

    use_cache=False matters: transformers only reads restarting position ids as separate packed
    sequences when no KV cache is passed; with one, a packed row silently attends across examples.
    """
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), reduction="sum")
    return float(loss), int((labels != IGNORE).sum())


@torch.no_grad()
@pytest.mark.parametrize("packed", [True, False])
def test_head_at_assistant_positions_equals_full_loss(model, examples, tokenizer, packed):
    collate = PackedCollator() if packed else PaddedCollator(tokenizer.pad_token_id)
    batch = collate(examples)
    loss_sum, n, _ = assistant_loss(model, batch)
    full_sum, full_n = full_logits_loss(model, batch)
    assert int(n) == full_n > 0
    assert float(loss_sum) == pytest.approx(full_sum, rel=1e-5)


@torch.no_grad()
def test_packed_loss_equals_unpacked_loss(model, examples, tokenizer):
    packed_sum, packed_n, _ = assistant_loss(model, PackedCollator()(examples))
    padded_sum, padded_n, _ = assistant_loss(
        model, PaddedCollator(tokenizer.pad_token_id)(examples)
    )
    one_by_one = sum(float(assistant_loss(model, PackedCollator()([e]))[0]) for e in examples)
    assert int(packed_n) == int(padded_n)
    assert float(packed_sum) == pytest.approx(float(padded_sum), rel=1e-4)
    assert float(packed_sum) == pytest.approx(one_by_one, rel=1e-4)


@torch.no_grad()
def test_packing_without_position_restarts_would_leak_across_examples(model, examples):
    """The control: one causal row over all examples (wrapped packing) changes the loss, so the
    equality above really depends on the block-diagonal mask."""
    batch = PackedCollator()(examples)
    leaky = dict(batch, position_ids=torch.arange(batch["input_ids"].shape[1]).unsqueeze(0))
    separate = float(assistant_loss(model, batch)[0])
    assert float(assistant_loss(model, leaky)[0]) != pytest.approx(separate, rel=1e-4)


def test_packed_rows_never_train_the_first_token_of_an_example(examples):
    batch = PackedCollator()(examples)
    starts = (batch["position_ids"][0] == 0).nonzero().squeeze(-1)
    assert starts.tolist()[0] == 0 and len(starts) == len(examples)
    assert (batch["labels"][0, starts] == IGNORE).all()


@torch.no_grad()
def test_per_example_attention_gives_the_block_diagonal_loss(tiny_model_dir, examples, tokenizer):
    """The packed attention kernel (one causal call per example) equals SDPA with the mask."""
    from tunesmith.train import attention

    fast = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, dtype=torch.float32, attn_implementation=attention.NAME
    ).eval()
    slow = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    batch = PackedCollator(tokenizer.pad_token_id, row_tokens=60)(examples)
    assert batch["input_ids"].shape[0] > 1  # several rows, each with its padding segment
    fast_sum, fast_n, _ = assistant_loss(fast, batch)
    slow_sum, slow_n, _ = assistant_loss(slow, batch)
    alone = sum(float(assistant_loss(slow, PackedCollator()([e]))[0]) for e in examples)
    assert int(fast_n) == int(slow_n)
    assert float(fast_sum) == pytest.approx(float(slow_sum), rel=1e-5)
    assert float(fast_sum) == pytest.approx(alone, rel=1e-5)


def test_rows_hold_at_most_their_capacity_unless_one_example_is_longer(examples, tokenizer):
    batch = PackedCollator(tokenizer.pad_token_id, row_tokens=60)(examples * 3)
    longest = max(len(e["input_ids"]) for e in examples)
    assert batch["num_tokens"].max() <= max(60, longest)
    assert int(batch["num_tokens"].sum()) == 3 * sum(len(e["input_ids"]) for e in examples)
