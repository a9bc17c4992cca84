"""A Hugging Face Llama folder as one GGUF file for llama.cpp and Ollama, written with gguf-py, no compiler."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import numpy as np
from gguf import (
    GGML_QUANT_SIZES,
    GGMLQuantizationType,
    GGUFValueType,
    GGUFWriter,
    Keys,
    SpecialVocab,
    TokenType,
)
from gguf.quants import quant_shape_to_byte_shape, quantize

from tunesmith.atomic import atomic_file
from tunesmith.errors import TunesmithError
from tunesmith.export.gguf_names import (
    ARCH,
    FALLBACK,
    PRE_TOKENIZER_TEXT,
    PRE_TOKENIZERS,
    QUANTIZATION_VERSION,
    QUANTS,
    SUPPORTED_ARCHITECTURES,
    Quant,
    gguf_tensor_name,
    head_count,
    permute,
    pre_tokenizer_hash,
)
from tunesmith.models.loading import loadable

if TYPE_CHECKING:
    import torch
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (tensors written, tensors in all)


@dataclass(frozen=True)
class GgufResult:
    """What an export wrote. `fallbacks` names the matrices kept as F16 because their rows are not
    whole quant blocks; a user is told, since those tensors are larger than asked for."""

    path: Path
    quant: Quant
    n_tensors: int
    fallbacks: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class TensorPlan:
    """One tensor of the file: where it comes from, what it is called, how it is stored."""

    hf_name: str
    gguf_name: str
    shape: tuple[int, ...]  # torch/numpy order, (out, in) for a weight; GGUF stores it reversed
    qtype: GGMLQuantizationType
    n_head: int | None  # rows permuted by this many heads (q and k), else None


def write_gguf(
    model_dir: Path,
    out_file: Path,
    quant: Quant = "f16",
    chat_template: str | None = None,
    progress: Progress | None = None,
) -> GgufResult:
    """Write the Llama model in `model_dir` (config.json, *.safetensors, tokenizer) to `out_file`.

    Raises TunesmithError for an unknown quant, an architecture other than Llama, a tokenizer
    llama.cpp would not pre-tokenize the same way, or tensors GGUF has no name for; all of these
    are checked before a byte is written. The file appears at `out_file` only once complete.
    """
    started = time.monotonic()
    if quant not in QUANTS:
        raise TunesmithError(
            f"Unknown GGUF quantization {quant!r}.",
            f"Choose one of {', '.join(get_args(Quant))}.",
            param="quant",
            code="gguf_unknown_quant",
        )
    config = read_config(model_dir)
    with safetensors(model_dir) as tensors:
        plans = plan_tensors({name: tensors[name].get_shape() for name in tensors}, config, quant)
        writer = GGUFWriter(path=None, arch=ARCH)
        add_metadata(writer, model_dir, config, quant, chat_template)
        for plan in plans:
            byte_shape = quant_shape_to_byte_shape(plan.shape, plan.qtype)
            writer.add_tensor_info(
                plan.gguf_name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), plan.qtype
            )
        write_file(writer, out_file, encoded(plans, tensors, progress))
    fallbacks = [p.gguf_name for p in plans if len(p.shape) > 1 and p.qtype != QUANTS[quant][0]]
    if fallbacks:
        log.warning(
            "%d tensors kept as F16 (rows not whole %s blocks): %s",
            len(fallbacks),
            quant,
            fallbacks,
        )
    return GgufResult(out_file, quant, len(plans), fallbacks, time.monotonic() - started)


def encoded(
    plans: list[TensorPlan], tensors: dict, progress: Progress | None
) -> Iterator[np.ndarray]:
    """The tensors' bytes one at a time, in plan order: only one tensor is in memory in f32, so a
    model larger than the spare RAM still exports."""
    for done, plan in enumerate(plans, start=1):
        yield encode(tensors[plan.hf_name][:], plan)
        if progress is not None:
            progress(done, len(plans))


def write_file(writer: GGUFWriter, out_file: Path, arrays: Iterator[np.ndarray]) -> None:
    """Header, metadata, tensor index, then `arrays` (in the order their infos were added) into a
    partial file that becomes `out_file` only when all of it is written."""
    with atomic_file(out_file) as partial:
        writer.write_header_to_file(partial)
        try:
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for array in arrays:
                writer.write_tensor_data(array)
        finally:
            writer.close()  # before the partial file is deleted or moved


def read_json(folder: Path, name: str, hint: str) -> dict:
    path = folder / name
    if not path.is_file():
        raise TunesmithError(f"{folder} has no {name}.", hint)
    return json.loads(path.read_text())


def read_config(model_dir: Path) -> dict:
    """config.json, refused unless it is a Llama that llama.cpp's llama architecture runs as is."""
    config = read_json(model_dir, "config.json", "Export a Hugging Face model folder.")
    architectures = config.get("architectures") or [config.get("model_type", "unknown")]
    if architectures[0] not in SUPPORTED_ARCHITECTURES:
        raise TunesmithError(
            f"GGUF export supports {', '.join(SUPPORTED_ARCHITECTURES)}; {model_dir} is {architectures[0]}.",
            "Export this model as a merged Hugging Face folder instead.",
            code="gguf_unsupported_architecture",
        )
    rope = config.get("rope_scaling") or config.get("rope_parameters") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        # llama3/yarn scaling needs llama.cpp's extra rope_freqs tensor and keys, not written here
        raise TunesmithError(
            f"GGUF export does not support rope scaling {rope.get('rope_type', rope.get('type'))!r}.",
            "Export this model as a merged Hugging Face folder instead.",
            code="gguf_unsupported_architecture",
        )
    return config


