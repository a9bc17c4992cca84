"""The merged Hugging Face folder (LoRA folded into the weights) and the adapter-only folder."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.errors import TunesmithError
from tunesmith.models.loading import load_model, load_tokenizer, weights_folder
from tunesmith.models.spec import ModelSpec

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# Markers chat templates close a turn with. Generation must stop on them, not only on eos: a
# server that stops on eos alone runs past the answer when the template's end-of-turn differs.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")
DTYPES = {"f32": "float32", "fp32": "float32", "f16": "float16", "bf16": "bfloat16"}
# What PEFT needs to load an adapter; checkpoint folders also hold optimizer and RNG state.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def end_of_turn_tokens(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """eos, then every end-of-turn marker the chat template writes, each once."""
    template = tokenizer.chat_template or ""
    vocab = tokenizer.get_vocab()
    found = [tokenizer.eos_token] if tokenizer.eos_token else []
    found += [t for t in END_OF_TURN if t in template and t in vocab]
    return list(dict.fromkeys(found))


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(t) for t in end_of_turn_tokens(tokenizer)]


def target_dtype(spec: ModelSpec, dtype: str) -> torch.dtype:
    """`auto` keeps the dtype the base weights are stored in; else f32, f16 or bf16."""
    import torch
    from transformers import AutoConfig

    if dtype == "auto":
        stored = AutoConfig.from_pretrained(weights_folder(spec)).dtype
        return (
            stored if isinstance(stored, torch.dtype) else getattr(torch, str(stored or "float32"))
        )
    return getattr(torch, DTYPES[dtype])


def write_merged(spec: ModelSpec, out_dir: Path, dtype: str = "auto") -> Path:
    """A plain Hugging Face folder: safetensors, tokenizer with the trained chat template, and a
    generation_config.json that stops on every end-of-turn token."""
    import torch

    cast = target_dtype(spec, dtype)
    # Merge in fp32, then cast: W + BA computed in bf16 rounds twice and drifts from the adapter.
    model = load_model(spec, dtype=torch.float32, device="cpu")
    if spec.adapter is not None:
        model = model.merge_and_unload()
    model = model.to(cast)
    tokenizer = load_tokenizer(spec)
    model.generation_config.eos_token_id = end_of_turn_ids(tokenizer)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def write_adapter(spec: ModelSpec, out_dir: Path) -> Path:
    """The PEFT adapter folder (for vLLM `--lora-modules` or PEFT), with the tokenizer and chat
    template it was trained with, and the same adapter as `adapter.gguf` for llama.cpp/Ollama."""
    if spec.adapter is None:
        raise TunesmithError(
            f"{spec.name!r} is a base model: it has no adapter to export.",
            "Export a fine-tuned model (ft:…) or a checkpoint, or use --format merged.",
            param="format",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ADAPTER_FILES:
        if (spec.adapter / name).exists():
            shutil.copy2(spec.adapter / name, out_dir / name)
    load_tokenizer(spec).save_pretrained(out_dir)
    _write_gguf_lora(spec, out_dir)
    return out_dir


def _write_gguf_lora(spec: ModelSpec, out_dir: Path) -> None:
    try:
        from tunesmith.export.gguf_lora import write_gguf_lora
    except ModuleNotFoundError as exc:  # written in parallel (issue 10); until then, no GGUF
        if exc.name != "tunesmith.export.gguf_lora":
            raise
        log.warning("tunesmith.export.gguf_lora is not there yet: no adapter.gguf written")
        return
    write_gguf_lora(out_dir, Path(weights_folder(spec)), out_dir / "adapter.gguf")
