"""Shared fixtures: a throwaway TUNESMITH_HOME per test, the real built-in tokenizer, and a tiny
randomly initialised model of the built-in model's architecture."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from tunesmith.models.catalog import DEFAULT_MODEL

# Fuzzing (tests/data/test_fuzz.py, tests/api/test_schema_fuzz.py) explores new inputs on every
# developer run, and finds bugs that way; CI runs the same derandomized cases each time, so a
# submission's result does not depend on luck. A bug a developer's run finds gets its own test.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ORDERS = Path(__file__).resolve().parents[1] / "src" / "tunesmith" / "tasks" / "orders"


def model_cache() -> Path:
    """Where the built-in model is converted once per machine, not once per test (~20 s)."""
    default = Path.home() / ".cache" / "tunesmith-tests"
    return Path(os.environ.get("TUNESMITH_TEST_CACHE", default))


@pytest.fixture(autouse=True)
def tunesmith_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own home (get_settings() reads the variables on each call); the
    converted built-in model is shared through TUNESMITH_MODELS_CACHE."""
    home = tmp_path / "tunesmith-home"
    monkeypatch.setenv("TUNESMITH_HOME", str(home))
    monkeypatch.setenv("TUNESMITH_MODELS_CACHE", str(model_cache()))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture(scope="session")
def builtin_dir() -> Path:
    """The built-in model's safetensors folder (converted from the GGUF on first use)."""
    from tunesmith.models.loading import builtin_folder

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNESMITH_MODELS_CACHE", str(model_cache()))
        return builtin_folder(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def tokenizer(builtin_dir: Path):
    """The real SmolLM2 tokenizer and chat template."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(builtin_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    """A two-layer, randomly initialised Llama with the real tokenizer, saved as a local folder:
    the built-in model's architecture at a size that trains in a second."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def orders() -> Path:
    """The bundled demo task's folder (train, validation and test JSONL)."""
    return ORDERS