def llama_hparams(config: dict) -> dict[str, int | float]:
    """config.json -> the llama.* keys llama.cpp reads (ints are uint32, floats float32 in the file)."""
    n_head = config["num_attention_heads"]
    rope = config.get("rope_parameters") or {}  # transformers >= 5 moved rope_theta in here
    values: dict[str, int | float] = {
        Keys.LLM.CONTEXT_LENGTH: config["max_position_embeddings"],
        Keys.LLM.EMBEDDING_LENGTH: config["hidden_size"],
        Keys.LLM.BLOCK_COUNT: config["num_hidden_layers"],
        Keys.LLM.FEED_FORWARD_LENGTH: config["intermediate_size"],
        Keys.Attention.HEAD_COUNT: n_head,
        Keys.Attention.HEAD_COUNT_KV: config.get("num_key_value_heads", n_head),
        Keys.Rope.FREQ_BASE: float(config.get("rope_theta", rope.get("rope_theta", 10000.0))),
        Keys.Attention.LAYERNORM_RMS_EPS: float(config["rms_norm_eps"]),
        Keys.Rope.DIMENSION_COUNT: config.get("head_dim") or config["hidden_size"] // n_head,
        Keys.LLM.VOCAB_SIZE: config["vocab_size"],
    }
    return {key.format(arch=ARCH): value for key, value in values.items()}


def tensor_type(shape: tuple[int, ...], quant: Quant) -> GGMLQuantizationType:
    """1-D tensors (norms, biases) stay F32 as in llama.cpp; a matrix whose rows are not whole
    quant blocks cannot be quantized (gguf raises QuantError) and falls back to F16."""
    if len(shape) < 2:
        return GGMLQuantizationType.F32
    qtype = QUANTS[quant][0]
    block_size = GGML_QUANT_SIZES[qtype][0]
    return qtype if shape[-1] % block_size == 0 else FALLBACK


def plan_tensors(shapes: dict[str, list[int]], config: dict, quant: Quant) -> list[TensorPlan]:
    """Every tensor of the checkpoint, named and typed for the file. With tied embeddings a stray
    lm_head copy is dropped: llama.cpp reads token_embd for the output then."""
    plans = []
    for hf_name in sorted(shapes, key=_tensor_order):
        if hf_name == "lm_head.weight" and config.get("tie_word_embeddings", False):
            continue
        shape = tuple(shapes[hf_name])
        n_head = head_count(hf_name, config)
        plans.append(
            TensorPlan(hf_name, gguf_tensor_name(hf_name), shape, tensor_type(shape, quant), n_head)
        )
    return plans


def _tensor_order(hf_name: str) -> tuple[int, str]:
    """Blocks in numeric order (layer 10 after 9), the rest first: the order llama.cpp writes."""
    parts = hf_name.split(".")
    return (int(parts[2]) if parts[:2] == ["model", "layers"] else -1, hf_name)


def encode(weights: torch.Tensor, plan: TensorPlan) -> np.ndarray:
    """A torch tensor from the checkpoint -> the bytes of the file: f32, permuted, then stored."""
    data = (
        weights.float().numpy()
    )  # bf16/f16 checkpoints too: numpy has no bf16, quantize wants f32
    if plan.n_head is not None:
        data = permute(data, plan.n_head)
    return quantize(data, plan.qtype)


