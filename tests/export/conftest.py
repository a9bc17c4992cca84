"""A tiny LoRA adapter on the tiny model, registered in the test's store as a fine-tuned model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.models.spec import ModelSpec


@pytest.fixture(scope="session")
def tiny_adapter(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tokenizer) -> Path:
    """A random (not zero) LoRA on every linear layer, so merging changes the answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    folder = tmp_path_factory.mktemp("tiny-adapter")
    get_peft_model(base, lora).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def ft_spec(tiny_model_dir: Path, tiny_adapter: Path) -> ModelSpec:
    """The adapter as `ft:…`, registered in this test's store so that a name resolves to it."""
    from tunesmith.store import open_store

    spec = ModelSpec(
        name="ft:tiny:local:export:Ab12Cd34",
        kind="fine-tuned",
        base=str(tiny_model_dir),
        weights=str(tiny_model_dir),
        adapter=tiny_adapter,
    )
    open_store().models.register(spec, None)
    return spec
