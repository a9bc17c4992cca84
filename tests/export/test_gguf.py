"""The GGUF writer: names and numbers as llama.cpp's converter has them, read back by independent readers
(transformers' GGUF loader, gguf's GGUFReader, and the GGUF llama.cpp itself made of the built-in model)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import MODEL_ARCH, GGMLQuantizationType, GGUFReader, get_tensor_name_map
from gguf.quants import dequantize

from tunesmith.errors import TunesmithError
from tunesmith.export import gguf as gguf_export
from tunesmith.export.gguf import llama_hparams, plan_tensors, tensor_type, write_gguf
from tunesmith.export.gguf_names import (
    PRE_TOKENIZER_TEXT,
    PRE_TOKENIZERS,
    TENSOR_NAMES,
    permute,
    pre_tokenizer_hash,
)
from tunesmith.models.catalog import BUILTINS, DEFAULT_MODEL
from tunesmith.models.loading import package_folder

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three prime numbers.",
]
TEXTS = [
    *PROMPTS,
    "  leading spaces, émojis 🚀, 12345 and\nnew lines",
    "<|im_start|>user\nhi<|im_end|>",
]
Q8_0_MAX_RELATIVE_ERROR = 0.01  # q8_0 keeps ~0.4% of a weight's norm; q4_0 ~7%
Q4_0_MAX_RELATIVE_ERROR = 0.12


def field(reader: GGUFReader, key: str):
    return reader.fields[key].contents()


def greedy(model, tokenizer, prompt: str, n: int = 12) -> list[int]:
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    with torch.no_grad():
        out = model.generate(
            ids, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
    return out[0, ids.shape[1] :].tolist()


def source_weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


# --- pure translations, no model --------------------------------------------------------------


def test_the_name_table_agrees_with_gguf_py_tensor_mapping():
    mapping = get_tensor_name_map(MODEL_ARCH.LLAMA, 1)
    for hf, ours in TENSOR_NAMES.items():
        theirs = mapping.get_name(hf.format(i=0) + ".weight", try_suffixes=(".weight",))
        assert theirs == ours.format(i=0) + ".weight"


def test_permute_interleaves_the_halves_of_each_head():
    rows = np.arange(8)  # two heads of four rows: halves (0,1|2,3), (4,5|6,7)
    assert permute(rows, 2).tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    matrix = np.arange(24).reshape(8, 3)
    assert (permute(matrix, 2) == matrix[[0, 2, 1, 3, 4, 6, 5, 7]]).all()


def test_norms_stay_f32_and_rows_that_are_not_whole_blocks_fall_back_to_f16():
    assert tensor_type((64,), "q8_0") == GGMLQuantizationType.F32
    assert tensor_type((64, 64), "q4_0") == GGMLQuantizationType.Q4_0
    assert tensor_type((64, 48), "q8_0") == GGMLQuantizationType.F16  # 48 is not a multiple of 32
    assert tensor_type((64, 48), "bf16") == GGMLQuantizationType.BF16  # bf16 has no blocks


def test_plan_names_permutes_q_and_k_by_their_head_counts_and_drops_a_tied_lm_head():
    config = {"num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True}
    shapes = {
        "lm_head.weight": [10, 8],
        "model.layers.10.self_attn.k_proj.weight": [4, 8],
        "model.layers.9.self_attn.q_proj.weight": [8, 8],
        "model.layers.9.mlp.down_proj.weight": [8, 16],
    }
    plans = plan_tensors(shapes, config, "f16")
    assert [(p.gguf_name, p.n_head) for p in plans] == [
        ("blk.9.ffn_down.weight", None),
        ("blk.9.attn_q.weight", 4),
        ("blk.10.attn_k.weight", 2),
    ]


def test_hyperparameters_are_llamas_keys(tiny_model_dir: Path):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    hparams = llama_hparams(config)
    assert hparams["llama.embedding_length"] == 64
    assert hparams["llama.attention.head_count_kv"] == 1
    assert hparams["llama.rope.dimension_count"] == 32  # 64 over 2 heads
    assert isinstance(hparams["llama.rope.freq_base"], float)


def test_smollm2s_tokenizer_hashes_to_llama_cpps_smollm(tokenizer):
    assert PRE_TOKENIZERS[pre_tokenizer_hash(tokenizer.encode(PRE_TOKENIZER_TEXT))] == "smollm"


# --- files written and read back ---------------------------------------------------------------


def test_metadata_is_what_llama_cpp_reads(tiny_model_dir: Path, tmp_path: Path, tokenizer):
    out = tmp_path / "tiny.gguf"
    result = write_gguf(tiny_model_dir, out, "q8_0", chat_template="{{ messages }}")
    reader = GGUFReader(out)
    expected = {
        "general.architecture": "llama",
        "general.type": "model",
        "general.name": tiny_model_dir.name,
        "general.file_type": 7,
        "general.quantization_version": 2,
        "llama.context_length": 2048,
        "llama.embedding_length": 64,
        "llama.block_count": 2,
        "llama.feed_forward_length": 128,
        "llama.attention.head_count": 2,
        "llama.attention.head_count_kv": 1,
        "llama.rope.dimension_count": 32,
        "llama.vocab_size": len(tokenizer),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "smollm",
        "tokenizer.ggml.bos_token_id": tokenizer.bos_token_id,
        "tokenizer.ggml.eos_token_id": tokenizer.eos_token_id,
        "tokenizer.ggml.unknown_token_id": tokenizer.unk_token_id,
        "tokenizer.ggml.padding_token_id": tokenizer.pad_token_id,
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.chat_template": "{{ messages }}",
    }
    assert {key: field(reader, key) for key in expected} == expected
    assert field(reader, "llama.rope.freq_base") == pytest.approx(10000.0)
    assert field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6)
    assert len(reader.fields["tokenizer.ggml.merges"].data) > 40000
    assert "output.weight" not in {t.name for t in reader.tensors}  # tied embeddings
    assert result.n_tensors == len(reader.tensors) == 2 + 2 * 9 and result.fallbacks == []


def test_the_vocabulary_is_the_one_llama_cpps_converter_wrote(tiny_model_dir: Path, tmp_path: Path):
    """The built-in model ships as a GGUF made by llama.cpp's converter: our tokenizer keys match it."""
    out = tmp_path / "tiny.gguf"
    write_gguf(tiny_model_dir, out)
    builtin = BUILTINS[DEFAULT_MODEL]
    theirs = GGUFReader(package_folder(builtin.package) / builtin.gguf_file)
    ours = GGUFReader(out)
    for key in ("tokens", "token_type", "merges", "model", "pre", "add_bos_token"):
        assert field(ours, f"tokenizer.ggml.{key}") == field(theirs, f"tokenizer.ggml.{key}"), key