@contextmanager
def safetensors(model_dir: Path) -> Iterator[dict]:
    """name -> a lazy safetensors slice (`[:]` loads it as torch), across every shard of the folder."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise TunesmithError(
            f"{model_dir} has no *.safetensors weights.", "Export a saved model folder."
        )
    with ExitStack() as stack:
        handles = [stack.enter_context(safe_open(str(f), framework="pt")) for f in files]
        yield {name: handle.get_slice(name) for handle in handles for name in handle.keys()}  # noqa: SIM118 - safe_open is not iterable


def add_metadata(
    writer: GGUFWriter, model_dir: Path, config: dict, quant: Quant, chat_template: str | None
) -> None:
    """general.*, llama.* and tokenizer.* keys, in the order llama.cpp's converter writes them."""
    writer.add_type("model")
    writer.add_name(model_dir.name)
    for key, value in llama_hparams(config).items():
        vtype = GGUFValueType.FLOAT32 if isinstance(value, float) else GGUFValueType.UINT32
        writer.add_key_value(key, value, vtype)
    writer.add_file_type(QUANTS[quant][1])
    if quant in ("q8_0", "q4_0"):
        writer.add_quantization_version(QUANTIZATION_VERSION)
    add_tokenizer(writer, model_dir, config["vocab_size"], chat_template)


def add_tokenizer(
    writer: GGUFWriter, model_dir: Path, vocab_size: int, chat_template: str | None
) -> None:
    """The gpt2 (byte-level BPE) vocabulary the way llama.cpp's converter writes it (_set_vocab_gpt2)."""
    from transformers import AutoTokenizer

    with loadable(model_dir.name, model_dir, "tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokens, types = vocabulary(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
    if not special.merges:
        raise TunesmithError(
            f"The tokenizer of {model_dir} has no BPE merges.",
            "GGUF export supports byte-level BPE tokenizers (tokenizer.json with merges), like SmolLM2's.",
            code="gguf_unsupported_tokenizer",
        )
    # What the tokenizer really does, not what its config claims: llama.cpp prepends BOS when this
    # is true, so a mismatch shifts every prompt (Unsloth #449). SmolLM2 adds none.
    probe = tokenizer("a")["input_ids"]
    special.add_special_token["bos"] = bool(probe) and probe[0] == tokenizer.bos_token_id
    special.chat_template = chat_template or tokenizer.chat_template
    special.add_to_gguf(writer, quiet=True)


def vocabulary(
    tokenizer: PreTrainedTokenizerBase, vocab_size: int
) -> tuple[list[str], list[TokenType]]:
    """Tokens by id and their types (llama.cpp's get_vocab_base): ids the tokenizer lacks become
    UNUSED `[PAD{id}]` rows; added tokens are CONTROL when special, else USER_DEFINED."""
    by_id = {token_id: token for token, token_id in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for token_id in range(vocab_size):
        token = by_id.get(token_id)
        if token is None:
            tokens.append(f"[PAD{token_id}]")
            types.append(TokenType.UNUSED)
        elif token_id in added:
            tokens.append(token)
            types.append(
                TokenType.CONTROL if _looks_special(added[token_id]) else TokenType.USER_DEFINED
            )
        else:
            tokens.append(token)
            types.append(TokenType.NORMAL)
    return tokens, types


def _looks_special(token: AddedToken) -> bool:
    """llama.cpp's does_token_look_special, for the only case SmolLM2-style vocabularies hit."""
    content = token.content
    return token.special or (content.startswith("<|") and content.endswith("|>"))


def pre_tokenizer_name(tokenizer: PreTrainedTokenizerBase) -> str:
    """tokenizer.ggml.pre: llama.cpp splits text before BPE by this name, so an unknown one is refused
    rather than guessed (a wrong guess tokenizes differently and the model talks nonsense)."""
    digest = pre_tokenizer_hash(tokenizer.encode(PRE_TOKENIZER_TEXT))
    if digest not in PRE_TOKENIZERS:
        raise TunesmithError(
            "This tokenizer's pre-tokenizer is not one llama.cpp knows to this exporter.",
            f"Supported: {', '.join(sorted(set(PRE_TOKENIZERS.values())))} (SmolLM/SmolLM2 tokenizers).",
            code="gguf_unsupported_tokenizer",
        )
    return PRE_TOKENIZERS[digest]
