"""The merged folder answers like base + adapter and loads with plain transformers; the adapter
folder holds what PEFT and vLLM need."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.export.check import BUILTIN_PROMPTS, check_export, greedy
from tunesmith.export.merged import end_of_turn_ids, end_of_turn_tokens, write_adapter, write_merged
from tunesmith.models.spec import ModelSpec

PROMPTS = [
    *BUILTIN_PROMPTS,
    [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
    ],
]


@pytest.fixture
def merged(ft_spec: ModelSpec, tmp_path: Path) -> Path:
    return write_merged(ft_spec, tmp_path / "merged")


def test_the_merged_model_answers_like_base_plus_adapter(merged, ft_spec, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = check_export("merged", merged, ft_spec, PROMPTS, max_new_tokens=16)
    assert result.agreements == [1.0] * len(PROMPTS) and result.passed
    # The adapter changes the answers, so agreeing proves the merge and not a copy of the base.
    tok = AutoTokenizer.from_pretrained(merged)
    mine = AutoModelForCausalLM.from_pretrained(merged)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert any(greedy(mine, tok, p, 16) != greedy(base, tok, p, 16) for p in PROMPTS)


def test_the_folder_is_plain_safetensors_with_stop_tokens_and_template(merged, tokenizer):
    from transformers import AutoTokenizer

    names = {p.name for p in merged.iterdir()}
    assert "model.safetensors" in names and not any(n.startswith("adapter") for n in names)
    generation = json.loads((merged / "generation_config.json").read_text())
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert (
        im_end in generation["eos_token_id"]
        and tokenizer.eos_token_id in generation["eos_token_id"]
    )
    messages = PROMPTS[2]
    reloaded = AutoTokenizer.from_pretrained(merged)
    assert reloaded.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == (
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    )


def test_end_of_turn_tokens_of_smollm2(tokenizer):
    assert end_of_turn_tokens(tokenizer)[0] == tokenizer.eos_token
    assert "<|im_end|>" in end_of_turn_tokens(tokenizer)
    assert end_of_turn_ids(tokenizer) == [
        tokenizer.convert_tokens_to_ids(t) for t in end_of_turn_tokens(tokenizer)
    ]


def test_a_cast_is_written_in_the_dtype_asked_for(ft_spec, tmp_path):
    config = json.loads(
        (write_merged(ft_spec, tmp_path / "bf16", dtype="bf16") / "config.json").read_text()
    )
    assert config["dtype"] == "bfloat16"


def test_the_adapter_folder_loads_with_peft_and_answers_alike(ft_spec, tmp_path):
    folder = write_adapter(ft_spec, tmp_path / "adapter")
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"} <= names
    assert check_export("adapter", folder, ft_spec, PROMPTS[:2], max_new_tokens=8).passed


def test_a_base_model_has_no_adapter_to_export(tiny_model_dir, tmp_path):
    base = ModelSpec(
        name=str(tiny_model_dir),
        kind="local",
        base=str(tiny_model_dir),
        weights=str(tiny_model_dir),
    )
    with pytest.raises(TunesmithError, match="no adapter"):
        write_adapter(base, tmp_path / "adapter")
