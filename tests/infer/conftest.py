"""The baseline every decode path must match: plain transformers `generate`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

# Logit gap between the two likeliest tokens up to which sums in another order may swap them
# (the slot path's one-row GEMV and decode attention, the int4 kernel's bf16 inputs, another
# engine's kernels): two bf16 steps at the built-in model's logits. Past such a step two correct
# decoders may write different answers; anywhere else a different token is a bug.
NEAR_TIE = 0.25


@dataclass
class Greedy:
    """What plain `generate` chose, and how far ahead its best logit was at each step."""

    tokens: list[int]
    gaps: list[float]

    def same_but_at_near_ties(self, got: list[int]) -> int:
        """Assert `got` follows these tokens, parting from them (if at all) only at a step whose
        two likeliest tokens were at most NEAR_TIE apart (there sums in another order may take the
        other; past it the answers may go anywhere). The number of tokens equal before that,
        for the caller to require enough of."""
        same = next(
            (i for i, (a, b) in enumerate(zip(got, self.tokens, strict=False)) if a != b),
            min(len(got), len(self.tokens)),
        )
        if same < len(got):
            assert self.gaps[same] <= NEAR_TIE, (same, got, self.tokens, self.gaps[: same + 1])
        return same


def _generate(
    folder: Path, adapter: Path | None, ids: list[int], n: int, int4: bool = False
) -> Greedy:
    """One request, greedy, in the dtype tunesmith serves in here (bf16 where the CPU has bf16
    units), told of no end token, so it always gives `n` tokens. `int4`: with the projection
    weights `--quantize int4` multiplies by (the checkpoint's 4-bit numbers, bf16 scales)."""
    from transformers import AutoModelForCausalLM

    from tunesmith.infer.weights import Checkpoint, four_bit_values
    from tunesmith.models.hardware import inference_dtype

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=inference_dtype("cpu"))
    if int4:
        checkpoint = Checkpoint(str(folder))
        for name, parameter in model.named_parameters():
            if name.endswith("_proj.weight"):
                parameter.data = four_bit_values(checkpoint.get(name)).to(parameter.dtype)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    out = model.generate(
        torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=None,
        pad_token_id=0, output_logits=True, return_dict_in_generate=True,
    )  # fmt: skip
    gaps = []
    for logits in out.logits:
        best, second = logits[0].float().topk(2).values.tolist()
        gaps.append(best - second)
    return Greedy(out.sequences[0, len(ids) :].tolist(), gaps)


@pytest.fixture
def reference() -> Callable[..., Greedy]:
    """`reference(folder, adapter, prompt_ids, n, int4=False)`: what plain `generate` gives."""
    return _generate
