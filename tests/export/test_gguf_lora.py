"""The GGUF LoRA: applied to the GGUF base the way llama.cpp applies it, it gives PEFT's merged weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGUFReader
from gguf.quants import dequantize

from tunesmith.errors import TunesmithError
from tunesmith.export.gguf import write_gguf
from tunesmith.export.gguf_lora import lora_alpha, write_gguf_lora
from tunesmith.export.gguf_names import gguf_tensor_name, permute

RANK, ALPHA = 4, 8
ATTENTION, MLP = ["q_proj", "k_proj", "v_proj", "o_proj"], ["gate_proj", "up_proj", "down_proj"]
TARGETS = ATTENTION + MLP
MODULES = {m: f"self_attn.{m}" for m in ATTENTION} | {m: f"mlp.{m}" for m in MLP}
HEADS = {"q_proj": 2, "k_proj": 1}  # the tiny model's head counts (tests/conftest.py)


@pytest.fixture(scope="module")
def adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A non-trivial LoRA (B is not zero) on the tiny model, and its merged fp32 weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS, init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    folder = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(folder)
    merged = {k: v.numpy().copy() for k, v in peft_model.merge_and_unload().state_dict().items()}
    return folder, merged


def tensors(path: Path) -> dict[str, np.ndarray]:
    """GGUF tensors read back in numpy order, (out, in) for a weight."""
    out = {}
    for t in GGUFReader(path).tensors:
        out[t.name] = dequantize(t.data, t.tensor_type).reshape(tuple(reversed(t.shape.tolist())))
    return out


def test_the_lora_applied_to_the_gguf_base_equals_the_permuted_merged_weights(
    adapter: tuple[Path, dict], tiny_model_dir: Path, tmp_path: Path
):
    folder, merged = adapter
    base = tensors(write_gguf(tiny_model_dir, tmp_path / "base.gguf", "f16").path)
    lora = tensors(write_gguf_lora(folder, tiny_model_dir, tmp_path / "lora.gguf"))
    scale = ALPHA / RANK  # llama.cpp: adapter.lora.alpha / rank of B
    for layer in range(2):
        for module, path in MODULES.items():
            hf_name = f"model.layers.{layer}.{path}.weight"
            name = gguf_tensor_name(hf_name)
            a, b = lora[f"{name}.lora_a"], lora[f"{name}.lora_b"]
            assert a.shape[0] == b.shape[1] == RANK
            applied = base[name] + scale * b @ a
            expected = merged[hf_name]
            if module in HEADS:
                expected = permute(expected, HEADS[module])
            # the base is f16 in the file: ~1e-3 relative rounding, far below what a wrong permutation does
            np.testing.assert_allclose(applied, expected, atol=2e-3, rtol=2e-3, err_msg=name)


def test_adapter_metadata_is_what_llama_cpp_reads(
    adapter: tuple[Path, dict], tiny_model_dir: Path, tmp_path: Path
):
    folder, _ = adapter
    reader = GGUFReader(write_gguf_lora(folder, tiny_model_dir, tmp_path / "lora.gguf"))
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == ALPHA
    names = {t.name: t for t in reader.tensors}
    assert len(names) == 2 * len(TARGETS) * 2
    a, b = names["blk.0.attn_k.weight.lora_a"], names["blk.0.attn_k.weight.lora_b"]
    # ggml order (ne0 first): a is [in, r], b is [r, out], as llama.cpp's llama_adapter_lora checks
    assert a.shape.tolist() == [64, RANK] and b.shape.tolist() == [RANK, 32]


def test_rslora_alpha_is_folded_so_llama_cpps_alpha_over_r_is_right():
    assert lora_alpha({"lora_alpha": 8, "r": 16, "use_rslora": True}) == 8 * 4
    assert lora_alpha({"lora_alpha": 8, "r": 16}) == 8


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"use_dora": True}, "DoRA"),
        ({"peft_type": "IA3"}, "not a LoRA"),
        ({"rank_pattern": {"q_proj": 8}}, "rank_pattern"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ],
)
def test_adapters_llama_cpp_cannot_apply_are_refused(
    adapter: tuple[Path, dict], tiny_model_dir: Path, tmp_path: Path, change: dict, reason: str
):
    folder = tmp_path / "changed"
    folder.mkdir()
    config = json.loads((adapter[0] / "adapter_config.json").read_text()) | change
    (folder / "adapter_config.json").write_text(json.dumps(config))
    (folder / "adapter_model.safetensors").write_bytes(
        (adapter[0] / "adapter_model.safetensors").read_bytes()
    )
    out = tmp_path / "out" / "lora.gguf"
    with pytest.raises(TunesmithError, match=reason):
        write_gguf_lora(folder, tiny_model_dir, out)
    assert not out.exists()


def test_a_non_llama_base_is_refused(adapter: tuple[Path, dict], tmp_path: Path):
    base = tmp_path / "gpt2"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(TunesmithError, match="LlamaForCausalLM"):
        write_gguf_lora(adapter[0], base, tmp_path / "lora.gguf")
    assert not (tmp_path / "lora.gguf").exists()