def test_text_round_trips_through_the_gguf_vocabulary(
    tiny_model_dir: Path, tmp_path: Path, tokenizer
):
    from transformers import AutoTokenizer

    write_gguf(tiny_model_dir, tmp_path / "tiny.gguf")
    loaded = AutoTokenizer.from_pretrained(tmp_path, gguf_file="tiny.gguf")
    for text in TEXTS:
        assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"], text


@pytest.mark.parametrize(
    ("quant", "limit"), [("q8_0", Q8_0_MAX_RELATIVE_ERROR), ("q4_0", Q4_0_MAX_RELATIVE_ERROR)]
)
def test_quantized_weights_dequantise_close_to_the_permuted_source(
    tiny_model_dir: Path, tmp_path: Path, quant: str, limit: float
):
    out = tmp_path / f"tiny-{quant}.gguf"
    write_gguf(tiny_model_dir, out, quant)
    source = source_weights(tiny_model_dir)
    tensors = {t.name: t for t in GGUFReader(out).tensors}
    q = permute(source["model.layers.1.self_attn.q_proj.weight"], 2)  # the tiny model's heads
    for name, expected in {
        "blk.1.attn_q.weight": q,
        "token_embd.weight": source["model.embed_tokens.weight"],
    }.items():
        tensor = tensors[name]
        assert tensor.tensor_type.name == quant.upper()
        got = dequantize(tensor.data, tensor.tensor_type).reshape(expected.shape)
        assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < limit, name
    assert tensors["blk.1.attn_norm.weight"].tensor_type == GGMLQuantizationType.F32


