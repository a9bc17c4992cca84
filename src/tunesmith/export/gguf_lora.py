"""A PEFT LoRA adapter as a GGUF LoRA for `llama-server --lora` and Ollama's ADAPTER, laid out as llama.cpp's
convert_lora_to_gguf.py lays it out."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from gguf import GGUFWriter, Keys

from tunesmith.errors import TunesmithError
from tunesmith.export.gguf import read_config, read_json, safetensors, write_file
from tunesmith.export.gguf_names import ARCH, gguf_tensor_name, head_count, permute

if TYPE_CHECKING:
    import torch

PEFT_PREFIX = "base_model.model."
LORA_SUFFIXES = {".lora_A.weight": "lora_a", ".lora_B.weight": "lora_b"}  # PEFT -> GGUF


def write_gguf_lora(adapter_dir: Path, base_dir: Path, out_file: Path) -> Path:
    """Write the LoRA in `adapter_dir` (adapter_config.json, adapter_model.safetensors) for the
    Llama base in `base_dir` (only its config.json is read) to `out_file`.

    Tensors are `<base GGUF name>.lora_a` (r, in) and `.lora_b` (out, r) in f32, B's rows permuted
    like the base's q/k rows (A is untouched: the permutation acts on output rows only), so that
    llama.cpp's W + alpha/r * B @ A equals the permuted merged weight. Raises TunesmithError for a
    non-Llama base, DoRA or another adapter type, or per-module ranks and alphas, before writing.
    """
    config = read_config(base_dir)
    alpha = lora_alpha(read_adapter_config(adapter_dir))
    writer = GGUFWriter(path=None, arch=ARCH)
    writer.add_type("adapter")
    writer.add_string(Keys.Adapter.TYPE, "lora")
    writer.add_float32(Keys.Adapter.LORA_ALPHA, alpha)
    with safetensors(adapter_dir) as tensors:
        arrays = [
            lora_tensor(peft_name, tensors[peft_name][:], config) for peft_name in sorted(tensors)
        ]
    for name, array in arrays:
        writer.add_tensor_info(name, array.shape, array.dtype, array.nbytes)
    write_file(writer, out_file, (array for _, array in arrays))
    return out_file


def read_adapter_config(adapter_dir: Path) -> dict:
    """adapter_config.json, refused unless it is a plain LoRA llama.cpp applies as W + s * B @ A."""
    lora = read_json(adapter_dir, "adapter_config.json", "Export a saved PEFT adapter folder.")
    refusals = {
        "it is not a LoRA": lora.get("peft_type") != "LORA",
        "DoRA rescales the merged weight by its norm, which a GGUF LoRA cannot express": lora.get(
            "use_dora"
        ),
        "per-module ranks or alphas (rank_pattern, alpha_pattern) need one alpha per tensor": bool(
            lora.get("rank_pattern") or lora.get("alpha_pattern")
        ),
        "modules_to_save holds whole trained layers, not low-rank deltas": bool(
            lora.get("modules_to_save")
        ),
    }
    reasons = [reason for reason, refused in refusals.items() if refused]
    if reasons:
        raise TunesmithError(
            f"The adapter in {adapter_dir} cannot be a GGUF LoRA: {'; '.join(reasons)}.",
            "Export a merged model instead (GGUF of the merged folder).",
            code="gguf_unsupported_adapter",
        )
    return lora


def lora_alpha(lora: dict) -> float:
    """adapter.lora.alpha: llama.cpp scales by alpha / r. rsLoRA scales by alpha / sqrt(r), so its
    alpha is written as alpha * sqrt(r) to give the same scale (convert_lora_to_gguf.py ignores it)."""
    alpha = float(lora["lora_alpha"])
    return alpha * math.sqrt(lora["r"]) if lora.get("use_rslora") else alpha


def lora_tensor(peft_name: str, weights: torch.Tensor, config: dict) -> tuple[str, np.ndarray]:
    """One PEFT matrix as its GGUF tensor: A (r, in) as is, B (out, r) with q/k rows permuted."""
    name, part = lora_tensor_name(peft_name, config)
    data = weights.float().numpy()
    n_head = head_count(peft_name, config)
    if part == "lora_b" and n_head is not None:
        data = permute(data, n_head)
    return f"{name}.{part}", np.ascontiguousarray(data)


def lora_tensor_name(peft_name: str, config: dict) -> tuple[str, str]:
    """`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` -> (`blk.0.attn_q.weight`, `lora_a`)."""
    suffix = next((s for s in LORA_SUFFIXES if peft_name.endswith(s)), None)
    if suffix is None or not peft_name.startswith(PEFT_PREFIX):
        raise TunesmithError(
            f"The adapter tensor {peft_name!r} is not a LoRA A or B matrix of a linear layer.",
            "Embedding LoRAs and saved whole modules cannot be a GGUF LoRA; export a merged model.",
            code="gguf_unsupported_adapter",
        )
    base_name = peft_name.removeprefix(PEFT_PREFIX).removesuffix(suffix) + ".weight"
    if base_name == "lm_head.weight" and config.get("tie_word_embeddings", False):
        # llama.cpp has no output tensor to apply it to (ggml-org/llama.cpp#9065)
        raise TunesmithError(
            "The adapter trains lm_head, which this base ties to its embeddings.",
            "Leave lm_head out of target_modules, or export a merged model.",
            code="gguf_unsupported_adapter",
        )
    return gguf_tensor_name(base_name), LORA_SUFFIXES[suffix]
