"""The baseline every decode path must match: plain transformers `generate`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch


def _generate(folder: Path, adapter: Path | None, ids: list[int], n: int) -> list[int]:
    """One request, greedy, in the dtype tunesmith serves in here (bf16 where the CPU has bf16
    units), told of no end token, so it always gives `n` tokens."""
    from transformers import AutoModelForCausalLM

    from tunesmith.models.hardware import inference_dtype

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=inference_dtype("cpu"))
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    out = model.generate(
        torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0
    )
    return out[0, len(ids) :].tolist()


@pytest.fixture
def reference() -> Callable[[Path, Path | None, list[int], int], list[int]]:
    """`reference(folder, adapter, prompt_ids, n)`: what plain `generate` gives."""
    return _generate