def test_q8_0_logits_through_transformers_gguf_loader_agree(
    tiny_model_dir: Path, tmp_path: Path, tokenizer
):
    """Teacher-forced next-token choices of the q8_0 file (dequantised by transformers, which also
    undoes the q/k permutation) agree with the source on >= 90% of positions."""
    from transformers import AutoModelForCausalLM

    write_gguf(tiny_model_dir, tmp_path / "tiny.gguf", "q8_0")
    source = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    loaded = AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file="tiny.gguf", dtype=torch.float32
    )
    ids = tokenizer(" ".join(TEXTS), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b = source(ids).logits.argmax(-1), loaded(ids).logits.argmax(-1)
    assert (a == b).float().mean().item() >= 0.9


def test_f16_of_the_builtin_model_generates_the_same_tokens(
    builtin_dir: Path, tmp_path: Path, tokenizer
):
    """The one real-model test: greedy answers to chat prompts are token for token the same after
    f16 -> GGUF -> transformers' GGUF loader; and a q8_0 export takes well under a minute."""
    from transformers import AutoModelForCausalLM

    write_gguf(builtin_dir, tmp_path / "smol-f16.gguf", "f16")
    source = AutoModelForCausalLM.from_pretrained(builtin_dir, dtype=torch.float32)
    loaded = AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file="smol-f16.gguf", dtype=torch.float32
    )
    for prompt in PROMPTS:
        assert greedy(loaded, tokenizer, prompt) == greedy(source, tokenizer, prompt), prompt

    started = time.monotonic()
    result = write_gguf(builtin_dir, tmp_path / "smol-q8_0.gguf", "q8_0")
    seconds = time.monotonic() - started
    print(f"q8_0 export of the built-in model: {seconds:.1f} s, {result.n_tensors} tensors")
    assert result.n_tensors == 272 and result.fallbacks == [] and seconds < 60


# --- refusals and interruptions ---------------------------------------------------------------


def test_a_non_llama_architecture_is_refused_and_nothing_is_written(tmp_path: Path):
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"})
    )
    out = tmp_path / "out" / "gpt2.gguf"
    with pytest.raises(TunesmithError, match="LlamaForCausalLM"):
        write_gguf(folder, out)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_an_unknown_quant_is_refused(tiny_model_dir: Path, tmp_path: Path):
    with pytest.raises(TunesmithError, match="q4_k_m") as caught:
        write_gguf(tiny_model_dir, tmp_path / "x.gguf", "q4_k_m")  # type: ignore[arg-type]
    assert caught.value.param == "quant" and "q8_0" in str(caught.value)
    assert not (tmp_path / "x.gguf").exists()


def test_an_interrupted_write_leaves_no_file(tiny_model_dir: Path, tmp_path: Path, monkeypatch):
    real_encode, calls = gguf_export.encode, []

    def failing_encode(weights, plan):
        calls.append(plan.gguf_name)
        if len(calls) == 5:
            raise KeyboardInterrupt  # what Ctrl-C does halfway through the tensors
        return real_encode(weights, plan)

    monkeypatch.setattr(gguf_export, "encode", failing_encode)
    out_dir = tmp_path / "exports"
    with pytest.raises(KeyboardInterrupt):
        write_gguf(tiny_model_dir, out_dir / "tiny.gguf")
    assert list(out_dir.iterdir()) == []  # neither the target nor the partial file


def test_progress_counts_every_tensor(tiny_model_dir: Path, tmp_path: Path):
    seen: list[tuple[int, int]] = []
    result = write_gguf(
        tiny_model_dir,
        tmp_path / "tiny.gguf",
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[-1] == (result.n_tensors, result.n_tensors) and len(seen) == result.n_tensors
