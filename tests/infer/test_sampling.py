"""Choosing the next token from one row of logits."""

from __future__ import annotations

import pytest
import torch

from tunesmith.infer.sampling import SamplingParams, choose


@pytest.mark.parametrize("temperature", [0.0, 1.401298464324817e-45, 1e-30, 1e-7])
def test_a_vanishing_temperature_is_greedy_not_a_nan(temperature):
    """Found by Schemathesis: temperature=1.4e-45 overflowed logits / T to inf, softmax gave NaN
    and the row failed with a 500."""
    logits = torch.tensor([1.0, 3.0, -2.0, 2.5])
    params = SamplingParams(temperature=temperature, top_p=0.5)
    generator = torch.Generator().manual_seed(0)
    assert choose(logits.clone(), [], params, generator)[0] == 1


def test_a_small_temperature_above_the_cut_still_samples_finitely():
    logits = torch.tensor([1.0, 3.0, -2.0, 2.5])
    params = SamplingParams(temperature=1e-5)
    assert choose(logits.clone(), [], params, torch.Generator().manual_seed(0))[0] == 1
