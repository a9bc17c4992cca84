"""The self-check's two scores: greedy identity for lossless exports, teacher-forced choices for
rounded ones."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunesmith.export.check import agreement, greedy, teacher_forced

PROMPT = [{"role": "user", "content": "Ship 3 lamps to Oslo."}]


def test_teacher_forced_agreement_is_one_for_the_models_own_answer_and_low_for_another(
    tiny_model_dir,
):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    answer = greedy(model, tokenizer, PROMPT, 12, eos_token_id=None)
    assert len(answer) == 12
    assert teacher_forced(model, tokenizer, PROMPT, answer) == 1.0
    other = torch.randint(100, 40_000, (12,), generator=torch.Generator().manual_seed(0)).tolist()
    assert teacher_forced(model, tokenizer, PROMPT, other) < 0.5  # not what this model says


def test_prefix_agreement():
    assert agreement([1, 2, 3], [1, 2, 3]) == 1.0
    assert agreement([1, 2, 3, 4], [1, 2, 9, 4]) == 0.5  # after a flip nothing counts
    assert agreement([], []) == 1.0
