"""The built-in model: converted from its GGUF once, then loaded from the safetensors cache."""

from __future__ import annotations

import time

import pytest
import torch

from tunesmith.models import loading
from tunesmith.models.catalog import DEFAULT_MODEL, resolve


@pytest.mark.slow
def test_second_load_reads_the_cache_not_the_gguf(builtin_dir, monkeypatch):
    # The session fixture converted it once; from now on the GGUF must not even be looked up.
    assert (builtin_dir / "model.safetensors").exists()

    def no_gguf(package):
        raise AssertionError("the GGUF was read again")

    monkeypatch.setattr(loading, "package_folder", no_gguf)
    started = time.monotonic()
    model = loading.load_model(resolve(DEFAULT_MODEL), dtype=torch.float32, device="cpu")
    seconds = time.monotonic() - started
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    # The cached copy is plain weights: no GGUF quantizer flag that would freeze the Trainer.
    assert getattr(model, "hf_quantizer", None) is None
    assert not hasattr(model.config, "quantization_config")
    print(f"second load of the built-in model: {seconds:.2f} s")


def test_cached_copy_keeps_the_real_chat_template(tokenizer):
    assert "<|im_start|>" in tokenizer.chat_template
    assert tokenizer.eos_token == "<|im_end|>"
